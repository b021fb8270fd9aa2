"""The orthogonal draw, compiled apart from the layer kernels and called through its address.

An orthogonal matrix is the QR of a float64 Gaussian: LAPACK's QR and a float64 sampler.
Compiled into the layer kernels, that code would be typed, optimised and linked into every
kernel above the draw for every net, orthogonal or not (measured: 3-4 s of a 23 s cold
compile of the float32 propagate kernels, for a branch most nets never take).  So it is a
separate, cached ``cfunc`` per dtype,

    void orthogonal(T *w, int64 rows, int64 cols, double a, uint64 seed, uint64 stream, int64 substream)

compiled the first time a net asks for it (:func:`address`), and the kernels call it through
:func:`call_orthogonal`, an intrinsic that turns the address into a function pointer (as
:mod:`fastinit._registered` does for a user's activation).  The kernels stay cacheable: the
address is a runtime value in :class:`~fastinit._kernels.records.LayerConfig`, never a
constant in their code.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from fastinit import rng
from fastinit._jit import JIT_OPTIONS, jit

__all__ = ["orthogonal_into", "address", "draw_orthogonal", "call_orthogonal"]


@jit(inner=True)
def orthogonal_into(w, a, seed, stream, substream):
    """``w = a`` times a (semi-)orthogonal matrix: QR of a float64 Gaussian, signs fixed by diag(R).

    Parameters
    ----------
    w : numpy.ndarray
        (fan_out, fan_in), float32 or float64, written in place.
    a : float
        The gain.
    seed, stream, substream : int
        The Gaussian's stream.

    Notes
    -----
    In the cfunc, an error (only a failed allocation could raise here) cannot reach the
    caller: numba reports it and returns.  The kernels had no clean way either: an error in a
    worker thread stops it and leaves the others at a barrier.
    """
    rows, cols = w.shape
    gaussian = np.empty(rows * cols, dtype=np.float64)
    rng.fill_serial(gaussian, np.bool_(True), np.int64(rng.KIND_NORMAL), 1.0, 0.0, seed, stream, substream)
    matrix = gaussian.reshape((rows, cols))
    # Plain loops rather than ascontiguousarray, diag, sign of an array and broadcasting:
    # the same numbers, and far less code to compile.
    wide_w = rows < cols
    tall = np.empty((cols, rows)) if wide_w else matrix
    if wide_w:
        for i in range(rows):
            for j in range(cols):
                tall[j, i] = matrix[i, j]
    q, r = np.linalg.qr(tall)
    for i in range(rows):
        for j in range(cols):
            # Column k of q is signed by diag(R)[k]; a wide w is the signed q transposed.
            k, value = (i, q[j, i]) if wide_w else (j, q[i, j])
            w[i, j] = a * (value * np.sign(r[k, k]))


def _signature(dtype):
    return types.void(types.CPointer(dtype), types.int64, types.int64, types.float64, types.uint64, types.uint64,
                      types.int64)


def _kernel(pointer, rows, cols, a, seed, stream, substream):
    orthogonal_into(numba.carray(pointer, (rows, cols)), a, seed, stream, substream)


_COMPILED = {}  # numpy dtype -> numba CFunc, alive for the process: the kernels hold its address


def _compiled(dtype):
    dtype = np.dtype(dtype)
    if dtype not in _COMPILED:
        _COMPILED[dtype] = numba.cfunc(_signature(numba.from_dtype(dtype)), cache=JIT_OPTIONS["cache"],
                                       error_model=JIT_OPTIONS["error_model"])(_kernel)
    return _COMPILED[dtype]


def address(dtype) -> int:
    """The address of the orthogonal draw for matrices of ``dtype``, compiled (or loaded) on first use.

    Parameters
    ----------
    dtype : numpy dtype
        float32 or float64.

    Returns
    -------
    int
        A C function pointer for :func:`call_orthogonal`, valid for the life of the process.
    """
    return _compiled(dtype).address


def draw_orthogonal(w: np.ndarray, a: float, seed, stream, substream) -> None:
    """Fill the C-contiguous 2-D float32 or float64 matrix ``w`` with the kernels' orthogonal draw, from Python.

    Parameters
    ----------
    w : numpy.ndarray
        (fan_out, fan_in), written in place.
    a : float
        The gain.
    seed, stream, substream : int
        The draw's stream.
    """
    if w.ndim != 2 or not w.flags.c_contiguous:
        raise ValueError(f"w must be a C-contiguous matrix, got shape {w.shape} (C-contiguous: {w.flags.c_contiguous})")
    function = _compiled(w.dtype).ctypes
    function(w.ctypes.data_as(function.argtypes[0]), w.shape[0], w.shape[1], float(a), int(seed), int(stream),
             int(substream))


@intrinsic
def call_orthogonal(typingctx, address_value, w, a, seed, stream, substream):
    """Call the orthogonal draw at ``address_value`` (from :func:`address`, for ``w``'s dtype) on ``w``.

    Parameters
    ----------
    address_value : int64
    w : C-contiguous float32 or float64 matrix
    a : float64
        The gain.
    seed, stream : uint64
    substream : int64
    """
    if not (isinstance(w, types.Array) and w.ndim == 2 and w.layout == "C"
            and w.dtype in (types.float32, types.float64)):
        return None  # a typing error: the cfunc reads a C-contiguous float matrix
    signature = types.void(types.int64, w, types.float64, types.uint64, types.uint64, types.int64)

    def codegen(context, builder, sig, args):
        address_arg, w_arg, a_arg, seed_arg, stream_arg, substream_arg = args
        matrix = context.make_array(sig.args[1])(context, builder, w_arg)
        rows, cols = cgutils.unpack_tuple(builder, matrix.shape, 2)
        element = context.get_value_type(sig.args[1].dtype)
        i64 = ir.IntType(64)
        function_type = ir.FunctionType(ir.VoidType(), [element.as_pointer(), i64, i64, ir.DoubleType(), i64, i64, i64])
        pointer = builder.inttoptr(address_arg, function_type.as_pointer())
        builder.call(pointer, [matrix.data, rows, cols, a_arg, seed_arg, stream_arg, substream_arg])
        return context.get_dummy_value()

    return signature, codegen

