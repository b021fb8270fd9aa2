"""Peer benchmark of issue 14's options: a registered activation and LSUV, against the same computation in PyTorch.

Run as a plain script (PyTorch required)::

    python asv_bench/peers_options.py            # depth 200, width 256, batch 256, float32
    python asv_bench/peers_options.py --repeat 9

Rows, each the median of ``--repeat`` runs in this process (ratios are what to compare):

* mish registered with :func:`fastinit.activations.register` (plain ``math`` functions, called
  through the compiled kernel's address) against the PyTorch loop with ``torch.nn.functional.mish``,
  and fastinit's built-in gelu at the same shape (what the registered call costs);
* ``init="lsuv"`` (calibration pass plus the sweep) against LSUV written in PyTorch as one would:
  ``orthogonal_`` weights rescaled layer by layer under ``no_grad``, then the autograd sweep.

Both sides record the same per-layer statistics (forward, gradient and weight-gradient variance,
second moment); PyTorch runs on all cores, fastinit on its lanes.
"""

from __future__ import annotations

import argparse
import math

from _timing import median_seconds  # noqa: E402 -- a sibling module: run these as scripts
from peers import machine_line  # noqa: E402

import fastinit
from fastinit.activations import USER_ACTIVATIONS, register


def mish(x):
    return x * math.tanh(math.log1p(math.exp(x)))


def mish_slope(x):
    t = math.tanh(math.log1p(math.exp(x)))
    return t + x * (1.0 - t * t) / (1.0 + math.exp(-x))


def _register_mish():
    if "mish" not in USER_ACTIVATIONS:
        register("mish", mish, mish_slope)


def torch_sweep(torch, activation, weights, batch, width):
    """Forward with retain_grad through the given weights, backward from a random readout, the statistics."""
    h = torch.randn(batch, width)
    pre = []
    for w in weights:
        w.requires_grad_(True)
        z = h @ w.T
        z.retain_grad()
        h = activation(z)
        pre.append(z)
    (h * torch.randn(batch, width)).sum().backward()
    with torch.no_grad():
        return [(z.var().item(), z.grad.var().item(), w.grad.var().item(), (activation(z) ** 2).mean().item())
                for z, w in zip(pre, weights)]


def torch_he(torch, depth, width):
    weights = []
    for _ in range(depth):
        w = torch.empty(width, width)
        torch.nn.init.kaiming_normal_(w, nonlinearity="relu")
        weights.append(w)
    return weights


def torch_lsuv(torch, activation, depth, width, batch, tol=0.1, max_iter=10):
    """LSUV as a PyTorch user writes it: orthogonal_, then W /= std(z) layer by layer on the batch."""
    h = torch.randn(batch, width)
    weights = []
    with torch.no_grad():
        for _ in range(depth):
            w = torch.empty(width, width)
            torch.nn.init.orthogonal_(w)
            for _ in range(max_iter):
                z = h @ w.T
                variance = z.var()
                if abs(variance.item() - 1.0) < tol:
                    break
                w /= variance.sqrt()
            h = activation(h @ w.T)
            weights.append(w)
    return weights


def main(argv=None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(prog="python asv_bench/peers_options.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7, help="timed repetitions per row (median reported)")
    parser.add_argument("--depth", type=int, default=200)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args(argv)
    import torch

    depth, width, batch, repeat = args.depth, args.width, args.batch, args.repeat
    shape = dict(depth=depth, width=width, batch=batch, dtype="float32")
    _register_mish()
    fastinit.propagate("he_normal", "mish", depth=2, width=8, batch=8)  # compile outside the timings
    fastinit.propagate("lsuv", "tanh", depth=2, width=8, batch=8)
    rows = [
        ("fastinit mish (registered)", median_seconds(lambda: fastinit.propagate("he_normal", "mish", **shape), repeat)),
        ("fastinit gelu (built-in)", median_seconds(lambda: fastinit.propagate("he_normal", "gelu", **shape), repeat)),
        ("torch loop, F.mish", median_seconds(lambda: torch_sweep(
            torch, torch.nn.functional.mish, torch_he(torch, depth, width), batch, width), repeat)),
        ("fastinit lsuv + tanh", median_seconds(lambda: fastinit.propagate("lsuv", "tanh", **shape), repeat)),
        ("torch LSUV + tanh loop", median_seconds(lambda: torch_sweep(
            torch, torch.tanh, torch_lsuv(torch, torch.tanh, depth, width, batch), batch, width), repeat)),
    ]
    seconds = dict(rows)
    print(machine_line())
    print(f"depth {depth}, width {width}, batch {batch}, float32; torch {torch.__version__} on "
          f"{torch.get_num_threads()} threads; medians of {repeat}")
    for label, value in rows:
        print(f"  {label:34s} {value:8.3f} s")
    print(f"  registered mish vs the torch loop: {seconds['torch loop, F.mish'] / seconds['fastinit mish (registered)']:.2f}x;"
          f" registered mish / built-in gelu: {seconds['fastinit mish (registered)'] / seconds['fastinit gelu (built-in)']:.2f}")
    print(f"  lsuv vs the torch LSUV loop: {seconds['torch LSUV + tanh loop'] / seconds['fastinit lsuv + tanh']:.2f}x")


if __name__ == "__main__":
    main()
