"""Counter-based random streams for jitted code.

Every random number in fastinit is a pure function of its *address*::

    (seed, stream, substream, index)

computed with the Philox4x32-10 bijection (Salmon et al., "Parallel random numbers:
as easy as 1, 2, 3", SC 2011; the generator behind JAX, TensorFlow and cuRAND):

* key     = the 64-bit ``seed`` split into two 32-bit words;
* counter = ``(block, substream, stream_lo, stream_hi)``, one block giving four
  32-bit words.

So any stream can be drawn without drawing another first (a layer's weights are
re-drawn in the backward pass instead of stored), chunks of one array are drawn in
parallel, and the result never depends on the thread count.  ``stream`` is a 64-bit
id (a sweep derives it from a cell's key with :func:`stream_id`), ``substream`` a
31-bit id (a layer).

Normals use a 256-layer ziggurat (Marsaglia & Tsang 2000) fed one 32-bit word per
float32 sample and two per float64 sample: ``8`` bits choose the layer, ``1`` the
sign, the rest the abscissa, as NumPy does.  About 1 % of proposals are rejected;
a rejected sample ``j`` continues on its own *spill chain* -- Philox applied
repeatedly, starting from the counter ``(j, substream | 2**31, stream)`` -- so a
rejection never shifts the numbers of any other sample.
"""

from __future__ import annotations

import hashlib
import math

import numba
import numpy as np

from fastinit._jit import jit
from fastinit._team import run_team, team_size
from fastinit._validation import check_dtype, check_int, check_real, check_seed, check_shape, check_stream

__all__ = [
    "philox4x32",
    "standard_normal",
    "uniform",
    "truncated_normal",
    "stream_id",
    "MAX_SUBSTREAM",
]

MAX_SUBSTREAM = 2**31 - 1
# Philox draws are indexed by a 32-bit block/sample counter.
MAX_DRAW = 2**32 - 1

_SPILL_BIT = np.uint64(2**31)
_MASK32 = np.uint64(0xFFFFFFFF)
_PHILOX_M0 = np.uint64(0xD2511F53)
_PHILOX_M1 = np.uint64(0xCD9E8D57)
_PHILOX_W0 = np.uint64(0x9E3779B9)
_PHILOX_W1 = np.uint64(0xBB67AE85)
_TWO_POW_M32 = 2.0**-32
_TWO_POW_M24 = 2.0**-24
_TWO_POW_M53 = 2.0**-53
# Below this bound (in std units) a truncated normal is drawn by a uniform proposal
# (acceptance >= exp(-1/2) = 61 %) instead of normal rejection (acceptance P(|z| < b)).
_UNIFORM_PROPOSAL_BELOW = 1.0


# --------------------------------------------------------------------------- Philox


@jit(inline=True)
def _philox(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint64 words holding 32-bit values; returns four such words."""
    for _ in range(10):
        p0 = _PHILOX_M0 * c0
        p1 = _PHILOX_M1 * c2
        c0, c1, c2, c3 = (
            (p1 >> np.uint64(32)) ^ c1 ^ k0,
            p1 & _MASK32,
            (p0 >> np.uint64(32)) ^ c3 ^ k1,
            p0 & _MASK32,
        )
        k0 = (k0 + _PHILOX_W0) & _MASK32
        k1 = (k1 + _PHILOX_W1) & _MASK32
    return c0, c1, c2, c3


@jit
def _philox_array(counter, key, out):
    c = _philox(
        np.uint64(counter[0]), np.uint64(counter[1]), np.uint64(counter[2]), np.uint64(counter[3]),
        np.uint64(key[0]), np.uint64(key[1]),
    )
    for i in range(4):
        out[i] = c[i]


def philox4x32(counter, key) -> np.ndarray:
    """Apply the Philox4x32-10 bijection to one counter block.

    Exposed for known-answer tests against the Random123 reference vectors.

    Parameters
    ----------
    counter : sequence of 4 ints
        The 128-bit counter as four 32-bit words.
    key : sequence of 2 ints
        The 64-bit key as two 32-bit words.

    Returns
    -------
    numpy.ndarray
        Four ``uint32`` words.
    """
    counter = np.asarray(counter, dtype=np.uint64)
    key = np.asarray(key, dtype=np.uint64)
    if counter.shape != (4,) or key.shape != (2,) or counter.max() > 0xFFFFFFFF or key.max() > 0xFFFFFFFF:
        raise ValueError("philox4x32 takes 4 counter words and 2 key words, each in [0, 2**32 - 1]")
    out = np.empty(4, dtype=np.uint64)
    _philox_array(counter, key, out)
    return out.astype(np.uint32)


# ------------------------------------------------------------------------- ziggurat

_ZIG_R = 3.6541528853610088  # right edge of the base layer for 256 layers
_ZIG_V = 4.92867323399e-3  # area of every layer


def ziggurat_tables(mantissa_bits: int):
    """Marsaglia & Tsang's 256-layer ziggurat tables for ``mantissa_bits``-bit abscissae.

    Layer 0 is the base strip (with the tail), layer ``i >= 1`` spans ``[0, x_i]``
    with ``x_1 < ... < x_255 = r``.  A proposal ``x = m * w[i]`` with ``m`` uniform in
    ``[0, 2**mantissa_bits)`` lies under the curve when ``m < k[i]``.

    Parameters
    ----------
    mantissa_bits : int
        Bits of the integer abscissa: 23 for float32 samples, 52 for float64.

    Returns
    -------
    k : numpy.ndarray of uint64
        Fast-acceptance thresholds.
    w : numpy.ndarray of float64
        Layer widths divided by ``2**mantissa_bits``.
    f : numpy.ndarray of float64
        The density ``exp(-x_i**2 / 2)`` at each layer's edge (``f[0] = 1``).
    """
    m1 = 2.0**mantissa_bits
    r, v = _ZIG_R, _ZIG_V
    density = lambda x: math.exp(-0.5 * x * x)  # noqa: E731
    q = v / density(r)
    k = np.zeros(256, dtype=np.uint64)
    w = np.zeros(256)
    f = np.zeros(256)
    k[0] = int(r / q * m1)
    w[0], w[255] = q / m1, r / m1
    f[0], f[255] = 1.0, density(r)
    upper = r
    for i in range(254, 0, -1):
        x = math.sqrt(-2.0 * math.log(v / upper + density(upper)))
        k[i + 1] = int(x / upper * m1)
        upper = x
        f[i] = density(x)
        w[i] = x / m1
    return k, w, f


_K32, _W32, _F32 = ziggurat_tables(23)
_K64, _W64, _F64 = ziggurat_tables(52)

# The vectorised fast paths test ``x < T[i]`` with ``T = fl(k * w)`` instead of
# ``m < k[i]``: the same verdict for every ``m``, and a float comparison that merges
# with the truncation test into one (see :func:`_fast_path_f32`).  Proof: ``m`` and
# ``k`` are integers below ``2**53``, so exact as floats, and ``w > 0``; rounding is
# monotone, so ``m <= k - 1`` gives ``fl(m w) <= fl((k - 1) w)`` and ``m >= k`` gives
# ``fl(m w) >= fl(k w)``.  The verdicts therefore agree iff ``fl((k - 1) w) <
# fl(k w)`` in every layer with ``k >= 1`` (layer 1 has ``k = 0``: ``x < 0`` never
# holds, ``m < 0`` neither).  The exact products differ by ``w = k w / k``, at least
# one ulp, which leaves ties as the only risk: ``tests/test_rng.py`` checks the
# boundary in every layer of both tables and every ``m`` of the float32 one.
_T32 = _K32 * _W32
_T64 = _K64 * _W64


@jit(inner=True)
def _open_unit(word):
    """A uniform in the open interval (0, 1) from one 32-bit word (safe for log)."""
    return (np.float64(word) + 0.5) * _TWO_POW_M32


@jit(inner=True)
def _propose(lo, hi, wide):
    """Split random bits into a ziggurat proposal ``(accepted, x, layer, negative)``.

    float32 (``wide=False``): one word, 8 bits of layer, 1 of sign, 23 of abscissa.
    float64: two words, 8 + 1 + 52 bits, as NumPy does.
    """
    if wide:
        word = (hi << np.uint64(32)) | lo
        idx = np.int64(word & np.uint64(0xFF))
        m = word >> np.uint64(12)
        x = np.float64(m) * _W64[idx]
        accepted = m < _K64[idx]
    else:
        word = lo
        idx = np.int64(word & np.uint64(0xFF))
        m = word >> np.uint64(9)
        x = np.float64(m) * _W32[idx]
        accepted = m < _K32[idx]
    negative = ((word >> np.uint64(8)) & np.uint64(1)) == 1
    return accepted, x, idx, negative


@jit(inner=True)
def _ziggurat_step(idx, x, negative, b0, b1, b2, b3, wide):
    """One further attempt at a ziggurat draw rejected at ``x`` in layer ``idx``.

    Uses the spill-chain block ``b0..b3``: words 0-1 a new proposal, words 2-3 the
    uniforms of the wedge or tail test.  Returns ``(done, z, idx, x, negative)``:
    the sample when ``done``, else the proposal the next attempt must finish.
    """
    if idx == 0:
        # Marsaglia's tail method: exact for |x| > r, loops inside the tail.
        t = -math.log(_open_unit(b2)) / _ZIG_R
        y = -math.log(_open_unit(b3))
        z = _ZIG_R + t
        return y + y > t * t, (-z if negative else z), idx, x, negative
    f_lo = _F64[idx] if wide else _F32[idx]
    f_hi = _F64[idx - 1] if wide else _F32[idx - 1]
    if f_lo + _open_unit(b2) * (f_hi - f_lo) < math.exp(-0.5 * x * x):
        return True, (-x if negative else x), idx, x, negative
    # Wedge test failed: a whole new proposal.
    accepted, x, idx, negative = _propose(b0, b1, wide)
    return accepted, (-x if negative else x), idx, x, negative


@jit(inner=True)
def _ziggurat_retry(idx, x, negative, b0, b1, b2, b3, k0, k1, wide):
    """Finish a ziggurat draw by :func:`_ziggurat_step` on the blocks after ``b0..b3``.

    ``b0..b3`` is the last block of the sample's spill chain used so far.  Returns
    the sample and the last block used, so that a caller needing more numbers
    continues the chain.
    """
    while True:
        b0, b1, b2, b3 = _philox(b0, b1, b2, b3, k0, k1)
        done, z, idx, x, negative = _ziggurat_step(idx, x, negative, b0, b1, b2, b3, wide)
        if done:
            return z, b0, b1, b2, b3


@jit(inner=True)
def _truncation_step(z, bound, b0, b1, b2, b3, k0, k1, wide):
    """Redraw a sample ``z`` outside ``[-bound, bound]`` from the spill-chain block ``b0..b3``.

    Returns the new sample (``z`` again if the uniform proposal was rejected) and the
    last block used (a later one if the ziggurat needed more).
    """
    if bound < _UNIFORM_PROPOSAL_BELOW:
        x = bound * (2.0 * _open_unit(b0) - 1.0)
        if _open_unit(b1) < math.exp(-0.5 * x * x):
            z = x
        return z, b0, b1, b2, b3
    accepted, x, idx, negative = _propose(b0, b1, wide)
    if accepted:
        return (-x if negative else x), b0, b1, b2, b3
    return _ziggurat_retry(idx, x, negative, b0, b1, b2, b3, k0, k1, wide)


@jit(inner=True)
def _redraw(lo, hi, wide, bound, c0, c1, c2, c3, k0, k1):
    """A sample flagged by the fast path, from its main words and its first spill block.

    ``lo, hi`` are the sample's main words (``hi`` unused for float32), ``c0..c3`` the
    first block of its spill chain, ``Philox((j, substream | 2**31, stream))``, which
    :func:`fill_chunk` computes for all flagged samples at once.  The redraw always
    starts with that block: the ziggurat's second attempt if the proposal was rejected,
    else (the sample was flagged for ``|z| > bound``) the first truncation redraw.
    ``bound`` is ``inf`` for an untruncated normal.
    """
    accepted, x, idx, negative = _propose(lo, hi, wide)
    if accepted:
        z, b0, b1, b2, b3 = _truncation_step(-x if negative else x, bound, c0, c1, c2, c3, k0, k1, wide)
    else:
        b0, b1, b2, b3 = c0, c1, c2, c3
        done, z, idx, x, negative = _ziggurat_step(idx, x, negative, c0, c1, c2, c3, wide)
        if not done:
            z, b0, b1, b2, b3 = _ziggurat_retry(idx, x, negative, c0, c1, c2, c3, k0, k1, wide)
    # Further truncation redraws continue the chain, so no block is ever used twice.
    while abs(z) > bound:
        b0, b1, b2, b3 = _philox(b0, b1, b2, b3, k0, k1)
        z, b0, b1, b2, b3 = _truncation_step(z, bound, b0, b1, b2, b3, k0, k1, wide)
    return z


# ---------------------------------------------------------------------- fill kernels
#
# Each parallel chunk runs three loops over its own slice, the first two written so
# that LLVM vectorises them (no branches, no calls): (1) Philox words for the chunk's
# blocks; (2) the distribution's fast path for every sample, flagging the ~1.5 % that
# the ziggurat (or the truncation) rejects; (3) a pass that redraws only the flagged
# samples from their spill chains, the first block of every chain computed in bulk.
# Sample ``j`` always uses word ``j % 4`` of block ``j // 4`` (float32) or words
# ``2 (j % 2)``, ``2 (j % 2) + 1`` of block ``j // 2`` (float64), whatever the chunking.

# Philox blocks per parallel chunk: large enough to amortise scheduling, small enough
# for the scratch words to stay in L1/L2 and to balance two threads on modest arrays.
_CHUNK_BLOCKS = 2048

KIND_NORMAL = 0
KIND_UNIFORM = 1
KIND_TRUNCATED = 2


@jit(inner=True)
def _philox_words(first_block, words, sub, s_lo, s_hi, k0, k1):
    """Fill ``words`` (uint32, a multiple of 4 long) with consecutive Philox blocks."""
    for i in range(words.size // 4):
        w0, w1, w2, w3 = _philox(np.uint64(first_block + i), sub, s_lo, s_hi, k0, k1)
        words[4 * i] = w0
        words[4 * i + 1] = w1
        words[4 * i + 2] = w2
        words[4 * i + 3] = w3


@jit(inner=True)
def _fast_path_f32(kind, words, out, reject, a, b):
    """Vectorisable first pass for float32 samples; flags the ones to redraw."""
    if kind == KIND_UNIFORM:
        for i in range(out.size):
            out[i] = a + (b - a) * (np.float64(np.uint64(words[i]) >> np.uint64(8)) * _TWO_POW_M24)
        return
    # One comparison flags both ziggurat rejections (``x >= T``, see ``_T32``) and,
    # when truncating, ``x > b``, i.e. ``x >= nextafter(b)``.  Two comparisons OR-ed
    # together made this loop twice as slow (1.1 against 0.6 ms per 1M samples on an
    # AVX-512 AMD EPYC): LLVM then builds the second mask in ``k0``, and the
    # ``kxnorb k0, k0`` that seeds every gather's mask makes the next iteration's
    # gathers wait for this one's.
    limit = np.nextafter(b if kind == KIND_TRUNCATED else np.inf, np.inf)
    for i in range(out.size):
        word = np.uint64(words[i])
        idx = word & np.uint64(0xFF)
        x = np.float64(word >> np.uint64(9)) * _W32[idx]
        out[i] = a * (-x if (word >> np.uint64(8)) & np.uint64(1) else x)
        reject[i] = x >= min(_T32[idx], limit)


@jit(inner=True)
def _fast_path_f64(kind, words, out, reject, a, b):
    """Vectorisable first pass for float64 samples (two words each)."""
    if kind == KIND_UNIFORM:
        for i in range(out.size):
            lo = np.uint64(words[2 * i])
            hi = np.uint64(words[2 * i + 1])
            u = (np.float64(hi >> np.uint64(5)) * 67108864.0 + np.float64(lo >> np.uint64(6))) * _TWO_POW_M53
            out[i] = a + (b - a) * u
        return
    limit = np.nextafter(b if kind == KIND_TRUNCATED else np.inf, np.inf)  # as _fast_path_f32
    for i in range(out.size):
        word = (np.uint64(words[2 * i + 1]) << np.uint64(32)) | np.uint64(words[2 * i])
        idx = word & np.uint64(0xFF)
        x = np.float64(word >> np.uint64(12)) * _W64[idx]
        out[i] = a * (-x if (word >> np.uint64(8)) & np.uint64(1) else x)
        reject[i] = x >= min(_T64[idx], limit)


@jit(inline=True)
def fill_chunk(out, chunk, wide, kind, a, b, seed, stream, substream):
    """Fill chunk ``chunk`` of the 1-D array ``out`` (see :func:`fill_serial`); the unit of parallel work.

    Chunk ``c`` covers samples ``[c * n, (c + 1) * n)``, ``n = chunk_samples(wide)``,
    and writes nothing else, so chunks may be filled in any order, by any thread.
    """
    chunk_size = chunk_samples(wide)
    start = chunk * chunk_size
    fill_range(out, start, min(start + chunk_size, out.size), wide, kind, a, b, seed, stream, substream)


@jit
def fill_range(out, start, stop, wide, kind, a, b, seed, stream, substream):
    """Fill samples ``[start, stop)`` of the 1-D array ``out``; ``start`` a multiple of a Philox block's samples
    (4 in float32, 2 in float64).

    Every sample is a function of its index alone (its block's counter, its spill chain's),
    so any cut of ``out`` into such ranges, filled in any order by any thread, gives the
    numbers :func:`fill_serial` gives.

    Parameters
    ----------
    out : numpy.ndarray
        1-D float32 or float64.
    start, stop : int
        The samples written.
    wide : bool
        ``out`` is float64.
    kind : int
        ``KIND_NORMAL``, ``KIND_TRUNCATED`` or ``KIND_UNIFORM`` (see :func:`fill_serial`).
    a, b : float
        The distribution's parameters.
    seed, stream, substream : int
        The stream.
    """
    per_block = 2 if wide else 4
    k0, k1 = np.uint64(seed) & _MASK32, np.uint64(seed) >> np.uint64(32)
    s_lo, s_hi = np.uint64(stream) & _MASK32, np.uint64(stream) >> np.uint64(32)
    sub = np.uint64(substream)
    words = np.empty(4 * ((stop - start + per_block - 1) // per_block), dtype=np.uint32)
    reject = np.empty(stop - start, dtype=np.bool_)
    _philox_words(start // per_block, words, sub, s_lo, s_hi, k0, k1)
    if wide:
        _fast_path_f64(kind, words, out[start:stop], reject, a, b)
    else:
        _fast_path_f32(kind, words, out[start:stop], reject, a, b)
    if kind == KIND_UNIFORM:
        return
    # About 1.5 % of samples are flagged.  List them, compute the first block of each
    # one's spill chain in one vectorisable loop (scalar Philox is a 10-round chain of
    # dependent multiplies), then finish each in scalar code, which rarely needs a
    # second block.
    flagged = np.empty(stop - start, dtype=np.int32)
    count = 0
    # Scan the flags eight at a time, visiting only the set ones: ``low`` isolates the
    # lowest set bit, ``1 << 8 k`` for flag k of the group (numba's platforms are all
    # little-endian), and the multiply moves byte ``7 - k`` = k of the constant to the
    # top.  Halves the scan's cost against looping over every flag of a non-zero group.
    flags = reject[: 8 * (reject.size // 8)].view(np.uint64)
    for g in range(flags.size):
        f = flags[g]
        while f:
            low = f & (~f + np.uint64(1))
            flagged[count] = 8 * g + np.int32((low * np.uint64(0x0001020304050607)) >> np.uint64(56))
            count += 1
            f ^= low
    for i in range(8 * flags.size, reject.size):
        flagged[count] = i  # branchless append
        count += reject[i]
    spill = np.empty(4 * count, dtype=np.uint32)
    spill_sub = sub | _SPILL_BIT
    for r in range(count):
        c0, c1, c2, c3 = _philox(np.uint64(start + flagged[r]), spill_sub, s_lo, s_hi, k0, k1)
        spill[4 * r] = c0
        spill[4 * r + 1] = c1
        spill[4 * r + 2] = c2
        spill[4 * r + 3] = c3
    bound = b if kind == KIND_TRUNCATED else np.inf
    for r in range(count):
        i = flagged[r]
        lo = np.uint64(words[2 * i]) if wide else np.uint64(words[i])
        hi = np.uint64(words[2 * i + 1]) if wide else np.uint64(0)
        z = _redraw(lo, hi, wide, bound, np.uint64(spill[4 * r]), np.uint64(spill[4 * r + 1]),
                    np.uint64(spill[4 * r + 2]), np.uint64(spill[4 * r + 3]), k0, k1)
        out[start + i] = a * z


@jit
def chunk_samples(wide):
    """Samples in one :func:`fill_chunk` chunk: its Philox blocks' words, one (float32) or two (float64) each."""
    return _CHUNK_BLOCKS * (2 if wide else 4)


@jit
def chunk_count(size, wide):
    """Number of :func:`fill_chunk` chunks of an array of ``size`` samples."""
    chunk_size = chunk_samples(wide)
    return (size + chunk_size - 1) // chunk_size


@jit
def fill_serial(out, wide, kind, a, b, seed, stream, substream):
    """Fill the 1-D float32 or float64 array ``out`` from ``(seed, stream, substream)``.

    ``kind`` selects the distribution: ``KIND_NORMAL`` gives ``a * z``,
    ``KIND_TRUNCATED`` gives ``a * z`` with ``|z| <= b``, ``KIND_UNIFORM`` gives
    ``U[a, b)``.  ``wide`` must be True exactly when ``out`` is float64.
    """
    # The loop itself, not a call of fill_share: one call level less under the kernels
    # (each level optimises and compiles the whole sampler again).
    for chunk in range(chunk_count(out.size, wide)):
        fill_chunk(out, chunk, wide, kind, a, b, seed, stream, substream)


@jit(inline=True)  # into the kernels that share a draw: one call level less to compile
def fill_share(worker, n_workers, out, wide, kind, a, b, seed, stream, substream):
    """Worker ``worker``'s share of :func:`fill_serial`: chunks ``worker, worker + n_workers, ...``, or for an
    array of fewer chunks than workers (a small layer's weights) a block-aligned ``n_workers``-th of it.

    Each share writes only its own slice, so ``n_workers`` workers running at once
    (:func:`fastinit._team.run_team`) give the numbers one worker gives.
    """
    n_chunks = chunk_count(out.size, wide)
    if n_chunks >= n_workers:
        for chunk in range(worker, n_chunks, n_workers):
            fill_chunk(out, chunk, wide, kind, a, b, seed, stream, substream)
        return
    per_block = 2 if wide else 4
    n_blocks = (out.size + per_block - 1) // per_block
    start = n_blocks * worker // n_workers * per_block
    stop = min(n_blocks * (worker + 1) // n_workers * per_block, out.size)
    if stop > start:
        fill_range(out, start, stop, wide, kind, a, b, seed, stream, substream)


# Below this many samples (~1 ms of drawing) starting a second worker costs more than it
# saves; below it the draw also runs the very function (and signature) the kernels call,
# so a first propagate compiles the sampler once, not again for an entry point.
PARALLEL_MIN_SAMPLES = 1 << 20


def fill_signature(dtype):
    """The numba argument types :func:`fill` calls :func:`fill_serial` with for a ``dtype`` array (for ``compile``).

    Parameters
    ----------
    dtype : numpy dtype or str
        float32 or float64.

    Returns
    -------
    tuple
    """
    array = numba.types.Array(numba.from_dtype(np.dtype(dtype)), 1, "C")
    t = numba.types
    return (array, t.boolean, t.int64, t.float64, t.float64, t.uint64, t.uint64, t.int64)


def fill(out: np.ndarray, kind: int, a: float, b: float, seed: int, stream: int, substream: int) -> None:
    """Fill a C-contiguous float32 or float64 array in place (no validation: internal).

    Large arrays are drawn by a thread team (:mod:`fastinit._team`); the numbers are
    the same for any number of workers.
    """
    flat = out.reshape(-1)
    wide = flat.dtype == np.float64
    args = (flat, wide, np.int64(kind), float(a), float(b), np.uint64(seed), np.uint64(stream), np.int64(substream))
    n_workers = team_size(chunk_count(flat.size, wide)) if flat.size >= PARALLEL_MIN_SAMPLES else 1
    if n_workers == 1:
        fill_serial(*args)
    else:
        run_team(fill_share, n_workers, *args)


# ------------------------------------------------------------------- public draws


def _draw(kind, a, b, seed, size, stream, substream, dtype):
    seed = check_seed(seed)
    stream = check_stream(stream)
    substream = check_int("substream", substream, minimum=0, maximum=MAX_SUBSTREAM)
    dtype = check_dtype(dtype)
    out = np.empty(check_shape(size, "size"), dtype=dtype)
    if out.size > MAX_DRAW:
        raise ValueError(f"size must hold at most {MAX_DRAW} numbers per stream, got {out.size}; split the draw over substreams")
    fill(out, kind, a, b, seed, stream, substream)
    return out


def standard_normal(seed: int, size, *, stream: int = 0, substream: int = 0, dtype="float32") -> np.ndarray:
    """Draw standard normal numbers from the stream ``(seed, stream, substream)``.

    Parameters
    ----------
    seed : int
        Root seed in ``[0, 2**64 - 1]``.
    size : int or tuple of int
        Output shape.
    stream : int, default 0
        64-bit stream id (e.g. from :func:`stream_id`).
    substream : int, default 0
        31-bit sub-stream id (e.g. a layer index).
    dtype : {"float32", "float64"}, default "float32"
        Output dtype.  A float32 sample uses 23 random bits of abscissa, a float64
        sample 52.

    Returns
    -------
    numpy.ndarray
        Array of shape ``size``; identical for identical arguments, on any thread count.
    """
    return _draw(KIND_NORMAL, 1.0, 0.0, seed, size, stream, substream, dtype)


def uniform(
    seed: int, size, *, low: float = 0.0, high: float = 1.0, stream: int = 0, substream: int = 0, dtype="float32"
) -> np.ndarray:
    """Draw uniform numbers in ``[low, high)`` from the stream ``(seed, stream, substream)``.

    float32 samples are multiples of ``2**-24`` before scaling, float64 of ``2**-53``.
    See :func:`standard_normal` for the other parameters.
    """
    low = check_real("low", low)
    high = check_real("high", high)
    if not high > low:
        raise ValueError(f"high must be greater than low, got low={low!r}, high={high!r}")
    return _draw(KIND_UNIFORM, low, high, seed, size, stream, substream, dtype)


def truncated_normal(
    seed: int, size, *, bound: float = 2.0, stream: int = 0, substream: int = 0, dtype="float32"
) -> np.ndarray:
    """Draw standard normal numbers conditioned on ``|z| <= bound``.

    Parameters
    ----------
    bound : float, default 2.0
        Truncation point in units of the (untruncated) standard deviation; must be > 0.
        The variance of the result is ``1 - 2 b phi(b) / (2 Phi(b) - 1)``, e.g.
        ``0.7737`` for ``b = 2``.

    See :func:`standard_normal` for the other parameters.
    """
    bound = check_real("bound", bound, minimum=0.0, exclusive_minimum=True)
    return _draw(KIND_TRUNCATED, 1.0, bound, seed, size, stream, substream, dtype)


def stream_id(*parts) -> int:
    """A stable 64-bit stream id from any sequence of strings and integers.

    The id depends only on the values (BLAKE2b of their ``repr``), never on the
    Python process, platform or position in a grid: the sweep names each cell's
    stream by its parameters, so adding a value to a grid never changes another
    cell's numbers.

    Returns
    -------
    int
        An integer in ``[0, 2**64 - 1]``.
    """
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")
