"""fastinit on your own PyTorch modules: its initializers and its per-layer statistics.

An optional extra (``pip install "fastinit[torch]"``): ``import fastinit`` never imports
torch; this package does, and says how to install it when it is missing.

* :func:`init_` -- re-initialise every ``nn.Linear`` / ``nn.ConvNd`` weight of a module
  with a registry initializer; layer ``l`` gets exactly the numbers ``fastinit.propagate``
  draws for its layer ``l`` (same seed and stream);
* :func:`trace` -- one forward and one backward pass with hooks: a frame of
  ``propagate``'s per-layer statistics for the user's module;
* :func:`save_trace` -- write traced frames as a results directory that
  ``python -m analysis.report`` reads like a sweep's.
"""

try:
    import torch as _torch  # noqa: F401  (the check; the modules below import it themselves)
except ImportError as error:  # also when sys.modules["torch"] is None
    raise ImportError('fastinit.torch needs PyTorch, an optional extra: pip install "fastinit[torch]"') from error

from fastinit.torch._init import init_
from fastinit.torch._layers import TRACED_TYPES
from fastinit.torch._store import save_trace
from fastinit.torch._trace import trace

__all__ = ["TRACED_TYPES", "init_", "save_trace", "trace"]
