"""fastinit: fast, exact studies of neural-network initialization.

The public facade.  Registries are the single source of truth:

* :data:`INITIALIZERS` -- schemes, their parameters and variance rules;
* :data:`ACTIVATIONS` -- activations with jitted and NumPy forms and flags.

Functions: :func:`sample`, :func:`fans`, :func:`gain`.
"""

from fastinit.activations import ACTIVATIONS, get_activation
from fastinit.initializers import INITIALIZERS, fans, gain, get_initializer, sample
from fastinit.propagate import propagate

__all__ = ["ACTIVATIONS", "INITIALIZERS", "fans", "gain", "get_activation", "get_initializer", "propagate", "sample"]
# The single source of the version: pyproject.toml reads it ([tool.setuptools.dynamic]).
__version__ = "0.1.0"
