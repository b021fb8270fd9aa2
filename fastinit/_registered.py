"""Compiling a user's scalar ``phi``/``phi'`` into one C-callable kernel the cached dispatch can call.

A registered activation reaches the layer kernels as an **address**, not as a function
argument: numba specialises a kernel on every function object passed to it and cannot cache
those specialisations, so passing the user's function would recompile propagate's whole tree
in every process.  Instead the two functions are compiled once, at registration, into a
``cfunc`` with the C signature ``double kernel(double x, double *slope)`` (returns ``phi(x)``,
stores ``phi'(x)``), and the dispatch's ``REGISTERED`` branch calls it through
:func:`call_registered`, an intrinsic that turns the address into a function pointer.  The
dispatch itself, and everything above it, stays compiled and cached once for all activations.

The address travels in the activation's float ``param`` slot, which registered activations do
not otherwise use: x86-64 user-space addresses are below 2**47, so a float64 holds them exactly.
"""

from __future__ import annotations

import hashlib
import inspect
import marshal

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from fastinit._jit import cfunc, jit_uncached

__all__ = ["check_scalar_function", "compile_scalar", "compile_kernel", "call_registered", "fingerprint", "KERNEL_SIGNATURE"]

# double kernel(double x, double *slope): phi(x) returned, phi'(x) stored through the pointer.
KERNEL_SIGNATURE = types.float64(types.float64, types.CPointer(types.float64))
_ADDRESS_LIMIT = 2.0**53  # every integer below this is exact in a float64


def _numba_reason(error: Exception) -> str:
    """The first informative line of a numba error (its messages run to a dozen lines)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    skip = ("Failed in nopython mode pipeline", "During: ", "File ", "<source", "^")
    informative = [line for line in lines if not line.startswith(skip)]
    return (informative or lines or [type(error).__name__])[0]


def check_scalar_function(owner: str, role: str, function) -> None:
    """Raise ``TypeError`` unless ``function`` is a Python function of one argument.

    Parameters
    ----------
    owner, role : str
        For the message, as in :func:`compile_scalar`.
    function : object
        The value received.
    """
    if not inspect.isfunction(function):
        raise TypeError(f"{owner}: {role} must be a Python function of one float (written with math), "
                        f"got {function!r}")
    try:
        inspect.signature(function).bind(0.0)
    except TypeError:
        raise TypeError(f"{owner}: {role} {function.__qualname__}{inspect.signature(function)} must take exactly "
                        f"one argument, x") from None


def compile_scalar(owner: str, role: str, function):
    """Jit-compile ``function(x: float) -> float`` with numba, or explain why it cannot be.

    Parameters
    ----------
    owner : str
        What the function belongs to, for messages (``"activation 'mish'"``).
    role : str
        Which function it is (``"phi"``, ``"dphi"``), for messages.
    function : callable
        A plain Python function of one float, written with :mod:`math`.

    Returns
    -------
    numba dispatcher
        Compiled for one float64 argument; its result is a real number.

    Raises
    ------
    TypeError
        If ``function`` is not a Python function of one argument.
    ValueError
        If numba cannot compile it, naming the function and numba's reason, or if its
        result is not a real number.
    """
    check_scalar_function(owner, role, function)
    dispatcher = jit_uncached(function)
    try:
        dispatcher.compile((types.float64,))
    except Exception as error:  # numba's typing errors, and unsupported bytecode, which is not a NumbaError
        raise ValueError(f"{owner}: numba cannot compile {role} = {function.__qualname__} "
                         f"({_numba_reason(error)}); write it with math functions and float arithmetic "
                         f"only") from None
    result = dispatcher.nopython_signatures[0].return_type
    if not isinstance(result, (types.Float, types.Integer, types.Boolean)):
        raise ValueError(f"{owner}: {role} = {function.__qualname__} returns {result}, not a real number")
    return dispatcher


def compile_kernel(phi, dphi):
    """The C-callable kernel of two compiled scalars (see the module docstring).

    Parameters
    ----------
    phi, dphi : numba dispatcher
        From :func:`compile_scalar`.

    Returns
    -------
    numba.core.ccallback.CFunc
        Keep it alive as long as its :attr:`address` may be called.
    """

    def kernel(x, slope):
        slope[0] = dphi(x)
        return phi(x)

    compiled = cfunc(KERNEL_SIGNATURE, kernel)
    if not 0 < compiled.address < _ADDRESS_LIMIT:  # cannot happen on x86-64 or arm64 Linux/macOS
        raise RuntimeError(f"a compiled kernel's address {compiled.address:#x} does not fit a float64 exactly")
    return compiled


@intrinsic
def call_registered(typingctx, address, x):
    """``(phi(x), phi'(x))`` of the registered kernel at ``address`` (a float64 holding it exactly)."""
    signature = types.UniTuple(types.float64, 2)(types.float64, types.float64)

    def codegen(context, builder, sig, args):
        address_value, x_value = args
        double = ir.DoubleType()
        function_type = ir.FunctionType(double, [double, double.as_pointer()])
        pointer = builder.inttoptr(builder.fptoui(address_value, ir.IntType(64)), function_type.as_pointer())
        slope = cgutils.alloca_once(builder, double)  # in the entry block: one slot per function, not per call
        value = builder.call(pointer, [x_value, slope])
        return context.make_tuple(builder, sig.return_type, [value, builder.load(slope)])

    return signature, codegen


def _code_bytes(function) -> bytes:
    try:
        return inspect.getsource(function).encode()
    except (OSError, TypeError):  # defined in a REPL or exec'd: its bytecode stands in for the source
        return marshal.dumps(function.__code__)


def fingerprint(*functions, traits=()) -> str:
    """A short hash of functions' source (bytecode where there is no source) and their traits.

    Part of a sweep cell's identity: editing a registered function makes new cells instead of
    reusing results computed with the old one.  Globals a function reads are not included.

    Parameters
    ----------
    *functions : callable
        Python functions.
    traits : iterable
        Further values that change the numbers (reprs are hashed).

    Returns
    -------
    str
        16 hexadecimal digits.
    """
    digest = hashlib.sha256()
    for function in functions:
        digest.update(_code_bytes(function))
        digest.update(b"\0")
    digest.update(repr(tuple(traits)).encode())
    return digest.hexdigest()[:16]
