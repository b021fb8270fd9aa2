"""Matrix products: BLAS through numba's ``np.dot``, or position-uniform loops.

The loops exist for one study: exact symmetry.  OpenBLAS's sgemm micro-kernel rounds
columns 8-15 of each 16-column tile differently from columns 0-7 (1 ulp), so units that
are identical by construction (zero or constant initialisation) drift apart in float32;
the loops round every output position the same way.
"""

from __future__ import annotations

import contextlib

import numpy as np
from threadpoolctl import threadpool_limits

from fastinit._jit import jit


@contextlib.contextmanager
def one_blas_thread():
    """BLAS on one thread for the duration of the block, restored afterwards.

    Every GEMM of the kernels is one lane's, on one BLAS thread: the lanes are the
    parallelism, and OpenBLAS's last bits depend on its thread count, so a product run
    under this gives the same bits however many cores the machine has (scipy's BLAS,
    which numba's np.dot calls, is loaded first so that the limit reaches it).
    """
    import scipy.linalg.cython_blas  # noqa: F401 (loads the BLAS np.dot calls)

    with threadpool_limits(limits=1, user_api="blas"):
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
