"""fastinit: fast, exact studies of neural-network initialization.

The public facade.  Registries are the single source of truth:

* :data:`INITIALIZERS` -- schemes, their parameters and variance rules;
* :data:`ACTIVATIONS` -- activations with jitted and NumPy forms and flags.

Functions: :func:`sample`, :func:`fans`, :func:`gain`, :func:`propagate`,
:func:`jacobian_singular_values`.
"""

from fastinit.activations import ACTIVATIONS, get_activation
from fastinit.initializers import INITIALIZERS, fans, gain, get_initializer, sample
from fastinit.jacobian import jacobian_singular_values
from fastinit.propagate import propagate

__all__ = ["ACTIVATIONS", "INITIALIZERS", "fans", "gain", "get_activation", "get_initializer", "jacobian_singular_values",
           "propagate", "sample"]
# The single source of the version: pyproject.toml reads it ([tool.setuptools.dynamic]).
__version__ = "0.1.0"
