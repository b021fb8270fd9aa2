"""``fastinit.propagate``: speed at the headline shapes, memory of a deep net, compile and
import time, and how closely fitted per-layer gains follow theory.

Only the public API that every commit since ``propagate`` landed has (``fastinit.propagate``
with ``init_params``), so the history of ``main`` can be benchmarked.
"""

from __future__ import annotations

import time

import numpy as np

import fastinit

from .common import SEED

HEADLINE_SHAPES = [(64, 1000), (256, 500), (1024, 100)]  # (width, depth) from docs/design.md section 7
BATCH = 256
HE_RELU = {"nonlinearity": "relu"}
# float64 is timed at one shape only: it shows the dtype's cost without doubling the suite.
FLOAT64_CASE = ((256, 500), "relu")


def _warm(activation, dtype):
    """Compile (or load from numba's cache) the kernels for ``dtype``, outside any timing."""
    fastinit.propagate("he_normal", activation, depth=2, width=8, batch=4, seed=SEED, dtype=dtype)


class _SlowCalls:
    """asv's sampling for calls of 0.5-5 s on one thread: a few samples, one round, no warm-up calls (the JIT
    is warmed in ``setup``)."""

    number = 1
    repeat = (2, 5, 10.0)
    rounds = 1
    warmup_time = 0.0
    timeout = 180


class Propagate(_SlowCalls):
    """Forward and backward through He-initialised nets, batch 256, with every per-layer statistic."""

    params = [HEADLINE_SHAPES, ["relu", "tanh"], ["float32", "float64"]]
    param_names = ["(width, depth)", "activation", "dtype"]

    def setup(self, shape, activation, dtype):
        if dtype == "float64" and (shape, activation) != FLOAT64_CASE:
            raise NotImplementedError(f"float64 is benchmarked at {FLOAT64_CASE} only")
        width, depth = shape
        self.kwargs = {"depth": depth, "width": width, "batch": BATCH, "seed": SEED, "dtype": dtype,
                       "init_params": HE_RELU}
        _warm(activation, dtype)

    def time_propagate(self, shape, activation, dtype):
        fastinit.propagate("he_normal", activation, **self.kwargs)


class Throughput:
    """Effective GFLOP/s, 6 batch width^2 depth / seconds (the three GEMMs per layer), He/ReLU,
    float32, best of two calls: the number to hold against the machine's peak sgemm rate
    (``python asv_bench/peers.py propagate`` prints it).  ReLU only: tanh's rate follows from
    ``Propagate.time_propagate``."""

    params = [HEADLINE_SHAPES]
    param_names = ["(width, depth)"]
    rounds = 1
    timeout = 180

    def setup(self, shape):
        _warm("relu", "float32")

    def track_gflops(self, shape):
        width, depth = shape
        best = np.inf
        for _ in range(2):
            start = time.perf_counter()
            fastinit.propagate("he_normal", "relu", depth=depth, width=width, batch=BATCH, seed=SEED,
                               init_params=HE_RELU)
            best = min(best, time.perf_counter() - start)
        return 6.0 * BATCH * width**2 * depth / best / 1e9

    track_gflops.unit = "GFLOP/s"


class Underflow(_SlowCalls):
    """A net whose unrescaled forward runs into float32's subnormals: uniform init, silu, width 256, depth 100
    (once the default study's slowest cells: their mean square goes subnormal at layer 71, every value is 0
    from 86).

    Subnormal operands cost x86 about 180x in a GEMM; the rescaled net's GEMMs take such inputs lifted by a
    power of two (the forward's z and the backward's weight gradient), so this runs near a normal net's time.
    """

    def setup(self):
        _warm("silu", "float32")

    def time_propagate_underflow(self):
        fastinit.propagate("uniform", "silu", depth=100, width=256, batch=BATCH, seed=SEED)


class DeepNet:
    """Peak memory of a 10,000-layer He/ReLU net (width 128, batch 128, float32).

    Its layers would need 1.3 GB stored; the 384 MiB memory budget holds 3,072 of them
    (ReLU keeps only each layer's output and weights), so the backward pass recomputes
    segments from checkpoints and peak memory stays at the budget plus what the
    interpreter holds (numba, LLVM, SciPy), whatever the depth.  docs/design.md's 10,000 x 512
    net peaks the same way (648 MB RSS) but takes ~20 s against a few here, which would
    dominate the suite and CI.
    """

    timeout = 300

    def setup(self):
        _warm("relu", "float32")

    def peakmem_deep_relu(self):
        fastinit.propagate("he_normal", "relu", depth=10_000, width=128, batch=128, seed=SEED, init_params=HE_RELU)


_FIRST_CALL = """
import fastinit
fastinit.propagate("he_normal", "relu", depth=2, width=8, batch=4)
"""
# A first float64 call after a float32 one: what the second dtype adds to a cold start.
_FLOAT64_AFTER_FLOAT32 = _FIRST_CALL + """fastinit.propagate("he_normal", "relu", depth=2, width=8, batch=4, dtype="float64")
"""
_FIRST_TRAIN = """
import fastinit.train
fastinit.train.run("he_normal", "relu", depth=3, width=32, task="teacher", epochs=2)
"""
# Untimed in the child before numba is imported; the directory goes when the child's timeit returns.
_EMPTY_CACHE = "import os, tempfile\ncold = tempfile.TemporaryDirectory()\nos.environ['NUMBA_CACHE_DIR'] = cold.name"


class ImportAndCompile:
    """Start-up as a user meets it, each sample a fresh interpreter.

    ``import``: ``import fastinit`` alone.  ``first_call_cached``: import plus a first
    ``propagate`` with numba's on-disk cache warm (the cache is filled in setup).
    ``first_call_cold``: the same with an empty ``NUMBA_CACHE_DIR``, so every kernel compiles;
    ``float32_then_float64_cold`` adds a first float64 call.
    """

    number = 1
    repeat = (3, 5, 20.0)
    rounds = 1

    def setup(self):
        _warm("relu", "float32")

    def timeraw_import(self):
        return "import fastinit"

    def timeraw_first_call_cached(self):
        return _FIRST_CALL

    def timeraw_first_call_cold(self):
        return _FIRST_CALL, _EMPTY_CACHE

    def timeraw_float32_then_float64_cold(self):
        return _FLOAT64_AFTER_FLOAT32, _EMPTY_CACHE

    # A cold compile takes 15-40 s on this machine: one sample is enough.
    timeraw_first_call_cold.repeat = timeraw_float32_then_float64_cold.repeat = 1
    timeraw_first_call_cold.timeout = timeraw_float32_then_float64_cold.timeout = 300


class TrainStart:
    """A first ``fastinit.train.run`` in a fresh interpreter, with numba's cache warm and empty."""

    number = 1
    repeat = (3, 5, 20.0)
    rounds = 1

    def setup(self):
        exec(_FIRST_TRAIN)  # fill the cache

    def timeraw_first_train_cached(self):
        return _FIRST_TRAIN

    def timeraw_first_train_cold(self):
        return _FIRST_TRAIN, _EMPTY_CACHE

    timeraw_first_train_cold.repeat = 1
    timeraw_first_train_cold.timeout = 300


# Per-layer forward variance factor n Var(W) E[phi(z)^2] / Var(z) for equal widths, zero bias
# (docs/theory.md section 2).  tanh: in the small-signal (linear) regime tanh(z) ~ z, so the factor
# is n Var(W) = 1 for Xavier; see FitQuality.
THEORY_GAIN = {
    "linear+lecun_normal": 1.0,
    "relu+he_normal": 1.0,
    "relu+xavier_normal": 0.5,
    "tanh+xavier_normal": 1.0,
}


class FitQuality:
    """|fitted per-layer gain - theory| of the forward variance, depth 200, width 256, batch 128.

    The gain is ``10 ** slope`` of a least-squares line through ``log10_fwd_var`` over the
    layers.  Linear/LeCun is exact up to sampling noise (below 0.001 here).  ReLU/He and ReLU/Xavier
    also carry ReLU's finite-width drift, about -2.5/width per layer in the log (Hanin &
    Rolnick 2018; docs/theory.md section 4): 0.017 and half that at width 256.  tanh/Xavier (sigma_w^2 = 1) is
    marginal: the variance decays like 1/(2 l) (docs/theory.md section 3), approaching the
    small-signal gain 1 only as l grows (0.015 here); it is tracked to catch changes, not to be
    zero.  Deterministic: a fixed seed, so any change is a change
    in the code.
    """

    params = [list(THEORY_GAIN)]
    param_names = ["activation+init"]
    rounds = 1
    timeout = 120

    def setup(self, case):
        _warm("relu", "float32")

    def track_gain_error(self, case):
        activation, init = case.split("+")
        rows = fastinit.propagate(init, activation, depth=200, width=256, batch=128, seed=SEED)
        slope = np.polyfit(rows["layer"].to_numpy(float), rows["log10_fwd_var"].to_numpy(), 1)[0]
        return abs(10.0**slope - THEORY_GAIN[case])

    track_gain_error.unit = "|gain - theory|"
