"""A float64 built from its bits, for kernels that LLVM should vectorise.

numba has no bit cast between integers and floats, and ``math.ldexp`` is a libm call, which
keeps the loop around it scalar.  An LLVM ``bitcast`` is free in a vector register.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

__all__ = ["power_of_two"]

_EXPONENT_BIAS = 1023
_MANTISSA_BITS = 52


@intrinsic
def power_of_two(typingctx, n):
    """``2.0 ** n`` exactly, as a float64, for an int32 ``n`` from -1022 to 1023 (a normal number).

    The float64 with zero mantissa and biased exponent ``n + 1023``: a sign extension, an
    add, a shift and a bit cast, each one vector instruction.  Outside that range the bits
    are not ``2.0 ** n`` (no check: the callers' ``n`` is bounded by construction).
    """
    if n != types.int32:
        return None  # a typing error: the callers pass an int32 (one vector conversion from float64)
    signature = types.float64(types.int32)

    def codegen(context, builder, sig, args):
        wide = builder.sext(args[0], ir.IntType(64))
        biased = builder.add(wide, ir.Constant(ir.IntType(64), _EXPONENT_BIAS))
        bits = builder.shl(biased, ir.Constant(ir.IntType(64), _MANTISSA_BITS))
        return builder.bitcast(bits, ir.DoubleType())

    return signature, codegen
