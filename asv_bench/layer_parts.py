"""What one layer of ``fastinit.propagate`` costs, part by part, in GEMM-equivalents.

Run as a plain script::

    python asv_bench/layer_parts.py            # widths 64, 256, 1024; batch 256; float32
    python asv_bench/layer_parts.py 512 --batch 128

Every part runs on one thread (BLAS limited to one) and is timed in thread CPU time,
so the table holds on a busy machine too.  A layer of the kernel is three GEMMs (the
floor ``peers.py`` compares with) plus everything in this table: the weight draw, the
activation pass with its statistics, the backward pass through phi', the column sums,
and the rescaling passes (the weight gradient's GEMM reads dL/dz transposed in place, as the floor's does).  "GEMM" is one
``(batch, width) @ (width, width)`` product; the floor is 3.0 of them, so a kernel at
0.85x the floor may spend 0.53 GEMM on all the rest.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np
from peers import machine_line  # noqa: E402 -- a sibling module: run these as scripts

from fastinit import activations, rng
from fastinit._kernels import blocks, draw, products

HE_STD = 2.0**0.5


@numba.njit(nogil=True)
def _gemm(h, w, z, reps):
    for _ in range(reps):
        np.dot(h, w.T, z)


@numba.njit(nogil=True)
def _draw(w, std, reps):
    for _ in range(reps):
        draw.draw_weights_share(0, 1, w, np.int64(rng.KIND_NORMAL), std, 0.0, False, np.uint64(1), np.uint64(2),
                                np.int64(4), np.int64(0))  # no orthogonal draw: no address


@numba.njit(nogil=True)
def _activate(z, h_out, dphi, code, bounded, acc, corr, reps):
    for _ in range(reps):
        for block in range(blocks.N_BLOCKS):
            blocks.activate_block(block, z, z, h_out, dphi, code, 0.0, False, 1.0, bounded, acc, corr)


@numba.njit(nogil=True)
def _backprop(grad_out, dphi, grad, acc, code, from_output, reps):
    for _ in range(reps):
        for block in range(blocks.N_BLOCKS):
            blocks.backprop_block(block, grad_out, dphi, 1.0, grad, acc, True, code, 0.0, from_output)


@numba.njit(nogil=True)
def _column_sums(x, acc, reps):
    for _ in range(reps):
        blocks.column_sums_rows(x, 0, x.shape[0], acc[0])


@numba.njit(nogil=True)
def _weight_gradient(grad_z, h, w_grad, reps):
    for _ in range(reps):
        products.gemm_columns_t(h, grad_z, w_grad, 0, grad_z.shape[1])


@numba.njit(nogil=True)
def _scale(x, reps):
    for _ in range(reps):
        blocks.scale_rows(x, 0, x.shape[0], 1.0)


def _seconds(kernel, *args, reps):
    """Median thread CPU seconds per repetition of ``kernel(*args, reps)`` over 5 runs."""
    kernel(*args, 1)
    samples = []
    for _ in range(5):
        start = time.thread_time()
        kernel(*args, reps)
        samples.append((time.thread_time() - start) / reps)
    return statistics.median(samples)


def layer_parts(width: int, batch: int) -> list[tuple[str, float]]:
    """``(part, seconds)`` for one float32 layer of ``width`` units on a batch of ``batch``."""
    generator = np.random.default_rng(0)
    z = generator.standard_normal((batch, width), dtype=np.float32)
    out, dphi = np.empty_like(z), np.empty_like(z)
    w = (generator.standard_normal((width, width), dtype=np.float32) * np.float32(HE_STD / width**0.5))
    w_grad = generator.standard_normal((width, width), dtype=np.float32)
    acc = np.zeros((blocks.N_BLOCKS, blocks.N_ACC, width))
    corr = np.zeros(blocks.N_BLOCKS)
    reps = max(3, int(3e8 / (batch * width * width)))
    fast = 4 * reps  # the elementwise parts are quicker: more repetitions for the same noise
    relu, tanh = np.int64(activations.RELU), np.int64(activations.TANH)
    return [
        ("GEMM (batch, width) @ (width, width)", _seconds(_gemm, z, w, out, reps=reps)),
        ("draw W (normal, He scale)", _seconds(_draw, w.copy(), HE_STD / width**0.5, reps=reps)),
        ("activation + statistics, relu", _seconds(_activate, z, out, dphi, relu, False, acc, corr, reps=fast)),
        ("activation + statistics, tanh", _seconds(_activate, z, out, dphi, tanh, True, acc, corr, reps=fast)),
        ("backward through phi' + statistics", _seconds(_backprop, z, dphi, out, acc, relu, False, reps=fast)),
        # relu's phi' read off its output (propagate's path for relu and leaky_relu without a residual)
        ("backward through phi' read off the output, relu", _seconds(_backprop, z, out, out.copy(), acc, relu, True,
                                                                   reps=fast)),
        ("column sums of (batch, width)", _seconds(_column_sums, z, acc, reps=fast)),
        ("column sums of dL/dW (width, width)", _seconds(_column_sums, w_grad, acc, reps=reps)),
        ("dL/dW = dL/dz^T h, BLAS on the transposed operand (one of the three GEMMs)",
         _seconds(_weight_gradient, z, out, w_grad, reps=reps)),
        ("rescale (batch, width)", _seconds(_scale, z, reps=fast)),
    ]


def main(argv=None) -> None:
    """Print the table for each width."""
    parser = argparse.ArgumentParser(prog="python asv_bench/layer_parts.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("widths", nargs="*", type=int, default=[64, 256, 1024], help="layer widths")
    parser.add_argument("--batch", type=int, default=256, help="batch size (default 256)")
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    print(machine_line() + "\n")
    print("| width | part | us per layer | GEMM-equivalents |")
    print("|---:|---|---:|---:|")
    with threadpool_limits(limits=1, user_api="blas"):
        for width in args.widths:
            parts = layer_parts(width, args.batch)
            gemm = parts[0][1]
            for label, seconds in parts:
                print(f"| {width} | {label} | {seconds * 1e6:.1f} | {seconds / gemm:.2f} |")


if __name__ == "__main__":
    main()
