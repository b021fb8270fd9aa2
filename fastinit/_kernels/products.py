"""Matrix products: BLAS through numba's ``np.dot`` or its BLAS entry point, or position-uniform loops.

The loops exist for one study: exact symmetry.  OpenBLAS's sgemm micro-kernel rounds
columns 8-15 of each 16-column tile differently from columns 0-7 (1 ulp), so units that
are identical by construction (zero or constant initialisation) drift apart in float32;
the loops round every output position the same way.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic
from numba.np.linalg import get_blas_kind
from threadpoolctl import ThreadpoolController

from fastinit._jit import jit


@functools.cache
def blas_controller() -> ThreadpoolController:
    """threadpoolctl's controller of this process's BLAS libraries, looked up once (a scan costs ~1.4 ms),
    after loading scipy's BLAS (the one numba's ``np.dot`` calls).

    A BLAS library loaded later in the process (another package's) is not in it, so not limited.

    Returns
    -------
    threadpoolctl.ThreadpoolController
    """
    import scipy.linalg.cython_blas  # noqa: F401 (loads the BLAS np.dot calls)

    return ThreadpoolController()


@contextlib.contextmanager
def one_blas_thread():
    """BLAS on one thread for the duration of the block, restored afterwards.

    Every GEMM of the kernels is one lane's, on one BLAS thread: the lanes are the
    parallelism, and OpenBLAS's last bits depend on its thread count, so a product run
    under this gives the same bits however many cores the machine has.
    """
    with blas_controller().limit(limits=1, user_api="blas"):
        yield


@jit
def matmul_loops(a, b, c):
    """``c = a @ b`` by plain loops, every entry summed in the same k order with the same ops.

    Slow next to BLAS, but *position-uniform*: equal inputs give bitwise-equal outputs in
    every row and column.
    """
    rows, inner = a.shape
    cols = b.shape[1]
    for i in range(rows):
        for j in range(cols):
            c[i, j] = 0.0
        for k in range(inner):
            x = a[i, k]
            for j in range(cols):
                c[i, j] += x * b[k, j]


# Inlined: a two-way branch is not worth a compiled function of its own per operand layout.
@jit(inline=True)
def gemm(a, b, c, loops):
    """``c = a @ b`` through BLAS, or :func:`matmul_loops` when ``loops``."""
    if loops:
        matmul_loops(a, b, c)
    else:
        np.dot(a, b, c)


@intrinsic
def _gemm_nt(typingctx, x, y, out, first, stop):
    """``out[first:stop] = y[:, first:stop].T @ x`` (C-contiguous matrices of one dtype) by one BLAS call.

    The call numba's ``np.dot`` makes (its ``numba_xxgemm`` entry point, a named symbol, so
    callers stay cacheable), with ``y``'s column range passed by its leading dimension instead
    of copied: BLAS packs the transposed operand itself, as it does for ``np.dot(y.T, x)``.
    Column-major, the product is ``out' (n_x, p) = x' (n_x, batch) @ y'[first:stop]^T``.
    """
    matrices = (x, y, out)
    if not all(isinstance(m, types.Array) and m.ndim == 2 and m.layout == "C" and m.dtype == x.dtype
               for m in matrices) or x.dtype not in (types.float32, types.float64):
        return None  # a typing error: only C-contiguous float32 or float64 matrices of one dtype
    signature = types.int32(x, y, out, types.int64, types.int64)

    def codegen(context, builder, sig, args):
        x_value, y_value, out_value, first_value, stop_value = args
        x_type, y_type, out_type = sig.args[:3]
        xs = context.make_array(x_type)(context, builder, x_value)
        ys = context.make_array(y_type)(context, builder, y_value)
        outs = context.make_array(out_type)(context, builder, out_value)
        batch, n_x = cgutils.unpack_tuple(builder, xs.shape, 2)
        _, n_y = cgutils.unpack_tuple(builder, ys.shape, 2)
        char, intp, void_p = ir.IntType(8), context.get_value_type(types.intp), ir.IntType(8).as_pointer()
        function_type = ir.FunctionType(ir.IntType(32), [char, char, char, intp, intp, intp, void_p, void_p, intp,
                                                         void_p, intp, void_p, void_p, intp])
        function = cgutils.get_or_insert_function(builder.module, function_type, "numba_xxgemm")
        dtype = x_type.dtype
        alpha = cgutils.alloca_once_value(builder, context.get_constant(dtype, 1.0))
        beta = cgutils.alloca_once_value(builder, context.get_constant(dtype, 0.0))
        y_columns = builder.gep(ys.data, [first_value])
        out_rows = builder.gep(outs.data, [builder.mul(first_value, n_x)])
        kind = ir.Constant(char, ord(get_blas_kind(dtype)))
        return builder.call(function, (
            kind, ir.Constant(char, ord("n")), ir.Constant(char, ord("t")),
            n_x, builder.sub(stop_value, first_value), batch,
            builder.bitcast(alpha, void_p), builder.bitcast(xs.data, void_p), n_x,
            builder.bitcast(y_columns, void_p), n_y, builder.bitcast(beta, void_p),
            builder.bitcast(out_rows, void_p), n_x))

    return signature, codegen


@jit(inline=True)
def gemm_columns_t(x, y, out, first, stop):
    """``out[first:stop] = y[:, first:stop].T @ x`` through BLAS, without a transposed copy of ``y``.

    Parameters
    ----------
    x : numpy.ndarray
        (batch, n_x), C-contiguous: for a weight gradient, the layer's input.
    y : numpy.ndarray
        (batch, n_y), C-contiguous, ``x``'s dtype: dL/dz.
    out : numpy.ndarray
        (n_y, n_x), C-contiguous, ``x``'s dtype: dL/dW; rows ``first:stop`` are written.
    first, stop : int
        The units (rows of ``out``, columns of ``y``) of this part.

    Notes
    -----
    The rows equal those of ``np.dot(y.T, x)`` (the kernels' weight gradient bits did not
    change when it replaced a transposed copy and ``np.dot``: the pinned tests).  BLAS's
    status is not checked: it fails only if scipy's BLAS cannot be loaded, and the forward
    pass's ``np.dot`` in the same kernel would have failed first.
    """
    if stop > first:
        _gemm_nt(x, y, out, np.int64(first), np.int64(stop))
