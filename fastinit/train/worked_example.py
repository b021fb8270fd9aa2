"""The seed notes' worked example: one chain-rule product, one SGD step, then a real net.

Scalar version (the notes' numbers).  With sigmoid and ``w = 500`` the notes multiply
four chain-rule factors, ``150 x 100 x 125 x 50 = 93,750,000``, and take one SGD step at
learning rate 0.01: ``500 - 0.01 * 93,750,000 = -937,000``.

Our reading of the chain.  A sigmoid layer contributes ``w * sigma'(z)`` to the chain and
``sigma'(z) = 1 / (4 cosh^2(z / 2)) <= 1/4``, so with ``w = 500`` one layer contributes
at most 125: **125 = 500 x sigma'(0)** exactly; **100 = 500 x 0.2** needs ``|z| = 0.96``;
**50 = 500 x 0.1** needs ``|z| = 2.06``; **150 = 500 x 0.3 is impossible** for a sigmoid
factor (``0.3 > 1/4``).  So the chain is consistent with three sigmoid layers whose
pre-activations sit within about 2 of zero plus one factor that is not a sigmoid layer
(the loss derivative dL/dy-hat or an input value, say), or else the factors are
illustrative; the arithmetic itself is right.  The notes do not say which; we don't guess further.

What a real chain does.  In a *single* chain of sigmoid units with ``w = 500`` the
pre-activation of every unit after the first is ``500 * h`` with ``h`` in (0, 1), typically
hundreds, where ``sigma'(z) ~ exp(-|z|)``: the factors are ~1e-100 and the gradient
*vanishes* (:func:`scalar_chain`).  The explosion is a **width** effect: in a wide layer
with zero-mean weights of std ``s``, ``z ~ N(0, n s^2 / 2)`` and the few units near 0
carry the gradient.  Per layer the gradient's second moment is multiplied by
``n s^2 E[sigma'(z)^2] ~ s sqrt(n) / (6 sqrt(pi))`` (``int sigma'^2 = 1/6``), so the
*norm* grows by ``sqrt(s sqrt(n) / (6 sqrt(pi)))`` per layer toward the input (the chaotic
phase of mean-field theory, chi1 > 1).  :func:`worked_example` measures that with
:func:`fastinit.train.run`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fastinit.train.run import run

__all__ = ["worked_example", "scalar_chain", "SEED_FACTORS"]

SEED_FACTORS = (150, 100, 125, 50)
SEED_W, SEED_LR = 500.0, 0.01


def _sigmoid_z_for_slope(slope):
    """|z| with sigma'(z) = slope (<= 1/4), from sigma'(z) = 1 / (4 cosh^2(z/2)); NaN if impossible."""
    if slope > 0.25:
        return math.nan
    return 2.0 * math.acosh(1.0 / (2.0 * math.sqrt(slope)))


def scalar_chain(w=SEED_W, x=1.0, depth=4):
    """A one-unit-wide sigmoid chain ``h_l = sigmoid(w h_{l-1})``: its factors ``w sigma'(z_l)``.

    Returns a list of ``(z_l, factor_l)``; their product is dh_depth/dh_0.  Logs are used
    where the factor underflows float64.
    """
    h = x
    out = []
    for _ in range(depth):
        z = w * h
        log_slope = -abs(z) - 2.0 * math.log1p(math.exp(-abs(z)))  # log sigma'(z), stable
        out.append((z, w * math.exp(log_slope), math.log10(w) + log_slope / math.log(10.0)))
        h = 1.0 / (1.0 + math.exp(-z))
    return out


def worked_example(*, depth=10, width=256, std=10.0, lr=SEED_LR, seed=0, n_train=256) -> dict:
    """The seed notes' numbers, our reading of them, and the network-level explosion, measured.

    The network: ``depth`` sigmoid layers of ``width`` units with N(0, std^2) weights
    (``init="normal"``), the ``gaussians`` task with ``n_train`` examples trained full-batch
    (one step per epoch) by plain SGD (momentum 0) at ``lr``; the same net with
    ``xavier_normal`` weights as the baseline.

    Returns
    -------
    dict
        ``factors``, ``product`` (93,750,000), ``lr``, ``w_before`` (500), ``step``
        (937,500), ``w_after`` (-937,000); ``reading``: per factor the sigmoid slope it
        needs at w = 500 and the |z| giving that slope (NaN: impossible); ``scalar_chain``;
        ``trace``: a frame with one row per layer: ``grad_norm_init`` (||dL/dW_l||_F at
        initialisation), ``grad_norm_after_step`` (after one SGD step), ``weight_norm``,
        ``update_norm`` (||lr g||_F of the first step), ``update_ratio`` (update / weight
        norm) for the large-std net and ``xavier_grad_norm_init`` for the baseline;
        ``growth_per_layer`` (median measured ratio of consecutive hidden layers' gradient
        norms) and ``predicted_growth`` (``sqrt(std sqrt(width) / (6 sqrt(pi)))``).
    """
    product = math.prod(SEED_FACTORS)
    step = lr * product
    reading = pd.DataFrame({
        "factor": SEED_FACTORS,
        "sigmoid_slope_needed": [f / SEED_W for f in SEED_FACTORS],
        "abs_z": [_sigmoid_z_for_slope(f / SEED_W) for f in SEED_FACTORS],
    })
    reading["possible_as_sigmoid_layer"] = reading.sigmoid_slope_needed <= 0.25
    common = dict(depth=depth, width=width, task="gaussians", epochs=1, lr=lr, batch=n_train, seed=seed, momentum=0.0,
                  task_params={"n_train": n_train})
    big = run("normal", "sigmoid", init_params={"std": std}, **common)
    base = run("xavier_normal", "sigmoid", **common)

    def at(frame, epoch, column):
        return frame[frame.epoch == epoch][column].to_numpy()

    trace = pd.DataFrame({
        "layer": at(big, 0, "layer"),
        "kind": at(big, 0, "kind"),
        "grad_norm_init": at(big, 0, "grad_norm"),
        "grad_norm_after_step": at(big, 1, "grad_norm"),
        "weight_norm": at(big, 0, "weight_norm"),
        "update_norm": at(big, 1, "update_norm"),
        "xavier_grad_norm_init": at(base, 0, "grad_norm"),
    })
    trace["update_ratio"] = trace.update_norm / trace.weight_norm
    hidden = trace.grad_norm_init.to_numpy()[:depth]
    growth = float(np.median(hidden[:-1] / hidden[1:]))
    return {
        "factors": SEED_FACTORS, "product": product, "lr": lr, "w_before": SEED_W, "step": step,
        "w_after": SEED_W - step, "reading": reading, "scalar_chain": scalar_chain(),
        "trace": trace, "loss_init": float(at(big, 0, "loss")[0]), "loss_after_step": float(at(big, 1, "loss")[0]),
        "growth_per_layer": growth,
        "predicted_growth": math.sqrt(std * math.sqrt(width) / (6.0 * math.sqrt(math.pi))),
        "params": {"depth": depth, "width": width, "std": std, "lr": lr, "seed": seed, "n_train": n_train},
    }
