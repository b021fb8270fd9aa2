"""Matrix products: BLAS through numba's ``np.dot``, or position-uniform loops.

The loops exist for one study: exact symmetry.  OpenBLAS's sgemm micro-kernel rounds
columns 8-15 of each 16-column tile differently from columns 0-7 (1 ulp), so units that
are identical by construction (zero or constant initialisation) drift apart in float32;
the loops round every output position the same way.
"""

from __future__ import annotations

import numpy as np

from fastinit._jit import jit


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
