"""Jitted kernels of :func:`fastinit.train.run`: forward, backward, the optimisers, the epoch loop.

Every elementwise pass is a shared layer kernel (:mod:`fastinit._kernels`): the
activation and its derivative (:func:`~fastinit._kernels.blocks.activate_rows`, one
apply, one NaN rule, one residual rule), the backprop through phi'
(:func:`~fastinit._kernels.blocks.backprop_block`), batch and layer norm
(:mod:`fastinit._kernels.norm`: layer norm is its row standardizer, batch norm the same
on the transposes), column sums and sums of squares
(:mod:`fastinit._kernels.blocks`, :mod:`fastinit._kernels.reduce`) and the products
(:mod:`fastinit._kernels.products`).  What is train's own is here: the loss, the SGD
update (SGD, Adam, AdamW), the measures and the epoch loop.

Boundary.  Five records cross into jitted code, all built by
:class:`fastinit.train.run.Plan`: :class:`Net` (the layer layout and what the layer
kernels read), :class:`Schedule` (the loop), :class:`Optimizer` (the update rule, its
hyper-parameters, step count and moment buffers), :class:`Data` (the training set, and
a second one for the held-out set) and :class:`Buffers` (every array a step writes,
preallocated), plus the parameters ``W``, ``B`` and the two output records.  Every field keeps one type, so each
kernel compiles once per dtype.

Layout.  A net of ``L`` linear layers (``depth`` hidden + the readout) keeps all its
weights in one flat array ``W`` (layer ``k`` -- 0-based -- is the C-contiguous
``(widths[k+1], widths[k])`` block at ``w_off[k]``, PyTorch layout) and all biases in
``B`` (at ``b_off[k]``); gradients and moment buffers share the layout, so global-norm
clipping and the optimiser's update are single passes over flat arrays.

Compile time.  numba links every callee into its caller and re-optimises the whole
module there, so each level of calls costs again all the code below it: the glue
between the epoch loop and the layer passes (:func:`forward_backward`,
:func:`evaluate`, :func:`record_state`) is inlined into :func:`train_epoch`, which calls
:func:`forward` and :func:`backward` directly; each epoch's example order is drawn in
Python (:func:`permutation`), so the samplers' code is not linked in at all.

Per step: 3 GEMMs per layer (``z = h W^T``, ``dW = dz^T h``, ``dh = dz W``); everything
else is elementwise passes over preallocated buffers.  Losses and norms accumulate in
float64 whatever the dtype.  No slice assignments and no literal constant arguments:
each compiles code of its own into every caller (see :mod:`fastinit._kernels`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
from numba.core import types

from fastinit import rng
from fastinit._jit import jit
from fastinit._kernels.blocks import (ACC_SUM, N_BLOCKS, activate_rows, add_bias_rows, backprop_block,
                                      column_sums_rows, view)
from fastinit._kernels.norm import (BATCHNORM_EPS, batchnorm_backward, batchnorm_forward, layernorm_backward,
                                   layernorm_forward)
from fastinit._kernels.records import NORM_BRANCH, NORM_OUTPUT, NORM_PREACT
from fastinit._kernels.products import gemm
from fastinit._kernels.reduce import sum_of_squares

MSE, CROSS_ENTROPY = 0, 1
# Optimizer.kind: torch.optim.SGD, torch.optim.Adam (L2 weight decay added to the gradient),
# torch.optim.AdamW (decoupled weight decay).
SGD, ADAM, ADAMW = 0, 1, 2
# torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing.
CLIP_EPS = 1e-6

# Columns of the per-epoch record ``epoch_rec[epoch, column]``.
(LOSS, ACCURACY, R2, BATCH_LOSS, CLIPPED_STEPS, GLOBAL_GRAD_NORM, TEST_LOSS, TEST_ACCURACY, TEST_R2,
 N_EPOCH_COLS) = range(10)
# Columns of the per-layer record ``layer_rec[epoch, layer, column]``.
GRAD_NORM, GRAD_NORM_MEAN, BIAS_GRAD_NORM, WEIGHT_NORM, BIAS_NORM, UPDATE_NORM, DISTINCT, N_LAYER_COLS = range(8)


# ------------------------------------------------------------------ records
#
# numba types a NamedTuple by its fields' types: counts and codes int64, flags bool,
# parameters float64, seeds uint64, so one record type compiles once per dtype.


class Net(NamedTuple):
    """The net's layout and what its layer kernels read; never written."""

    widths: np.ndarray  # int64 (L + 1,): widths[0] inputs, widths[k + 1] layer k's units (0-based k)
    w_off: np.ndarray  # int64 (L + 1,): layer k's weights are W[w_off[k]:w_off[k + 1]]
    b_off: np.ndarray  # int64 (L + 1,): its bias B[b_off[k]:b_off[k + 1]]
    alpha: np.ndarray  # float64 (L,): residual branch scale of layer k, 0 for none
    code: int  # activation code (fastinit.activations)
    param: float  # activation parameter
    batchnorm: bool  # the norm is batch norm (at norm_at) ...
    layernorm: bool  # ... or layer norm; neither: no norm
    norm_at: int  # NORM_PREACT (every hidden layer), NORM_BRANCH or NORM_OUTPUT (the residual layers)
    loss: int  # MSE or CROSS_ENTROPY
    loops: bool  # products by position-uniform loops instead of BLAS


class Schedule(NamedTuple):
    """The loop."""

    batch: int
    epochs: int
    seed: np.uint64  # root seed of the mini-batch order
    order_stream: np.uint64
    rtol: float  # of distinct_rows


class Optimizer(NamedTuple):
    """The update rule (torch.optim semantics), its hyper-parameters and its state.

    ``m_*`` is SGD's momentum buffer or Adam's first moment, ``v_*`` Adam's second moment
    (empty for SGD); all start at zero, as torch's lazily created state does.
    """

    kind: int  # SGD, ADAM or ADAMW
    lr: float
    momentum: float  # SGD only
    beta1: float  # Adam / AdamW only
    beta2: float
    eps: float
    weight_decay: float  # 0: none
    max_norm: float  # global-norm clipping before the update; 0: none
    steps: np.ndarray  # int64 (1,): updates taken (Adam's bias correction)
    m_W: np.ndarray  # like W
    m_B: np.ndarray  # like B
    v_W: np.ndarray  # like W for Adam, else (0,)
    v_B: np.ndarray  # like B for Adam, else (0,)


class Data(NamedTuple):
    """The training set; ``labels`` (classification) or ``targets`` (regression) is a placeholder."""

    x: np.ndarray  # (n, widths[0])
    labels: np.ndarray  # int64 (n,)
    targets: np.ndarray  # (n, outputs or 1)
    order: np.ndarray  # int64 (n,): 0 .. n - 1, the data-set order of the evaluation
    sst: float  # total sum of squares of the targets (the R^2 denominator)


class Buffers(NamedTuple):
    """Every array a step writes, for batches of up to ``batch`` rows (``size = batch * max(widths)``)."""

    z: np.ndarray  # (L, size): pre-activations, bias added; z[L - 1] is the logits
    u: np.ndarray  # (L with a norm, else 1, size): what the norm's backward needs besides z and h (see _sites)
    d: np.ndarray  # (L, size): phi'
    h: np.ndarray  # (L, size): h[k] is layer k's input, h[0] the batch
    g_top: np.ndarray  # (size,): dL/d logits
    g_h: np.ndarray  # (size,): dL/dh of the layer's output; swaps roles with g_in layer by layer
    g_in: np.ndarray  # (size,)
    g_a: np.ndarray  # (size,): dL/d(the activation's input)
    g_z: np.ndarray  # (size with a norm, else 0,): the gradient through the norm (see backward)
    acc: np.ndarray  # float64 (N_BLOCKS, 2, max(widths)): column sums
    labels: np.ndarray  # int64 (batch,): the batch's labels
    targets: np.ndarray  # (batch, outputs or 1): the batch's targets
    gW: np.ndarray  # like W: gradients
    gB: np.ndarray  # like B
    w_start: np.ndarray  # like W: the weights at the epoch's start
    norm_sum: np.ndarray  # float64 (L,): per-layer sums of gradient norms over an epoch
    pending: np.ndarray  # float64 (1,): the summed loss of the gradient in gW, gB


# ------------------------------------------------------------------ loss


@jit
def loss_and_grad(out, labels, targets, loss_kind, grad, want_grad):
    """Summed loss over the rows of ``out`` and, when ``want_grad``, dL/dout of the *mean* loss.

    Cross-entropy: ``logsumexp(out_i) - out_i[label_i]`` per example, mean over the batch
    (torch ``cross_entropy``).  MSE: ``(out - target)^2`` mean over batch and outputs
    (torch ``mse_loss``).  Returns ``(loss_sum, correct, sse)``: ``correct`` counts rows
    whose argmax (first maximum, as torch) is the label; ``sse`` is the MSE numerator.
    """
    m, n_out = out.shape
    total = 0.0
    correct = 0
    sse = 0.0
    if loss_kind == CROSS_ENTROPY:
        inv_m = 1.0 / m
        for i in range(m):
            top = -np.inf
            arg = -1
            finite = True
            for j in range(n_out):
                v = np.float64(out[i, j])
                if not math.isfinite(v):
                    finite = False
                if v > top:
                    top = v
                    arg = j
            y = labels[i]
            if finite:
                s = 0.0
                for j in range(n_out):
                    s += math.exp(np.float64(out[i, j]) - top)
                lse = top + math.log(s)
                if arg == y:
                    correct += 1
            else:
                lse = math.nan
            total += lse - np.float64(out[i, y])
            if want_grad:
                for j in range(n_out):
                    p = math.exp(np.float64(out[i, j]) - lse)
                    grad[i, j] = (p - (1.0 if j == y else 0.0)) * inv_m
    else:
        scale = 2.0 / (m * n_out)
        for i in range(m):
            for j in range(n_out):
                r = np.float64(out[i, j]) - np.float64(targets[i, j])
                sse += r * r
                if want_grad:
                    grad[i, j] = scale * r
        total = sse / n_out
    return total, correct, sse


# ------------------------------------------------------------------ forward / backward


@jit(inline=True)
def _logits(net, bufs, m):
    """The readout's output for ``m`` rows: its z (the readout has no activation)."""
    n_layers = net.widths.size - 1
    return view(bufs.z[n_layers - 1], m, net.widths[n_layers])


@jit(inline=True)
def _sites(net, k):
    """Layer ``k``'s wiring: ``(hidden, residual, at_preact, at_branch, at_output)``.

    The readout is never normalised.  A norm before phi sits on every hidden layer (as
    batch norm always has); a pre-norm (branch) or post-norm (output) one is part of a
    residual block, so it sits on the hidden layers with a skip path (fan-in = fan-out)
    and a hidden layer without one is a plain ``phi(z)`` layer.  ``bufs.u[k]`` holds
    ``Norm(z)`` at preact, the GEMM's input ``Norm(h_in)`` at branch and the residual sum
    ``h_in + alpha phi(z)`` at output.
    """
    hidden = k < net.widths.size - 2
    residual = hidden and net.alpha[k] != 0.0
    normed = hidden and (net.batchnorm or net.layernorm)
    at_preact = normed and net.norm_at == NORM_PREACT
    at_branch = normed and residual and net.norm_at == NORM_BRANCH
    at_output = normed and residual and net.norm_at == NORM_OUTPUT
    return hidden, residual, at_preact, at_branch, at_output


@jit(inline=True)
def _normalize(net, x, out):
    """``out = Norm(x)``: the shared kernels, by rows (layer norm) or by columns (batch norm)."""
    if net.layernorm:
        layernorm_forward(x, out, BATCHNORM_EPS)
    else:
        batchnorm_forward(x, out, BATCHNORM_EPS)


@jit(inline=True)
def _normalize_backward(net, x, grad_u, grad_x):
    """``grad_x`` from ``grad_u = dL/dNorm(x)``: the shared kernels' backward."""
    if net.layernorm:
        layernorm_backward(x, grad_u, grad_x, BATCHNORM_EPS)
    else:
        batchnorm_backward(x, grad_u, grad_x, BATCHNORM_EPS)


@jit
def forward(net, W, B, bufs, m):
    """Forward the ``m`` examples in ``bufs.h[0]``: fills ``z`` (bias added), ``u`` (the norm's
    stored matrix, see :func:`_sites`), ``d`` (phi') and ``h[k + 1]``; the logits are the readout's ``z``."""
    n_layers = net.widths.size - 1
    for k in range(n_layers):
        n_in, n_out = net.widths[k], net.widths[k + 1]
        hidden, residual, at_preact, at_branch, at_output = _sites(net, k)
        h_in = view(bufs.h[k], m, n_in)
        z = view(bufs.z[k], m, n_out)
        gemm_in = h_in
        if at_branch:  # pre-norm: z = Norm(h_in) W^T + b
            gemm_in = view(bufs.u[k], m, n_in)
            _normalize(net, h_in, gemm_in)
        gemm(gemm_in, view(W[net.w_off[k]:], n_out, n_in).T, z, net.loops)
        add_bias_rows(z, B[net.b_off[k]:], 0, m)
        if hidden:
            pre = z
            if at_preact:
                pre = view(bufs.u[k], m, n_out)
                _normalize(net, z, pre)
            h_out = view(bufs.h[k + 1], m, n_out)
            # Post-norm: the residual sum goes to u, and h_out is its norm.
            summed = view(bufs.u[k], m, n_out) if at_output else h_out
            activate_rows(pre, h_in, summed, view(bufs.d[k], m, n_out), net.code, net.param,
                          residual, net.alpha[k] if residual else 1.0, 0, m)
            if at_output:
                _normalize(net, summed, h_out)


@jit
def backward(net, W, bufs, m):
    """Backward from ``bufs.g_top`` = dL/d logits; fills ``bufs.gW`` and ``bufs.gB``.

    ``bufs.g_z`` holds the gradient through the norm: dL/dz at preact, dL/d(the residual
    sum) at output, dL/dNorm(h_in) (before the norm's backward) at branch.
    """
    n_layers = net.widths.size - 1
    g_h, g_in = bufs.g_h, bufs.g_in
    with_stats = from_output = np.bool_(False)  # train keeps no statistics and stores phi'
    for k in range(n_layers - 1, -1, -1):
        n_in, n_out = net.widths[k], net.widths[k + 1]
        hidden, residual, at_preact, at_branch, at_output = _sites(net, k)
        gz = view(bufs.g_top, m, n_out)
        skip = view(g_h, m, n_out)  # the skip path's gradient: dL/dh_out, or at output dL/d(the sum)
        gemm_in = view(bufs.h[k], m, n_in)
        if hidden:
            if at_output:
                skip = view(bufs.g_z, m, n_out)
                _normalize_backward(net, view(bufs.u[k], m, n_out), view(g_h, m, n_out), skip)
            ga = view(bufs.g_a, m, n_out)
            branch = net.alpha[k] if residual else 1.0
            slope = view(bufs.d[k], m, n_out)
            for block in range(N_BLOCKS):
                backprop_block(block, skip, slope, branch, ga, bufs.acc, with_stats, net.code, net.param,
                               from_output)
            gz = ga
            if at_preact:
                gz = view(bufs.g_z, m, n_out)
                _normalize_backward(net, view(bufs.z[k], m, n_out), ga, gz)
            if at_branch:
                gemm_in = view(bufs.u[k], m, n_in)
        w = view(W[net.w_off[k]:], n_out, n_in)
        gemm(gz.T, gemm_in, view(bufs.gW[net.w_off[k]:], n_out, n_in), net.loops)
        sums = bufs.acc[0]
        column_sums_rows(gz, 0, m, sums)
        g_b = bufs.gB[net.b_off[k]:]
        for j in range(n_out):
            g_b[j] = sums[ACC_SUM, j]
        if k > 0:
            grad_in = view(g_in, m, n_in)
            if at_branch:
                grad_norm = view(bufs.g_z, m, n_in)
                gemm(gz, w, grad_norm, net.loops)
                _normalize_backward(net, view(bufs.h[k], m, n_in), grad_norm, grad_in)
            else:
                gemm(gz, w, grad_in, net.loops)
            if residual:
                # The skip path, added in the net's dtype (n_in == n_out on a residual layer).
                for i in range(m):
                    in_row, out_row = grad_in[i], skip[i]
                    for j in range(n_in):
                        in_row[j] += out_row[j]
            g_h, g_in = g_in, g_h


def signatures(net, sched, opt, data, test, W, B, bufs, epoch_rec, layer_rec):
    """:func:`train`'s kernels and the kernels under them, with their numba argument types as they are called
    (for ``compile``).

    Parameters
    ----------
    net, sched, opt, data, test, W, B, bufs, epoch_rec, layer_rec
        :func:`train`'s arguments.

    Returns
    -------
    dict
        ``train_epoch`` and ``record_state``, which :func:`train` calls; ``forward``, ``backward``,
        ``optimizer_step``, ``distinct_rows``; ``view``, which both passes call; ``gather`` and ``loss_and_grad``,
        which both epoch kernels call: name -> ``(dispatcher, tuple of argument types)``.
    """
    net_t, w_t, b_t, bufs_t = numba.typeof(net), numba.typeof(W), numba.typeof(B), numba.typeof(bufs)
    sched_t, data_t, test_t = numba.typeof(sched), numba.typeof(data), numba.typeof(test)
    records = (numba.typeof(epoch_rec), numba.typeof(layer_rec))
    order_t = numba.typeof(data.order)
    matrix = types.Array(w_t.dtype, 2, "C")  # a layer's weights, or a view of a flat buffer (view)
    return {
        # epoch, net, sched, opt, data, W, B, bufs, order, next_order, epoch_rec, layer_rec
        "train_epoch": (train_epoch, (types.int64, net_t, sched_t, numba.typeof(opt), data_t, w_t, b_t, bufs_t,
                                      order_t, order_t, *records)),
        # epoch, net, sched, data, test, W, B, bufs, epoch_rec, layer_rec
        "record_state": (record_state, (types.int64, net_t, sched_t, data_t, test_t, w_t, b_t, bufs_t, *records)),
        "forward": (forward, (net_t, w_t, b_t, bufs_t, types.int64)),
        "backward": (backward, (net_t, w_t, bufs_t, types.int64)),
        "optimizer_step": (optimizer_step, (numba.typeof(opt), w_t, b_t, numba.typeof(bufs.gW), numba.typeof(bufs.gB))),
        # a layer's weights as a matrix, its biases, the tolerance
        "distinct_rows": (distinct_rows, (matrix, types.Array(b_t.dtype, 1, "C"), types.float64)),
        # What both passes call: compiled on one side before either (see fastinit._compile_ahead).
        "view": (view, (types.Array(w_t.dtype, 1, "C"), types.int64, types.int64)),
        # data, order, start, m, bufs
        "gather": (gather, (data_t, order_t, types.int64, types.int64, bufs_t)),
        # logits, labels, targets, loss kind, dL/dlogits, want_grad
        "loss_and_grad": (loss_and_grad, (matrix, numba.typeof(bufs.labels), numba.typeof(bufs.targets),
                                          numba.typeof(net.loss), matrix, types.boolean)),
    }


@jit
def gather(data, perm, start, m, bufs):
    """Copy examples ``perm[start:start + m]`` into the batch buffers."""
    n_in, n_t = data.x.shape[1], data.targets.shape[1]
    h0 = view(bufs.h[0], m, n_in)
    for i in range(m):
        src = perm[start + i]
        for j in range(n_in):
            h0[i, j] = data.x[src, j]
        bufs.labels[i] = data.labels[src]
        for j in range(n_t):
            bufs.targets[i, j] = data.targets[src, j]


@jit(inline=True)
def forward_backward(net, W, B, bufs, m):
    """Loss (summed over the batch) and gradients of the mean loss for the batch in ``bufs.h[0]``."""
    forward(net, W, B, bufs, m)
    n_out = net.widths[net.widths.size - 1]
    loss, _, _ = loss_and_grad(_logits(net, bufs, m), bufs.labels, bufs.targets, net.loss, view(bufs.g_top, m, n_out),
                               np.bool_(True))
    backward(net, W, bufs, m)
    return loss


@jit
def batch_gradients(net, data, W, B, bufs):
    """Gradients (into ``bufs.gW``, ``bufs.gB``) of the mean loss over all of ``data`` taken as one
    batch (a test hook); returns the mean loss."""
    m = data.x.shape[0]
    gather(data, data.order, np.int64(0), m, bufs)
    return forward_backward(net, W, B, bufs, m) / m


# ------------------------------------------------------------------ update


@jit(inline=True)
def clip_coefficient(gW, gB, max_norm):
    """torch ``clip_grad_norm_``: global L2 norm over all gradients and the factor to apply.

    Returns ``(norm, coef)`` with ``coef = min(1, max_norm / (norm + 1e-6))`` (1 when
    ``max_norm`` is 0, meaning no clipping).  A non-finite norm gives coef 0 or NaN, as torch.
    """
    norm = math.sqrt(sum_of_squares(gW) + sum_of_squares(gB))
    if max_norm <= 0.0:
        return norm, 1.0
    return norm, min(1.0, max_norm / (norm + CLIP_EPS))


@jit(inline=True)
def sgd(P, G, V, lr, momentum, weight_decay, coef, clip):
    """torch.optim.SGD after clipping: ``g *= coef``; ``g += weight_decay p``; ``v = momentum v + g``; ``p -= lr v``.

    The clipped gradient is written back to ``G`` (as clip_grad_norm_ does to ``.grad``);
    the weight-decay term is not (torch adds it to a copy).
    """
    c = P.dtype.type(coef)
    mu = P.dtype.type(momentum)
    step = P.dtype.type(lr)
    wd = P.dtype.type(weight_decay)
    decay = weight_decay != 0.0
    for i in range(P.size):
        g = G[i] * c if clip else G[i]
        G[i] = g
        if decay:
            g = g + wd * P[i]
        v = mu * V[i] + g if momentum != 0.0 else g
        V[i] = v
        P[i] -= step * v


@jit(inline=True)
def adam(P, G, M, V, opt, coef, clip, bias_correction1, bias_correction2_sqrt):
    """torch.optim.Adam / AdamW (``_single_tensor_adam``, not amsgrad) after clipping, elementwise.

    Each operation is torch's in the parameters' dtype, in torch's order: AdamW first
    scales ``p`` by ``1 - lr weight_decay``, Adam adds ``weight_decay p`` to ``g``;
    ``m.lerp_(g, 1 - beta1)`` (torch's lerp: ``m + w (g - m)`` for ``w < 0.5``, else
    ``g - (g - m)(1 - w)``); ``v = v beta2 + (1 - beta2) g g``;
    ``p += -(lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)``.  The scalars are formed in
    float64, as torch forms them in Python, then rounded to the dtype.
    """
    t = P.dtype.type
    c = t(coef)
    w = t(1.0 - opt.beta1)
    w_rest = t(1.0) - w  # torch's lerp computes 1 - weight in the tensor's dtype
    lerp_low = abs(np.float64(w)) < 0.5
    b2 = t(opt.beta2)
    one_minus_b2 = t(1.0 - opt.beta2)
    eps = t(opt.eps)
    neg_step = t(-(opt.lr / bias_correction1))
    bc2_sqrt = t(bias_correction2_sqrt)
    decoupled = opt.kind == ADAMW
    decay = opt.weight_decay != 0.0
    wd = t(opt.weight_decay)
    shrink = t(1.0 - opt.lr * opt.weight_decay)
    for i in range(P.size):
        g = G[i] * c if clip else G[i]
        G[i] = g
        p = P[i]
        if decay:
            if decoupled:
                p = p * shrink
            else:
                g = g + wd * p
        m = M[i]
        m = m + w * (g - m) if lerp_low else g - (g - m) * w_rest
        M[i] = m
        v = V[i] * b2 + one_minus_b2 * g * g
        V[i] = v
        denom = np.sqrt(v) / bc2_sqrt + eps
        P[i] = p + neg_step * (m / denom)


@jit
def optimizer_step(opt, W, B, gW, gB):
    """Clip the gradients by global norm (when ``opt.max_norm > 0``), then one update of ``opt.kind``.

    Clipping comes first, on the raw gradients, as a torch user calls
    ``clip_grad_norm_`` before ``optimizer.step()``; weight decay is added after it.
    Returns ``(norm before clipping, coefficient applied)``.
    """
    norm, coef = clip_coefficient(gW, gB, opt.max_norm)
    clip = opt.max_norm > 0.0
    if opt.kind == SGD:
        sgd(W, gW, opt.m_W, opt.lr, opt.momentum, opt.weight_decay, coef, clip)
        sgd(B, gB, opt.m_B, opt.lr, opt.momentum, opt.weight_decay, coef, clip)
    else:
        opt.steps[0] += 1
        step = np.float64(opt.steps[0])
        # torch: bias_correction2 ** 0.5 (a pow, not a sqrt: they can differ in the last bit).
        bias_correction1 = 1.0 - opt.beta1 ** step
        bias_correction2_sqrt = (1.0 - opt.beta2 ** step) ** 0.5
        adam(W, gW, opt.m_W, opt.v_W, opt, coef, clip, bias_correction1, bias_correction2_sqrt)
        adam(B, gB, opt.m_B, opt.v_B, opt, coef, clip, bias_correction1, bias_correction2_sqrt)
    return norm, coef


# ------------------------------------------------------------------ measures


@jit
def distinct_rows(w, b, rtol):
    """Number of distinct rows of ``[w | b]``: rows within ``rtol * max|entry|`` (max-norm) are one.

    Rows are sorted by a fixed projection and each is compared only with the
    representatives whose projection is close enough to possibly match, so the count
    costs O(rows log rows + rows * cols) for distinct rows.  Greedy in projection
    order (closeness is not transitive).  NaN if any entry is not finite.
    """
    rows, cols = w.shape
    scale = 0.0
    for i in range(rows):
        for j in range(cols):
            a = abs(np.float64(w[i, j]))
            if not math.isfinite(a):
                return math.nan
            scale = max(scale, a)
        a = abs(np.float64(b[i]))
        if not math.isfinite(a):
            return math.nan
        scale = max(scale, a)
    if scale == 0.0:
        return 1.0
    tol = rtol * scale
    weights = np.empty(cols + 1)
    for j in range(cols + 1):
        weights[j] = 1.0 + ((j + 1) * 0.6180339887498949) % 1.0  # in [1, 2): no cancellation
    proj = np.empty(rows)
    for i in range(rows):
        s = np.float64(b[i]) * weights[cols]
        for j in range(cols):
            s += np.float64(w[i, j]) * weights[j]
        proj[i] = s
    # |proj_i - proj_j| <= sum(weights) * maxdiff, plus float64 rounding of the sums.
    window = weights.sum() * (tol + 1e-12 * scale)
    order = np.argsort(proj, kind="mergesort")
    reps = np.empty(rows, dtype=np.int64)
    n_reps = 0
    for t in range(rows):
        i = order[t]
        found = False
        r = n_reps - 1
        while r >= 0 and proj[i] - proj[reps[r]] <= window:
            k = reps[r]
            close = abs(np.float64(b[i]) - np.float64(b[k])) <= tol
            j = 0
            while close and j < cols:
                close = abs(np.float64(w[i, j]) - np.float64(w[k, j])) <= tol
                j += 1
            if close:
                found = True
                break
            r -= 1
        if not found:
            reps[n_reps] = i
            n_reps += 1
    return np.float64(n_reps)


def permutation(n, seed, stream, epoch):
    """Epoch ``epoch``'s order of ``n`` examples: the stable argsort of float64 uniforms on substream ``epoch``.

    Drawn from Python, once per epoch: :func:`fastinit.rng.fill` runs the float64
    fill kernel the tasks compiled already, so the epoch kernel links none of the
    samplers' code (seconds of compile time); any stable sort gives the same order.
    """
    keys = np.empty(int(n))
    rng.fill(keys, rng.KIND_UNIFORM, 0.0, 1.0, np.uint64(seed), np.uint64(stream), np.int64(epoch))
    return np.argsort(keys, kind="stable")


@jit(inline=True)
def evaluate(net, data, W, B, bufs, batch):
    """Loss, accuracy and R^2 over all of ``data`` (the training or the held-out set), forward
    only, in chunks of ``batch`` in data-set order (batch norm uses each chunk's statistics,
    training mode); NaN for an empty set (nothing measured)."""
    n = data.x.shape[0]
    if n == 0:
        return math.nan, math.nan, math.nan
    total = 0.0
    correct = 0
    sse = 0.0
    for start in range(0, n, batch):
        m = min(batch, n - start)
        gather(data, data.order, start, m, bufs)
        forward(net, W, B, bufs, m)
        t, c, s = loss_and_grad(_logits(net, bufs, m), bufs.labels, bufs.targets, net.loss,
                                view(bufs.g_top, m, net.widths[net.widths.size - 1]), np.bool_(False))
        total += t
        correct += c
        sse += s
    if net.loss == CROSS_ENTROPY:
        return total / n, correct / n, math.nan
    return total / n, math.nan, 1.0 - sse / data.sst


@jit
def record_state(epoch, net, sched, data, test, W, B, bufs, epoch_rec, layer_rec):
    """Fill epoch ``epoch``'s rows: loss/accuracy on the training set and on the held-out set
    ``test``, the gradient already in ``bufs.gW, bufs.gB`` (the next epoch's first mini-batch),
    norms and distinct units per layer; returns whether the training loss and the weights are
    finite.  The held-out pass only overwrites activations: the pending gradient stays.

    A kernel of its own beside :func:`train_epoch`, which Python calls after it: it runs the
    forward pass only, so a cold compile builds it in the child while this process builds
    the epoch (:mod:`fastinit._compile_ahead`), and neither links the other's code."""
    loss, acc, r2 = evaluate(net, data, W, B, bufs, sched.batch)
    gW, gB = bufs.gW, bufs.gB
    epoch_rec[epoch, LOSS] = loss
    epoch_rec[epoch, ACCURACY] = acc
    epoch_rec[epoch, R2] = r2
    test_loss, test_acc, test_r2 = evaluate(net, test, W, B, bufs, sched.batch)
    epoch_rec[epoch, TEST_LOSS] = test_loss
    epoch_rec[epoch, TEST_ACCURACY] = test_acc
    epoch_rec[epoch, TEST_R2] = test_r2
    epoch_rec[epoch, GLOBAL_GRAD_NORM] = math.sqrt(sum_of_squares(gW) + sum_of_squares(gB))
    for k in range(net.widths.size - 1):
        n_in, n_out = net.widths[k], net.widths[k + 1]
        w_first, b_first = net.w_off[k], net.b_off[k]
        w, b = W[w_first: w_first + n_out * n_in], B[b_first: b_first + n_out]
        layer_rec[epoch, k, GRAD_NORM] = math.sqrt(sum_of_squares(gW[w_first: w_first + n_out * n_in]))
        layer_rec[epoch, k, BIAS_GRAD_NORM] = math.sqrt(sum_of_squares(gB[b_first: b_first + n_out]))
        layer_rec[epoch, k, WEIGHT_NORM] = math.sqrt(sum_of_squares(w))
        layer_rec[epoch, k, BIAS_NORM] = math.sqrt(sum_of_squares(b))
        layer_rec[epoch, k, DISTINCT] = distinct_rows(w.reshape((n_out, n_in)), b, sched.rtol)
    return math.isfinite(loss) and math.isfinite(sum_of_squares(W) + sum_of_squares(B))


@jit
def train_epoch(epoch, net, sched, opt, data, W, B, bufs, order, next_order, epoch_rec, layer_rec):
    """Epoch ``epoch`` of mini-batch training with ``opt`` in the example order ``order`` (epoch 0: none, the state
    at initialisation), then the gradient on ``next_order``'s first mini-batch and the epoch's
    training records (:func:`record_state` fills the others).

    The first step of each epoch uses the gradient the previous call left in ``bufs`` (the one
    the records report), with its loss in ``bufs.pending[0]``.
    """
    n = data.x.shape[0]
    n_layers = net.widths.size - 1
    batch = sched.batch
    m = min(batch, n)
    gW, w_start, norm_sum = bufs.gW, bufs.w_start, bufs.norm_sum
    steps = (n + batch - 1) // batch
    batch_loss = 0.0
    clipped = 0
    if epoch > 0:
        for i in range(W.size):
            w_start[i] = W[i]
        for k in range(n_layers):
            norm_sum[k] = 0.0
        for step in range(steps):
            start = step * batch
            m = min(batch, n - start)
            if step > 0:
                gather(data, order, start, m, bufs)
                batch_loss += forward_backward(net, W, B, bufs, m)
            else:
                batch_loss += bufs.pending[0]
            for k in range(n_layers):
                norm_sum[k] += math.sqrt(sum_of_squares(gW[net.w_off[k]: net.w_off[k + 1]]))
            _, coef = optimizer_step(opt, W, B, gW, bufs.gB)
            if coef < 1.0:
                clipped += 1
    m = min(batch, n)
    # np.int64 for constants: a literal argument compiles a kernel's own copy (and its callees').
    gather(data, next_order, np.int64(0), m, bufs)
    bufs.pending[0] = forward_backward(net, W, B, bufs, m)
    if epoch > 0:
        epoch_rec[epoch, BATCH_LOSS] = batch_loss / n
        epoch_rec[epoch, CLIPPED_STEPS] = clipped
        for k in range(n_layers):
            layer_rec[epoch, k, GRAD_NORM_MEAN] = norm_sum[k] / steps
            diff = 0.0
            for i in range(net.w_off[k], net.w_off[k + 1]):
                r = np.float64(W[i]) - np.float64(w_start[i])
                diff += r * r
            layer_rec[epoch, k, UPDATE_NORM] = math.sqrt(diff)


def train(net, sched, opt, data, test, W, B, bufs, epoch_rec, layer_rec):
    """Mini-batch training with ``opt`` for ``sched.epochs`` epochs; fills the records of epochs ``0 .. last``.

    Returns the last epoch recorded: ``sched.epochs``, or the first epoch whose training
    loss or weights are not finite (the run stops there; later rows stay NaN).  Python
    calls :func:`train_epoch` and :func:`record_state` once per epoch (never per step) and draws the orders.
    """
    n = data.x.shape[0]
    order = permutation(n, sched.seed, sched.order_stream, 1)
    for epoch in range(sched.epochs + 1):
        next_order = order if epoch == 0 else permutation(n, sched.seed, sched.order_stream, epoch + 1)
        train_epoch(np.int64(epoch), net, sched, opt, data, W, B, bufs, order, next_order, epoch_rec, layer_rec)
        if not record_state(np.int64(epoch), net, sched, data, test, W, B, bufs, epoch_rec, layer_rec):
            return epoch
        order = next_order
    return sched.epochs
