"""The checkpointed walk through every layer: its forward and backward passes, and :func:`run`, which runs
them on the thread team."""

from __future__ import annotations

import numba
import numpy as np
from numba import types

from fastinit._jit import jit
from fastinit._sync import barrier
from fastinit._team import run_team
from fastinit._kernels.blocks import lane_rows, view
from fastinit._kernels.layer import backward_layer, forward_layer
from fastinit._kernels.layer import signatures as layer_signatures
from fastinit._kernels.records import N_STATS
from fastinit._kernels.reduce import known_sums, unit_power_of_two

# Pages are first touched in 2 MiB regions (transparent huge pages), one 4 KiB page at a time.
_REGION_BYTES = 2 * 2**20
_PAGE_BYTES = 4096


@jit(inner=True)
def prefault(buffer, worker, n_workers):
    """Touch this worker's share of ``buffer``'s pages (2 MiB regions ``worker, worker +
    n_workers, ...``) so that the kernel's page zeroing is split between the workers.

    Otherwise whichever worker first writes a fresh 2 MiB huge page zeroes it alone (the
    stored layers of a width-256, depth-500 net are ~250 MB of them) while the other
    waits at the next barrier.  Writes zeros into memory that is not yet read.
    """
    flat = buffer.reshape(-1)
    region = _REGION_BYTES // flat.itemsize
    page = _PAGE_BYTES // flat.itemsize
    for start in range(worker * region, flat.size, n_workers * region):
        for k in range(start, min(start + region, flat.size), page):
            flat[k] = 0.0


@jit(inner=True)
def _copy_lanes(source, target, worker, n_workers, n_lanes):
    """``target[rows] = source[rows]`` for this worker's lanes (matrices of one shape)."""
    cols = source.shape[1]
    for lane in range(worker, n_lanes, n_workers):
        start, stop = lane_rows(source.shape[0], lane, n_lanes)
        # A loop, not a slice assignment: numba's compiles an error message formatter
        # (string code) into every kernel above it.
        for i in range(start, stop):
            source_row, target_row = source[i], target[i]
            for j in range(cols):
                target_row[j] = source_row[j]


@jit
def forward_pass(worker, n_workers, cfg, ws, segment):
    """Worker ``worker``'s forward pass: every layer, with statistics (``segment < 0``), or segment
    ``segment`` again from its checkpoint for the backward pass (see :func:`run`).

    One call of the forward layer serves both, so its code is linked into this kernel once.
    """
    widths, batch, n_lanes, seg_h = cfg.widths, cfg.batch, cfg.n_lanes, ws.seg_h
    depth = widths.size - 1
    seg_len = seg_h.shape[0]
    log_scales = ws.log_scales[worker]  # log scale of each layer's input: written here, read by the later passes
    scratch = np.empty(N_STATS)
    again = segment >= 0
    if again:
        first = segment * seg_len + 1
        last = min(depth, first + seg_len - 1)
        _copy_lanes(view(ws.checkpoints[segment], batch, widths[first - 1]), view(seg_h[0], batch, widths[first - 1]),
                    worker, n_workers, n_lanes)
    else:
        first, last = 1, depth
        if n_workers > 1:
            for buffer in (ws.seg_h, ws.seg_z, ws.seg_dphi, ws.seg_w):
                prefault(buffer, worker, n_workers)
            barrier(ws.sync, n_workers)
        log_scales[0] = 0.0
        if worker == 0 and cfg.rescale_backward:
            # Layer 1's GEMMs lift a tiny input batch (whether or not the forward is rescaled: it rescales
            # layer outputs, not the batch), as forward_layer has an unrescaled forward's outputs lifted.
            _, sumsq, log_unit, _ = known_sums(ws.h0)  # NaN (then no lift) with an inf or NaN entry
            ws.h_scale[0] = unit_power_of_two(sumsq, log_unit, ws.h0.size)
        _copy_lanes(ws.h0, view(seg_h[0], batch, widths[0]), worker, n_workers, n_lanes)
    for layer in range(first, last + 1):
        # Each layer writes its output straight into the next layer's input slot; the first pass overwrites
        # the slots segment by segment (the last segment's survive) and checkpoints each segment's input.
        slot = (layer - 1) % seg_len
        h_in = view(seg_h[slot], batch, widths[layer - 1])
        if slot == 0 and not again:
            _copy_lanes(h_in, view(ws.checkpoints[(layer - 1) // seg_len], batch, widths[layer - 1]), worker,
                        n_workers, n_lanes)
        # Into the next slot (in the first pass the last slot's output is the next segment's input, slot 0); the
        # pass's last layer, and every layer when one is stored at a time, into h_last, which no later layer reads.
        into_slot = layer < last and seg_len > 1
        h_out = view(seg_h[(slot + 1) % seg_len] if into_slot else ws.h_last, batch, widths[layer])
        log_s_out = forward_layer(worker, n_workers, cfg, ws, layer, h_in, log_scales[layer - 1], h_out,
                                  ws.stats[layer - 1] if worker == 0 and not again else scratch)
        if not again:
            log_scales[layer] = log_s_out
            if layer < depth and not into_slot:
                _copy_lanes(h_out, view(seg_h[0], batch, widths[layer]), worker, n_workers, n_lanes)


@jit
def backward_pass(worker, n_workers, cfg, ws, segment):
    """Worker ``worker``'s backward pass through segment ``segment``, whose layers' inputs are stored
    (see :func:`run`); the gradient at the segment's top is in ``ws.grad`` or ``ws.grad_in``, its log
    scale in ``ws.log_grad[worker]``."""
    widths, batch, n_lanes, seg_h = cfg.widths, cfg.batch, cfg.n_lanes, ws.seg_h
    depth = widths.size - 1
    seg_len = seg_h.shape[0]
    first = segment * seg_len + 1
    last = min(depth, first + seg_len - 1)
    log_scales = ws.log_scales[worker]
    scratch = np.empty(N_STATS)
    if last == depth:
        _copy_lanes(ws.grad_top, view(ws.grad, batch, widths[depth]), worker, n_workers, n_lanes)
        ws.log_grad[worker] = 0.0
    log_g = ws.log_grad[worker]
    for layer in range(last, first - 1, -1):
        # Layer by layer the output and input gradients swap buffers, from ws.grad at the top.
        grad, grad_in = (ws.grad, ws.grad_in) if (depth - layer) % 2 == 0 else (ws.grad_in, ws.grad)
        slot = layer - first
        h_out = view(seg_h[slot + 1] if layer < last else ws.h_last, batch, widths[layer])
        log_g = backward_layer(worker, n_workers, cfg, ws, layer, view(seg_h[slot], batch, widths[layer - 1]),
                               log_scales[layer - 1], h_out, view(grad, batch, widths[layer]), log_g,
                               view(grad_in, batch, widths[layer - 1]),
                               ws.stats[layer - 1] if worker == 0 else scratch)
    ws.log_grad[worker] = log_g


def run(n_workers, cfg, ws):
    """Forward and backward through ``len(cfg.widths) - 1`` layers; fills ``ws.stats`` (layers x N_STATS).

    Keeps, for ``seg_len`` layers at a time, each layer's input and derivative (and its
    pre-activation, which only batch norm's backward needs), with a checkpoint of the
    input at each segment start; earlier segments are recomputed -- weights re-drawn
    from their streams -- during the backward pass, so memory is
    O(seg_len * width^2 + depth / seg_len * batch * width), never O(depth * width^2).
    Weights are kept for the first ``cfg.w_slots`` layers of a segment and drawn again in
    the backward pass for the others (the cheaper way to fit a budget than recomputing:
    a draw, no GEMM).  The buffers (:class:`Workspace`) come preallocated from
    ``fastinit.propagate.Plan.workspace``.

    ``n_workers`` (at most ``cfg.n_lanes``) concurrent workers on a thread team
    (:mod:`fastinit._team`), with the same result for any ``n_workers``: the team runs
    :func:`forward_pass` once, then, from the last segment down, :func:`forward_pass` again for each
    segment but the last and :func:`backward_pass`.  The forward and backward layers' code is
    then in two kernels that do not call each other, which a cold compile builds at once in
    two processes (:mod:`fastinit._compile_ahead`); between the team's calls the workers'
    log scales wait in ``ws.log_scales`` and ``ws.log_grad``.
    """
    depth, seg_len = len(cfg.widths) - 1, ws.seg_h.shape[0]
    n_segments = (depth + seg_len - 1) // seg_len
    run_team(forward_pass, n_workers, cfg, ws, -1)
    for segment in range(n_segments - 1, -1, -1):
        if segment != n_segments - 1:
            run_team(forward_pass, n_workers, cfg, ws, segment)
        run_team(backward_pass, n_workers, cfg, ws, segment)


def signatures(cfg, ws):
    """The walk's two kernels, ``_copy_lanes``, which both call, and the layers' kernels under them
    (:func:`fastinit._kernels.layer.signatures`), with their numba argument types (for ``dispatcher.compile``).

    Parameters
    ----------
    cfg : fastinit._kernels.records.LayerConfig
    ws : fastinit._kernels.records.Workspace

    Returns
    -------
    dict
        ``forward_pass``, ``backward_pass``, ``_copy_lanes`` and :func:`fastinit._kernels.layer.signatures`'s
        entries: name -> ``(dispatcher, tuple of argument types)``.
    """
    integer = types.int64
    matrix = types.Array(numba.typeof(ws.h0).dtype, 2, "C")
    team = (integer, integer, numba.typeof(cfg), numba.typeof(ws), integer)  # worker, n_workers, cfg, ws, segment
    return {**layer_signatures(cfg, ws), "forward_pass": (forward_pass, team), "backward_pass": (backward_pass, team),
            "_copy_lanes": (_copy_lanes, (matrix, matrix, integer, integer, integer))}
