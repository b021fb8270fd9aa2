"""The two records that cross the Python/kernel boundary, and the columns of the statistics they carry out."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Columns of the per-layer raw statistics array (``stats[layer - 1, column]``).  A sum is
# NaN when the matrix it sums has a non-finite entry (its ``*_NONFINITE`` count says how
# many): a sum over the finite entries only would be a statistic of another matrix.
FWD_SUM, FWD_SUMSQ, FWD_LOG_SCALE = 0, 1, 2
ACT_SUMSQ, ACT_LOG_SCALE = 3, 4
GRAD_SUM, GRAD_SUMSQ, GRAD_LOG_SCALE = 5, 6, 7
WGRAD_SUM, WGRAD_SUMSQ, WGRAD_LOG_SCALE = 8, 9, 10
DEAD_UNITS, SATURATED, CORR_SUM = 11, 12, 13
# Non-finite entries of z_l, h_l, dL/dz_l and dL/dW_l.
FWD_NONFINITE, ACT_NONFINITE, GRAD_NONFINITE, WGRAD_NONFINITE = 14, 15, 16, 17
N_STATS = 18
# Where a layer normalises (``LayerConfig.norm_at``): z_l before phi; the residual branch's
# input (pre-norm, h_l = h_{l-1} + alpha phi(W_l Norm(h_{l-1}))); the residual sum (post-norm).
NORM_PREACT, NORM_BRANCH, NORM_OUTPUT = 0, 1, 2
# The codes of the ``norm_at`` names (fastinit._validation.NORM_SITES), for propagate's and train's records.
NORM_AT_CODES = {"preact": NORM_PREACT, "branch": NORM_BRANCH, "output": NORM_OUTPUT}


# Two records cross the Python/kernel boundary (built by ``fastinit.propagate.Plan``, the
# one place that makes them).  numba types a NamedTuple by its fields' types, so every
# field keeps one type -- counts and codes int64, flags bool, parameters float64 -- and
# one record type compiles once per dtype.


class LayerConfig(NamedTuple):
    """What the kernels read and never write: the net, its layers and how the work is cut."""

    widths: np.ndarray  # int64 (depth + 1,): widths[0] input units, widths[l] layer l's units
    draw_ab: np.ndarray  # float64 (depth, 2): each layer's draw parameters (they depend on its fans)
    batch: int
    n_lanes: int  # 1, 2, 4 or 8 row ranges of the batch (see the module docstring)
    w_slots: int  # layers of a segment that keep their weights; the others are drawn again
    seed: np.uint64
    stream: np.uint64
    wide: bool  # the net is float64
    kind: int  # the initializer's sampler (fastinit.initializers: CONSTANT, ORTHOGONAL or an rng.KIND_*)
    orthogonal: int  # ORTHOGONAL: the address of the draw (fastinit._kernels.orthogonal.address); else 0
    code: int  # activation code (fastinit.activations)
    param: float  # activation parameter
    bias_std: float  # 0: no bias
    residual: bool
    alpha: float  # residual branch scale
    batchnorm: bool  # batch norm at norm_at (by columns: the workers meet around it)
    layernorm: bool  # layer norm at norm_at (by rows: each lane its own)
    norm_at: int  # NORM_PREACT, NORM_BRANCH or NORM_OUTPUT; branch and output need residual
    rescale_forward: bool
    rescale_backward: bool
    bounded: bool  # the activation is bounded: count saturated phi'
    slope_from_output: bool  # phi' is read off the layer's output, not stored


class Workspace(NamedTuple):
    """Every array the kernels read or write: inputs, the ``stats`` output, stored layers, scratch.

    Matrices live in flat rows sized for the widest layer; :func:`_view` takes a layer's
    contiguous matrix from a row's start, as BLAS needs.
    """

    h0: np.ndarray  # (batch, widths[0]) input batch
    grad_top: np.ndarray  # (batch, widths[-1]) dL/dh at the top
    stats: np.ndarray  # float64 (depth, N_STATS), written by worker 0
    log_scales: np.ndarray  # float64 (n_lanes, depth + 1): each worker's log scale of each layer's input
    log_grad: np.ndarray  # float64 (n_lanes,): each worker's log scale of the gradient between backward segments
    h_scale: np.ndarray  # float64 (depth + 1,): per layer input (0: the input batch, l: layer l's output), the power
    # of two the GEMMs that read it multiply it by (reduce.unit_power_of_two: the input batch, or an unrescaled
    # forward's output, far below RMS 1): the weight gradient's always, z's in a layer without a norm; else 1
    seg_h: np.ndarray  # (seg_len, batch * widest): each stored layer's input
    seg_z: np.ndarray  # (seg_len with a norm, else 1, batch * widest): what the norm's backward needs --
    # z_l (preact), Norm(h_{l-1}) (branch) or h_{l-1} + alpha phi(z_l) (output); without a norm, one row for z
    seg_dphi: np.ndarray  # (1 if slope_from_output else seg_len, batch * widest): phi'
    seg_w: np.ndarray  # (min(seg_len, w_slots + 1), widest^2): weights; slots from w_slots on share the last row
    checkpoints: np.ndarray  # (segments, batch * widest): the input of each segment's first layer
    sync: np.ndarray  # int64 (2,): the workers' barrier (fastinit._sync.barrier)
    shared: np.ndarray  # float64 (N_SHARED,): scalars worker 0 hands to the others
    u: np.ndarray  # (batch * widest,): Norm(z) at preact, z at branch and output
    bias: np.ndarray  # (widest,)
    h_last: np.ndarray  # (batch * widest,): an output no later layer reads
    acc: np.ndarray  # float64 (N_BLOCKS, N_ACC, widest): per-block column accumulators
    acc_z: np.ndarray  # float64 (N_BLOCKS, 2, widest): z's, under batch norm
    acc_in: np.ndarray  # float64 (N_BLOCKS, 2, widest): the input gradient's
    acc_w: np.ndarray  # float64 (n_lanes, 2, widest): the weight gradient's, per part
    corr: np.ndarray  # float64 (N_BLOCKS,): per-block sums of row-pair cosines
    grad: np.ndarray  # (batch * widest,): dL/dh_out; swaps roles with grad_in layer by layer
    grad_in: np.ndarray  # (batch * widest,)
    grad_act: np.ndarray  # (batch * widest with a norm, else 0,): dL/dNorm(z) (preact), dL/dNorm(h_in) (branch),
    # dL/d(h_in + alpha phi(z)) (output)
    grad_z: np.ndarray  # (batch * widest,)
    wgrad: np.ndarray  # (widest^2,)
