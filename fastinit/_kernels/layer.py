"""One layer forward and one layer backward, for every worker of the team.

Each function is called by every worker; they meet at the spin barrier
(:func:`fastinit._sync.barrier`) between phases, worker 0 alone reduces statistics and
hands scalars to the others through ``ws.shared``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.core import types

from fastinit import rng
from fastinit._jit import jit
from fastinit._sync import barrier
from fastinit._kernels.blocks import (ACC_ACT_SUMSQ, ACC_ALIVE, ACC_SATURATED, ACC_SUMSQ, N_BLOCKS, activate_block,
                                      backprop_block, column_sums_block, column_sums_rows, lane_blocks, lane_rows,
                                      output_stats_block, part, scale_rows, view)
from fastinit._kernels.draw import draw_weights_share, weight_substream
from fastinit._kernels.norm import (BATCHNORM_EPS, batchnorm_backward_columns, batchnorm_forward_columns,
                                   layernorm_backward_rows, layernorm_forward_rows)
from fastinit._kernels.records import (ACT_LOG_SCALE, ACT_NONFINITE, ACT_SUMSQ, CORR_SUM, DEAD_UNITS, FWD_LOG_SCALE,
                                       FWD_NONFINITE, FWD_SUM, FWD_SUMSQ, GRAD_LOG_SCALE, GRAD_NONFINITE, GRAD_SUM,
                                       GRAD_SUMSQ, NORM_BRANCH, NORM_OUTPUT, NORM_PREACT, SATURATED, WGRAD_LOG_SCALE, WGRAD_NONFINITE, WGRAD_SUM,
                                       WGRAD_SUMSQ)
from fastinit._kernels.products import gemm_columns_t
from fastinit._kernels.reduce import (checked_sums, finite_sums, known_sums, rms_factor, squares_can_vanish, total,
                                     unit_power_of_two, zero_columns)

_FLOAT64_TINY = np.finfo(np.float64).tiny  # the smallest normal float64

# Scalars worker 0 hands to the others (``shared[...]``).
SHARED_FACTOR, SHARED_LOG_SCALE = 0, 1
N_SHARED = 2


@jit(inner=True)
def _share_and_rescale(worker, n_workers, cfg, ws, x, factor, log_scale):
    """Hand worker 0's ``factor`` and ``log_scale`` to every worker, then let each multiply
    its own lanes of ``x`` by ``factor``; returns the log scale."""
    if worker == 0:
        ws.shared[SHARED_FACTOR] = factor
        ws.shared[SHARED_LOG_SCALE] = log_scale
    barrier(ws.sync, n_workers)
    factor, log_scale = ws.shared[SHARED_FACTOR], ws.shared[SHARED_LOG_SCALE]
    if factor != 1.0:
        for lane in range(worker, cfg.n_lanes, n_workers):
            start, stop = lane_rows(x.shape[0], lane, cfg.n_lanes)
            scale_rows(x, start, stop, factor)
    return log_scale


@jit(inner=True)
def _slot(ws, layer):
    """Layer ``layer``'s slot in the stored segment."""
    return (layer - 1) % ws.seg_h.shape[0]


@jit(inline=True)
def _layer_weights(worker, n_workers, cfg, ws, layer, draw):
    """Layer ``layer``'s weight matrix in its slot of ``ws.seg_w``; with ``draw``, drawn
    there first (every worker its share, then a barrier)."""
    n_in, n_out = cfg.widths[layer - 1], cfg.widths[layer]
    w = view(ws.seg_w[min(_slot(ws, layer), cfg.w_slots)], n_out, n_in)
    if draw:
        draw_weights_share(worker, n_workers, w, cfg.kind, cfg.draw_ab[layer - 1, 0], cfg.draw_ab[layer - 1, 1],
                           cfg.wide, cfg.seed, cfg.stream, weight_substream(layer), cfg.orthogonal)
    return w


@jit(inner=True)
def _norm_slot(cfg, ws, layer, cols):
    """Layer ``layer``'s stored matrix for its norm's backward (see ``Workspace.seg_z``); without a norm, the
    one shared row that holds z."""
    normed = cfg.batchnorm or cfg.layernorm
    return view(ws.seg_z[_slot(ws, layer) if normed else 0], cfg.batch, cols)


@jit(inner=True)
def _add_skip_rows(grad_in, skip, factor, start, stop):
    """Rows ``[start, stop)``: ``grad_in = grad_in * factor + skip`` (the residual path's gradient), in float64
    and rounded once."""
    cols = grad_in.shape[1]
    for i in range(start, stop):
        in_row, skip_row = grad_in[i], skip[i]
        for j in range(cols):
            in_row[j] = in_row[j] * factor + skip_row[j]


@jit(inner=True)
def _scaled_rows(source, target, factor, start, stop):
    """Rows ``[start, stop)``: ``target = factor * source``, in float64 and rounded once (exact for a power of two)."""
    cols = source.shape[1]
    for i in range(start, stop):
        source_row, target_row = source[i], target[i]
        for j in range(cols):
            target_row[j] = np.float64(source_row[j]) * factor


@jit(inline=True)
def _batchnorm_by_parts(worker, n_workers, n_lanes, x, out, eps, sync):
    """Batch-normalise ``x`` into ``out``, every worker its parts of the columns, then meet."""
    for index in range(worker, n_lanes, n_workers):
        first, stop = part(x.shape[1], index, n_lanes)
        batchnorm_forward_columns(x, out, eps, first, stop)
    barrier(sync, n_workers)


@jit(inner=True)
def forward_layer(worker, n_workers, cfg, ws, layer, h_in, log_s_in, h_out, stats_row):
    """Layer ``layer`` forward from scaled ``h_in`` (true = exp(log_s_in) h_in) into ``h_out``;
    returns the log scale of ``h_out``.

    Called by every worker.  Draws the layer's weights and bias, fills its z, its norm's
    stored matrix (``_norm_slot``) and phi' (its slot of ``ws.seg_dphi``, or one scratch
    row when the backward pass reads phi' off ``h_out``), ``h_out``, and worker 0 the
    forward columns of ``stats_row``.  Each worker returns having rescaled its own lanes
    of ``h_out``, so a lane's next use of its rows needs no barrier.

    Where the norm sits (``cfg.norm_at``): preact ``h_out = phi(Norm(z))`` (+ ``h_in``
    with a residual); branch ``z = Norm(h_in) W^T + b``, ``h_out = h_in + alpha phi(z)``;
    output ``h_out = Norm(h_in + alpha phi(z))``.  A norm's output is scale-free: its eps is
    scaled to its input's units, and a branch computed from it is added in ``h_in``'s.
    """
    n_lanes, bias_std, batchnorm, layernorm, residual, bounded = (cfg.n_lanes, cfg.bias_std, cfg.batchnorm,
                                                                  cfg.layernorm, cfg.residual, cfg.bounded)
    acc, acc_z, corr, sync = ws.acc, ws.acc_z, ws.corr, ws.sync
    normed = batchnorm or layernorm
    at_preact = normed and cfg.norm_at == NORM_PREACT
    at_branch = normed and cfg.norm_at == NORM_BRANCH
    at_output = normed and cfg.norm_at == NORM_OUTPUT
    rows, cols = cfg.batch, cfg.widths[layer]
    w = _layer_weights(worker, n_workers, cfg, ws, layer, np.bool_(True))
    stored = _norm_slot(cfg, ws, layer, cols)  # z at preact (or without a norm), Norm(h_in) at branch, the sum at output
    z = stored if at_preact or not normed else view(ws.u, rows, cols)
    u = view(ws.u, rows, cols)  # Norm(z), at preact
    dphi = view(ws.seg_dphi[0 if cfg.slope_from_output else _slot(ws, layer)], rows, cols)
    bias = ws.bias[:cols]
    # z is in h_in's units, but for the branch's, computed from Norm(h_in): true units.
    log_s_z = 0.0 if at_branch else log_s_in
    if bias_std > 0.0 and worker == 0:
        rng.fill_serial(bias, cfg.wide, np.int64(rng.KIND_NORMAL), bias_std * math.exp(-log_s_z), 0.0, cfg.seed,
                        cfg.stream, weight_substream(layer) + 1)
    barrier(sync, n_workers)

    branch = cfg.alpha if residual else 1.0
    if residual and (at_preact or at_branch):
        branch *= math.exp(-log_s_in)  # phi of a norm's (scale-free) output is added in h_in's units
    eps = BATCHNORM_EPS * math.exp(-2.0 * log_s_in)  # every norm's input is in h_in's units
    gemm_in = h_in
    if at_branch:
        gemm_in = stored
        if batchnorm:
            _batchnorm_by_parts(worker, n_workers, n_lanes, h_in, stored, eps, sync)
    r = stored  # the residual sum, at output
    # As for the backward's weight gradient: an input the forward stored far below RMS 1 enters the GEMM
    # times a power of two (its products would be subnormal: rounded to float's fixed grid and ~100x
    # slower), and z is scaled back, rounded once.  Not in a layer with a norm, where ws.u holds Norm(z) or
    # z itself; there only the input batch can be tiny (every later input is a norm's output or built on one).
    h_scale = 1.0 if normed else ws.h_scale[layer - 1]
    if h_scale != 1.0:
        gemm_in = view(ws.u, rows, cfg.widths[layer - 1])  # not otherwise used by a layer without a norm
    for lane in range(worker, n_lanes, n_workers):
        start, stop = lane_rows(rows, lane, n_lanes)
        if at_branch and layernorm:
            layernorm_forward_rows(h_in, stored, eps, start, stop)
        if h_scale != 1.0:
            _scaled_rows(h_in, gemm_in, h_scale, start, stop)
        if stop > start:
            np.dot(gemm_in[start:stop], w.T, z[start:stop])
        if h_scale != 1.0:
            scale_rows(z, start, stop, 1.0 / h_scale)
        if bias_std > 0.0:
            for i in range(start, stop):  # a loop: a slice += compiles an error formatter (see _copy_lanes)
                z_row = z[i]
                for j in range(cols):
                    z_row[j] += bias[j]
        first, last = lane_blocks(lane, n_lanes)
        if not at_preact:
            for block in range(first, last):
                activate_block(block, z, h_in, r if at_output else h_out, dphi, cfg.code, cfg.param, residual, branch,
                               bounded, acc, corr)
        elif layernorm:
            layernorm_forward_rows(z, u, eps, start, stop)
            for block in range(first, last):
                activate_block(block, u, h_in, h_out, dphi, cfg.code, cfg.param, residual, branch, bounded, acc, corr)
                column_sums_block(block, z, acc_z)
        if at_output and layernorm:
            layernorm_forward_rows(r, h_out, eps, start, stop)
            for block in range(first, last):
                output_stats_block(block, h_out, acc, corr)
    barrier(sync, n_workers)
    if at_preact and batchnorm:
        # BN output is scale-free: with eps scaled to these units it is exact.
        _batchnorm_by_parts(worker, n_workers, n_lanes, z, u, eps, sync)
        for lane in range(worker, n_lanes, n_workers):
            first, last = lane_blocks(lane, n_lanes)
            for block in range(first, last):
                activate_block(block, u, h_in, h_out, dphi, cfg.code, cfg.param, residual, branch, bounded, acc, corr)
                column_sums_block(block, z, acc_z)
        barrier(sync, n_workers)
    if at_output and batchnorm:
        _batchnorm_by_parts(worker, n_workers, n_lanes, r, h_out, eps, sync)
        for lane in range(worker, n_lanes, n_workers):
            first, last = lane_blocks(lane, n_lanes)
            for block in range(first, last):
                output_stats_block(block, h_out, acc, corr)
        barrier(sync, n_workers)

    factor, log_s_out = 1.0, 0.0  # worker 0's are shared
    if worker == 0:
        # A norm's output restarts at scale 1 (preact without a residual, and output); a
        # residual stream stays in h_in's units.
        log_s_out = 0.0 if (at_preact and not residual) or at_output else log_s_in
        fwd_sum, fwd_sumsq, fwd_unit, fwd_bad = checked_sums(z, acc_z if at_preact else acc)
        act_sumsq = total(acc, np.int64(ACC_ACT_SUMSQ), cols)
        stats_row[SATURATED] = total(acc, np.int64(ACC_SATURATED), cols) if bounded else 0.0
        stats_row[DEAD_UNITS] = zero_columns(acc, np.int64(ACC_ALIVE), cols)
        cosines = 0.0
        for block in range(N_BLOCKS):
            cosines += corr[block]
        stats_row[CORR_SUM] = cosines / (rows // 2)
        stats_row[FWD_SUM] = fwd_sum
        stats_row[FWD_SUMSQ] = fwd_sumsq
        stats_row[FWD_LOG_SCALE] = log_s_z + fwd_unit
        stats_row[FWD_NONFINITE] = fwd_bad
        stats_row[ACT_SUMSQ] = act_sumsq
        stats_row[ACT_LOG_SCALE] = log_s_out
        stats_row[ACT_NONFINITE] = 0
        act_unit = 0.0  # stats_row[ACT_SUMSQ] is in units of exp(act_unit)
        if not math.isfinite(act_sumsq) or (act_sumsq == 0.0 and squares_can_vanish(h_out)):  # as in checked_sums
            _, act_sq, act_unit, act_bad = known_sums(h_out)
            stats_row[ACT_SUMSQ] = act_sq  # NaN with a non-finite entry
            stats_row[ACT_LOG_SCALE] = log_s_out + act_unit
            stats_row[ACT_NONFINITE] = act_bad
            if act_bad > 0 or act_sq != 0.0:
                # The cosines' float64 sums of the same squares left float64's range too
                # (or met inf/NaN); an exact zero keeps its cosines (NaN: 0 / 0).
                stats_row[CORR_SUM] = math.nan
        if cfg.rescale_forward:
            factor, log_rms = rms_factor(h_out, act_sumsq)
            log_s_out += log_rms
        elif cfg.rescale_backward:
            # h_out is stored as the net has it; the backward's weight gradient takes it scaled up if tiny.
            ws.h_scale[layer] = unit_power_of_two(stats_row[ACT_SUMSQ], act_unit, h_out.size)
    return _share_and_rescale(worker, n_workers, cfg, ws, h_out, factor, log_s_out)


@jit(inner=True)
def backward_layer(worker, n_workers, cfg, ws, layer, h_in, log_s_in, h_out, grad_out, log_g, grad_in, stats_row):
    """Layer ``layer`` backward; fills ``grad_in`` (scaled; not for layer 1) and returns its log scale.

    ``grad_in`` is rescaled to RMS 1 when ``cfg.rescale_backward``, else left raw.

    Called by every worker.  ``grad_out`` is dL/dh_out / exp(log_g); ``h_in`` and
    ``h_out`` are the layer's stored input and output (phi' is read off ``h_out`` when
    ``cfg.slope_from_output``).  The layer's weights are drawn again first if its slot
    keeps none.  Worker 0 writes the gradient statistics to ``stats_row``.  Each worker
    returns having rescaled its own lanes of ``grad_in``.
    """
    n_lanes, residual, batchnorm, layernorm = cfg.n_lanes, cfg.residual, cfg.batchnorm, cfg.layernorm
    code, param, from_output = cfg.code, cfg.param, cfg.slope_from_output
    acc, acc_in, acc_w, sync = ws.acc, ws.acc_in, ws.acc_w, ws.sync
    normed = batchnorm or layernorm
    at_preact = normed and cfg.norm_at == NORM_PREACT
    at_branch = normed and cfg.norm_at == NORM_BRANCH
    at_output = normed and cfg.norm_at == NORM_OUTPUT
    rows, n_in, n_out = cfg.batch, cfg.widths[layer - 1], cfg.widths[layer]
    redraw = _slot(ws, layer) >= cfg.w_slots
    w = _layer_weights(worker, n_workers, cfg, ws, layer, redraw)
    if redraw or (at_output and batchnorm):  # batch norm's columns need every lane's rows of grad_out
        barrier(sync, n_workers)
    stored = _norm_slot(cfg, ws, layer, n_out)
    dphi = h_out if from_output else view(ws.seg_dphi[_slot(ws, layer)], rows, n_out)
    grad_z = view(ws.grad_z, rows, n_out)
    grad_act = view(ws.grad_act, rows, n_out) if normed else grad_z
    wgrad = view(ws.wgrad, n_out, n_in)
    with_grad_in = layer > 1
    branch = cfg.alpha if residual else 1.0
    eps = BATCHNORM_EPS * math.exp(-2.0 * log_s_in)  # as forward: the norm's input is in h_in's units
    log_gz = log_g
    if at_preact and batchnorm:
        # z is stored in h_in's units: dL/dz_true = BN'(z_scaled) dL/du / exp(log_s_in).
        for lane in range(worker, n_lanes, n_workers):
            first, last = lane_blocks(lane, n_lanes)
            for block in range(first, last):
                backprop_block(block, grad_out, dphi, branch, grad_act, acc, np.bool_(False), code, param, from_output)
        barrier(sync, n_workers)
        for index in range(worker, n_lanes, n_workers):
            first, stop = part(n_out, index, n_lanes)
            batchnorm_backward_columns(stored, grad_act, grad_z, eps, first, stop)
        barrier(sync, n_workers)
    if at_output and batchnorm:
        # The sum r is stored in h_in's units: dL/dr_true = BN'(r_scaled) dL/dh_out / exp(log_s_in).
        for index in range(worker, n_lanes, n_workers):
            first, stop = part(n_out, index, n_lanes)
            batchnorm_backward_columns(stored, grad_out, grad_act, eps, first, stop)
        barrier(sync, n_workers)
    if at_preact or at_output:
        log_gz = log_g - log_s_in
    # grad_in's log scale: a residual stream's gradient keeps dL/dh_out's, but at output it
    # continues from the sum's; plain layers continue from dL/dz's.
    log_g_in = log_g if residual and not at_output else log_gz
    # The path through W: dL/dz W in dL/dz's units, or at branch the norm's backward of it, in h_in's.
    skip_factor = math.exp(log_gz - (log_s_in if at_branch else 0.0) - log_g_in)
    skip = grad_act if at_output else grad_out  # dL/dh_out, or at output dL/dr
    gemm_out = grad_act if at_branch else grad_in  # at branch dL/dNorm(h_in), before the norm's backward
    # The weight gradient's GEMM input: Norm(h_in) at branch, in true units; else h_in, times a power of
    # two if the forward stored it far below RMS 1 (its products would be subnormal: inexact and ~100x
    # slower), into ws.u, which the backward pass does not otherwise use.
    h_scale = 1.0 if at_branch else ws.h_scale[layer - 1]
    wgrad_in = stored if at_branch else (h_in if h_scale == 1.0 else view(ws.u, rows, n_in))
    for lane in range(worker, n_lanes, n_workers):
        first, last = lane_blocks(lane, n_lanes)
        start, stop = lane_rows(rows, lane, n_lanes)
        if h_scale != 1.0:
            _scaled_rows(h_in, wgrad_in, h_scale, start, stop)
        if at_preact and layernorm:
            for block in range(first, last):
                backprop_block(block, grad_out, dphi, branch, grad_act, acc, np.bool_(False), code, param, from_output)
            layernorm_backward_rows(stored, grad_act, grad_z, eps, start, stop)
        if at_output and layernorm:
            layernorm_backward_rows(stored, grad_out, grad_act, eps, start, stop)
        for block in range(first, last):
            if at_preact:
                column_sums_block(block, grad_z, acc)
            else:
                backprop_block(block, skip, dphi, branch, grad_z, acc, np.bool_(True), code, param, from_output)
        if with_grad_in:
            if stop > start:
                np.dot(grad_z[start:stop], w, gemm_out[start:stop])
            if at_branch and layernorm:
                layernorm_backward_rows(h_in, grad_act, grad_in, eps, start, stop)
            if not (at_branch and batchnorm):  # that one needs every lane's rows first (below)
                if residual:
                    _add_skip_rows(grad_in, skip, skip_factor, start, stop)
                for block in range(first, last):
                    column_sums_block(block, grad_in, acc_in)
    barrier(sync, n_workers)
    if at_branch and batchnorm and with_grad_in:
        for index in range(worker, n_lanes, n_workers):
            first, stop = part(n_in, index, n_lanes)
            batchnorm_backward_columns(h_in, grad_act, grad_in, eps, first, stop)
        barrier(sync, n_workers)
        for lane in range(worker, n_lanes, n_workers):
            first, last = lane_blocks(lane, n_lanes)
            start, stop = lane_rows(rows, lane, n_lanes)
            _add_skip_rows(grad_in, skip, skip_factor, start, stop)
            for block in range(first, last):
                column_sums_block(block, grad_in, acc_in)
        barrier(sync, n_workers)
    for index in range(worker, n_lanes, n_workers):
        first, stop = part(n_out, index, n_lanes)
        gemm_columns_t(wgrad_in, grad_z, wgrad, first, stop)  # dL/dW's rows first..stop-1
        column_sums_rows(wgrad, first, stop, acc_w[index])
    barrier(sync, n_workers)

    factor = 1.0  # worker 0's are shared
    if worker == 0:
        s, s2, unit, bad = checked_sums(grad_z, acc)
        stats_row[GRAD_SUM] = s
        stats_row[GRAD_SUMSQ] = s2
        stats_row[GRAD_LOG_SCALE] = log_gz + unit
        stats_row[GRAD_NONFINITE] = bad
        s, s2, unit, bad = checked_sums(wgrad, acc_w)
        if h_scale != 1.0:
            inverse = 1.0 / h_scale
            if s2 * (inverse * inverse) >= _FLOAT64_TINY:
                # Back to h_in's units, exactly (a power of two): the unscaled product's bits wherever its
                # products were normal numbers.
                s, s2 = s * inverse, s2 * (inverse * inverse)
            else:  # there the squares' sum is below float64's normal range: keep it in a smaller unit
                unit -= math.log(h_scale)
        stats_row[WGRAD_SUM] = s
        stats_row[WGRAD_SUMSQ] = s2
        stats_row[WGRAD_LOG_SCALE] = log_gz + (0.0 if at_branch else log_s_in) + unit
        stats_row[WGRAD_NONFINITE] = bad
        if with_grad_in and cfg.rescale_backward:  # numerics="raw" leaves the gradient as the hardware has it
            factor, log_rms = rms_factor(grad_in, total(acc_in, np.int64(ACC_SUMSQ), n_in))
            log_g_in += log_rms
    return _share_and_rescale(worker, n_workers, cfg, ws, grad_in, factor, log_g_in)


def signatures(cfg, ws):
    """The layers and the kernels under them, with their numba argument types as the walk's passes call them (for ``dispatcher.compile``).

    Parameters
    ----------
    cfg : fastinit._kernels.records.LayerConfig
    ws : fastinit._kernels.records.Workspace

    Returns
    -------
    dict
        ``forward_layer``, ``backward_layer`` and kernels under them (the weight draw,
        ``activate_block``, the reductions both layers call): name -> ``(dispatcher,
        tuple of argument types)``.
    """
    matrix = types.Array(numba.typeof(ws.h0).dtype, 2, "C")  # a layer's view of a flat row
    row = types.Array(types.float64, 1, "C")
    integer, real, flag = types.int64, types.float64, types.boolean
    blocks_acc = numba.typeof(ws.acc)  # float64 (N_BLOCKS, quantities, widest)
    cfg_t, ws_t = numba.typeof(cfg), numba.typeof(ws)
    boundary = (integer, integer, cfg_t, ws_t, integer)  # worker, n_workers, cfg, ws, layer
    return {
        # h_in, log_s_in, h_out, stats_row
        "forward_layer": (forward_layer, (*boundary, matrix, real, matrix, row)),
        # h_in, log_s_in, h_out, grad_out, log_g, grad_in, stats_row
        "backward_layer": (backward_layer, (*boundary, matrix, real, matrix, matrix, real, matrix, row)),
        # worker, n_workers, w, kind, a, b, wide, seed, stream, substream, orthogonal
        "draw_weights_share": (draw_weights_share, (integer, integer, matrix, integer, real, real, flag, types.uint64,
                                                    types.uint64, integer, integer)),
        # block, z, h_in, h_out, dphi, code, param, residual, branch_scale, bounded, acc, corr
        "activate_block": (activate_block, (integer, matrix, matrix, matrix, matrix, integer, real, flag, real, flag,
                                            blocks_acc, numba.typeof(ws.corr))),
        # What both layers call: compiled on one side before either layer (see fastinit._compile_ahead).
        "_share_and_rescale": (_share_and_rescale, (integer, integer, cfg_t, ws_t, matrix, real, real)),
        "checked_sums": (checked_sums, (matrix, blocks_acc)),
        "finite_sums": (finite_sums, (matrix,)),
        "known_sums": (known_sums, (matrix,)),
        "rms_factor": (rms_factor, (matrix, real)),
        "_scaled_rows": (_scaled_rows, (matrix, matrix, real, integer, integer)),
        "column_sums_block": (column_sums_block, (integer, matrix, blocks_acc)),
        "column_sums_rows": (column_sums_rows, (matrix, integer, integer, types.Array(types.float64, 2, "C"))),
        "_norm_slot": (_norm_slot, (cfg_t, ws_t, integer, integer)),
        "weight_substream": (weight_substream, (integer,)),
        "part": (part, (integer, integer, integer)),
    }
