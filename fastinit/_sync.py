"""A spin barrier for the workers of a thread team (:mod:`fastinit._team`).

Waking a sleeping thread costs 40-50 us on the project machine, more than a whole
layer of a width-256 net.  The propagation kernel therefore starts its workers *once*
per call; they walk the layers together, meeting here between phases (measured: 0.1 us
per barrier on 2 cores).

numba has no atomics on the CPU target, so the three operations the barrier needs are
LLVM intrinsics.  They are named external symbols or plain instructions, never raw
addresses, so functions using them can still be cached.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from fastinit._jit import jit

__all__ = ["barrier"]

# Spins before a waiting worker starts yielding its core: enough to cover a short
# phase on the other core without a system call, few enough that an oversubscribed
# machine (more workers than free cores) still makes progress.
_SPINS_BEFORE_YIELD = 2000


def _item_pointer(context, builder, array_type, array, index):
    array_struct = context.make_array(array_type)(context, builder, array)
    return cgutils.get_item_pointer(context, builder, array_type, array_struct, [index])


@intrinsic
def atomic_add(typingctx, counters, index, value):
    """``counters[index] += value`` atomically (sequentially consistent); returns the old value."""
    sig = types.int64(counters, types.intp, types.int64)

    def codegen(context, builder, signature, args):
        pointer = _item_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.atomic_rmw("add", pointer, args[2], "seq_cst")

    return sig, codegen


@intrinsic
def atomic_load(typingctx, counters, index):
    """``counters[index]``, read atomically with acquire ordering."""
    sig = types.int64(counters, types.intp)

    def codegen(context, builder, signature, args):
        pointer = _item_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(pointer, "acquire", 8)

    return sig, codegen


@intrinsic
def yield_core(typingctx):
    """Call ``sched_yield()``: let another runnable thread have this core."""
    sig = types.int32()

    def codegen(context, builder, signature, args):
        function = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        return builder.call(function, [])

    return sig, codegen


@jit
def barrier(state, parties):
    """Wait until ``parties`` workers have called ``barrier`` on ``state`` (sense by generation).

    ``state`` is an int64 array ``[arrived, generation]``, zeros when fresh, shared by the
    workers.
    The last worker to arrive resets the count and opens the next generation; the
    others spin on the generation word, then yield.  The atomics order every write a
    worker made before the barrier before every read another makes after it.
    """
    if parties <= 1:
        return
    generation = atomic_load(state, 1)
    if atomic_add(state, 0, 1) == parties - 1:
        atomic_add(state, 0, -parties)
        atomic_add(state, 1, 1)
        return
    spins = 0
    while atomic_load(state, 1) == generation:
        spins += 1
        if spins > _SPINS_BEFORE_YIELD:
            yield_core()
