"""Side-by-side peer benchmarks: fastinit against NumPy and PyTorch in one run.

Run as a plain script (PyTorch optional; its rows are skipped without it)::

    python asv_bench/peers.py sampling      # he_normal float32 (4096, 4096)
    python asv_bench/peers.py propagate     # deep sweeps vs PyTorch autograd, NumPy, GEMM floor
    python asv_bench/peers.py prenorm       # layer-norm pre-norm residual stream vs PyTorch autograd

Timings on a shared 2-core machine are noisy, so every number is the median of
``--repeat`` runs, and comparisons are ratios measured in the same process: in the propagate
tables, the median of per-round ratios, every implementation timed once per round in turn.
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
from _timing import compared, interleaved_seconds, median_seconds  # noqa: E402 -- a sibling module: run these as scripts


def bench_sampling(repeat: int) -> list[tuple[str, float]]:
    """he_normal float32 at (4096, 4096) against NumPy and PyTorch; returns (label, seconds)."""
    import fastinit

    shape = (4096, 4096)
    std = float(np.sqrt(2.0 / shape[1]))
    rows = [("fastinit.sample('he_normal', float32)", median_seconds(lambda: fastinit.sample("he_normal", shape, seed=1), repeat))]
    generator = np.random.default_rng(0)
    rows.append(("numpy Generator.standard_normal(float32) * std",
                 median_seconds(lambda: generator.standard_normal(shape, dtype=np.float32) * np.float32(std), repeat)))
    out = np.empty(shape, dtype=np.float32)
    rows.append(("numpy standard_normal(out=, float32), no scaling",
                 median_seconds(lambda: generator.standard_normal(out=out, dtype=np.float32), repeat)))
    try:
        import torch
    except ImportError:
        return rows
    rows.append((f"torch.empty().normal_(0, std) [{torch.get_num_threads()} threads]",
                 median_seconds(lambda: torch.empty(shape).normal_(0.0, std), repeat)))
    tensor = torch.empty(shape)
    rows.append(("torch.Tensor.normal_ in place", median_seconds(lambda: tensor.normal_(0.0, std), repeat)))
    rows.append(("torch.nn.init.kaiming_normal_ in place", median_seconds(lambda: torch.nn.init.kaiming_normal_(tensor), repeat)))
    return rows


HEADLINE_SHAPES = [(64, 1000), (256, 500), (1024, 100)]  # (width, depth), batch 256


def torch_sweep(torch, activation, width, depth, batch, prenorm_alpha=None):
    """The PyTorch loop a researcher writes: init, forward with retain_grad, backward, statistics.

    With ``prenorm_alpha``, a pre-norm residual stream ``h = h + alpha f(W LayerNorm(h))``
    (``nn.LayerNorm(elementwise_affine=False)``, eps 1e-5), as ``propagate(norm="layer", norm_at="branch")``.
    """
    f = getattr(torch, activation)
    h = torch.randn(batch, width)
    norm = torch.nn.LayerNorm(width, eps=1e-5, elementwise_affine=False)
    weights, pre = [], []
    for _ in range(depth):
        w = torch.empty(width, width)
        torch.nn.init.kaiming_normal_(w, nonlinearity="relu")
        w.requires_grad_(True)
        z = (norm(h) if prenorm_alpha is not None else h) @ w.T
        z.retain_grad()
        h = h + prenorm_alpha * f(z) if prenorm_alpha is not None else f(z)
        weights.append(w)
        pre.append(z)
    (h * torch.randn(batch, width)).sum().backward()
    with torch.no_grad():
        return [(z.var().item(), z.grad.var().item(), w.grad.var().item(), (f(z) ** 2).mean().item())
                for z, w in zip(pre, weights)]


def numpy_sweep(activation, width, depth, batch, generator):
    """The same sweep in plain NumPy float32, manual backward."""
    std = np.float32(np.sqrt(2.0 / width))
    h = generator.standard_normal((batch, width), dtype=np.float32)
    saved = []
    for _ in range(depth):
        w = generator.standard_normal((width, width), dtype=np.float32) * std
        z = h @ w.T
        h_next = np.maximum(z, 0) if activation == "relu" else np.tanh(z)
        saved.append((h, w, z))
        h = h_next
    grad = generator.standard_normal((batch, width), dtype=np.float32)
    stats = []
    for h_in, w, z in reversed(saved):
        g_z = grad * ((z > 0) if activation == "relu" else (1 - np.tanh(z) ** 2))
        stats.append((z.var(dtype=np.float64), g_z.var(dtype=np.float64), (g_z.T @ h_in).var(dtype=np.float64)))
        grad = g_z @ w
    return stats


def gemm_floor(width, depth, batch, generator):
    """Only the three GEMMs per layer on pre-made float32 operands: the floor any sweep pays."""
    h = generator.standard_normal((batch, width), dtype=np.float32)
    w = generator.standard_normal((width, width), dtype=np.float32)
    z = np.empty((batch, width), dtype=np.float32)
    wg = np.empty((width, width), dtype=np.float32)
    g = np.empty((batch, width), dtype=np.float32)

    def run():
        for _ in range(depth):
            np.dot(h, w.T, out=z)
        for _ in range(depth):
            np.dot(z.T, h, out=wg)
            np.dot(z, w, out=g)
    return run


def peak_sgemm_gflops(repeat: int, n: int = 2048) -> float:
    """This machine's sgemm rate on large square matrices (GFLOP/s)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    out = np.empty_like(a)
    return 2 * n**3 / median_seconds(lambda: np.dot(a, a, out=out), repeat) / 1e9


def _compared_rows(shape: str, flops: float, times: dict, activations) -> list:
    """Table rows ``(shape, activation, label, median seconds, GFLOP/s, paired ratio to fastinit)`` of one
    shape's :func:`~_timing.interleaved_seconds` (keys ``(label, activation)``; the floor's activation ``None``)."""
    rows = []
    for activation in activations:
        keys = [key for key in times if key[1] == activation] + [key for key in times if key[1] is None]
        rows += [(shape, activation, key[0], seconds, flops / seconds / 1e9, ratio)
                 for key, seconds, ratio in compared(times, keys, ("fastinit", activation))]
    return rows


def bench_propagate(repeat: int):
    """Rows of :func:`_compared_rows` for the headline shapes, each shape's implementations timed in
    interleaved rounds (NumPy, much slower, in the first third of them)."""
    import fastinit

    try:
        import torch
    except ImportError:
        torch = None
    generator = np.random.default_rng(0)
    rows = []
    for width, depth in HEADLINE_SHAPES:
        batch = 256
        functions, counts = {}, {}
        for activation in ("relu", "tanh"):
            functions["fastinit", activation] = lambda activation=activation: fastinit.propagate(
                "he_normal", activation, depth=depth, width=width, batch=batch, init_params={"nonlinearity": "relu"})
            if torch is not None:
                functions["pytorch autograd", activation] = lambda activation=activation: torch_sweep(
                    torch, activation, width, depth, batch)
            functions["numpy", activation] = lambda activation=activation: numpy_sweep(
                activation, width, depth, batch, generator)
            counts["numpy", activation] = max(3, repeat // 3)
        functions["3 GEMMs/layer floor", None] = gemm_floor(width, depth, batch, generator)
        times = interleaved_seconds(functions, repeat, counts)
        rows += _compared_rows(f"({width}, {depth})", 6.0 * batch * width**2 * depth, times, ("relu", "tanh"))
    return rows


PRENORM_SHAPES = [(256, 200), (1024, 50)]  # (width, depth), batch 256, alpha 0.5


def bench_prenorm(repeat: int):
    """Rows of :func:`_compared_rows`: the layer-norm pre-norm residual stream, fastinit and PyTorch interleaved."""
    import fastinit
    import torch

    rows = []
    for width, depth in PRENORM_SHAPES:
        batch = 256
        functions = {}
        for activation in ("relu", "tanh"):
            functions["fastinit", activation] = lambda activation=activation: fastinit.propagate(
                "he_normal", activation, depth=depth, width=width, batch=batch, init_params={"nonlinearity": "relu"},
                norm="layer", norm_at="branch", residual=0.5)
            functions["pytorch autograd", activation] = lambda activation=activation: torch_sweep(
                torch, activation, width, depth, batch, 0.5)
        times = interleaved_seconds(functions, repeat)
        rows += _compared_rows(f"({width}, {depth})", 6.0 * batch * width**2 * depth, times, ("relu", "tanh"))
    return rows


def print_propagate(rows, peak: float, title="batch 256, He normal, float32, forward + backward with statistics") -> None:
    """Markdown table of the propagate comparison (rows of :func:`_compared_rows`)."""
    print(f"\n### Propagation: {title}\n")
    print(machine_line() + "\n")
    print(f"peak sgemm (2048^3, numpy/OpenBLAS, all cores): {peak:.0f} GFLOP/s; "
          "effective GFLOP/s = 6 batch width^2 depth / seconds; fastinit speed-up = median over interleaved "
          "rounds of (that row's time / fastinit's in the same round)\n")
    print("| (width, depth) | activation | implementation | median s | fastinit speed-up | GFLOP/s | % of peak |")
    print("|---|---|---|---:|---:|---:|---:|")
    for shape, activation, label, seconds, gflops, ratio in rows:
        print(f"| {shape} | {activation} | {label} | {seconds:.3f} | {ratio:.2f}x | {gflops:.0f} | {100 * gflops / peak:.0f}% |")


def cpu_model() -> str:
    """The CPU's model name with its family and model numbers (``/proc/cpuinfo`` on Linux, else
    :func:`platform.processor`): virtual machines often report a bare "AMD EPYC", and the numbers
    tell the generation (family 25 is Zen 3/4)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if not key.strip():
                    break  # the first processor's block is enough
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    numbers = f" (family {fields['cpu family']} model {fields['model']})" if "cpu family" in fields else ""
    return fields["model name"] + numbers


def blas_kernels() -> str:
    """The BLAS libraries loaded in this process and the kernel set each uses (threadpoolctl).

    Tuned kernels differ between machines (OpenBLAS picks SkylakeX, Haswell, Zen, ... at load
    time), and a kernel's lead over BLAS can halve from one to the next, so every table says
    which it ran on.  scipy's BLAS is the one numba's ``np.dot`` calls.
    """
    import scipy.linalg.cython_blas  # noqa: F401 -- load it, so that it is listed
    from threadpoolctl import threadpool_info

    libraries = [f"{i['internal_api']} {i.get('version') or '?'} {i.get('architecture') or '?'} ({i['prefix']})"
                 for i in threadpool_info() if i["user_api"] == "blas"]
    return "; ".join(libraries) or "none found"


def machine_line() -> str:
    """One line naming the CPU, its cores, the BLAS kernels in use and numba's thread setting."""
    return (f"machine: {cpu_model()}, {os.cpu_count()} cores; BLAS: {blas_kernels()}; numba threads: "
            f"{os.environ.get('NUMBA_NUM_THREADS', 'default')}")


def print_table(title: str, rows: list[tuple[str, float]]) -> None:
    """Print rows as a Markdown table with each row's speed relative to the first."""
    base = rows[0][1]
    print(f"\n### {title}\n")
    print(machine_line() + "\n")
    print("| implementation | median s | fastinit speed-up |")
    print("|---|---:|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.4f} | {seconds / base:.2f}x |")


def main(argv=None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python asv_bench/peers.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["sampling", "propagate", "prenorm"], help="which comparison to run")
    parser.add_argument("--repeat", type=int, default=15, help="timed repetitions per row (median reported)")
    args = parser.parse_args(argv)
    if args.what == "sampling":
        print_table("Sampling: he_normal float32 (4096, 4096)", bench_sampling(args.repeat))
    if args.what == "propagate":
        print_propagate(bench_propagate(args.repeat), peak_sgemm_gflops(args.repeat))
    if args.what == "prenorm":
        print_propagate(bench_prenorm(args.repeat), peak_sgemm_gflops(args.repeat),
                        "layer-norm pre-norm residual stream (alpha 0.5), batch 256, He normal, float32")


if __name__ == "__main__":
    main()
