"""fastinit.train against the same training loop in PyTorch (CPU), in one process.

Run as a plain script (PyTorch optional; its rows are skipped without it)::

    python asv_bench/train_peers.py [--case gaussians|digits|prenorm|all] [--repeat 5] [--epochs 3] [--threads 1]
                                    [--width 256] [--batch 256]

``gaussians``: a 20 x 256 ReLU MLP (He-normal weights, identical in both), the
``gaussians`` task with 4096 examples (8 inputs, 4 classes; no held-out set), batch 256
(16 steps per epoch), SGD lr 0.01 momentum 0.9.  Per epoch both loops do the same work: the
steps, then one forward pass over the training set for loss/accuracy and the per-layer
gradient and weight norms.

``digits``: the issue-15 setting, a 6 x 128 ReLU MLP on the 8x8 digits (64 inputs, 10
classes; 1,347 training and 450 held-out images, ``pip install ".[data]"``), batch 32 (43
steps per epoch), Adam lr 1e-3 (``torch.optim.Adam`` with its defaults); per epoch the steps,
then loss/accuracy over the training set *and* the held-out set, and the norms.  Only
fastinit and the torch loops (``--width``/``--batch`` apply to ``gaussians``).  ``torch (steps only)`` drops the evaluation, and ``GEMM floor`` times only
the matrix products an epoch must do -- 3 per layer per step (``z = h W^T``,
``dW = dz^T h``, ``dh = dz W``) plus 1 per layer per evaluation chunk -- through numba's
``np.dot`` (scipy's OpenBLAS, what fastinit calls) and through ``torch.mm``.

``prenorm``: the digits with a 20 x 128 pre-norm residual ReLU stream (``norm="layer",
norm_at="branch", residual=1``: ``h_l = h_{l-1} + relu(W_l LayerNorm(h_{l-1}) + b_l)`` on every
layer whose fan-in equals its fan-out, the first hidden layer plain), the same Adam loop; torch
builds it from ``nn.Linear`` and ``nn.LayerNorm(elementwise_affine=False, eps=1e-5)``.

Every number is the median of ``--repeat`` timed runs, all in this process, the
implementations timed in interleaved rounds (each timed run after an untimed one); the
speed-up is the median of per-round ratios.  BLAS, numba and torch are limited to
``--threads`` threads.  The machine is shared: compare the ratios, which are measured side by side.
"""

from __future__ import annotations

import argparse
import os
import platform

import numpy as np
from _timing import compared, interleaved_seconds  # noqa: E402 -- a sibling module: run these as scripts
from peers import machine_line  # noqa: E402

DEPTH, WIDTH, BATCH, N_TRAIN, LR, MOMENTUM = 20, 256, 256, 4096, 0.01, 0.9
TASK = dict(task="gaussians", task_params={"n_train": N_TRAIN, "n_test": 0})
HE = {"nonlinearity": "relu"}
DIGITS = dict(depth=6, width=128, task="digits", lr=1e-3, batch=32, seed=0, optimizer="adam", init_params=HE)
PRENORM = dict(DIGITS, depth=20, norm="layer", norm_at="branch", residual=1.0)


def fastinit_epoch(epochs):
    from fastinit.train import run

    return lambda: run("he_normal", "relu", depth=DEPTH, width=WIDTH, epochs=epochs, lr=LR, batch=BATCH, seed=0,
                       momentum=MOMENTUM, init_params={"nonlinearity": "relu"}, **TASK)


def gemm_floor_numba(epochs):
    """The products of ``epochs`` epochs through numba's np.dot (the kernels' own BLAS)."""
    from fastinit._jit import jit

    @jit
    def products(h, w, z, dz, dw, dh, steps, chunks, layers):
        for _ in range(steps):
            for _ in range(layers):
                np.dot(h, w.T, z)
                np.dot(dz.T, h, dw)
                np.dot(dz, w, dh)
        for _ in range(chunks):
            for _ in range(layers):
                np.dot(h, w.T, z)

    rng = np.random.default_rng(0)
    h, w, dz = (rng.standard_normal((n, WIDTH)).astype(np.float32) for n in (BATCH, WIDTH, BATCH))
    z, dh, dw = np.empty_like(h), np.empty_like(h), np.empty_like(w)
    steps, chunks = epochs * N_TRAIN // BATCH, epochs * N_TRAIN // BATCH
    return lambda: products(h, w, z, dz, dw, dh, steps, chunks, DEPTH - 1)


def torch_loop(torch, epochs, evaluate=True):
    """The loop a researcher writes: nn.Linear stack, CrossEntropyLoss, optim.SGD, same data and weights."""
    from fastinit.train.run import Plan

    plan = Plan.build("he_normal", "relu", depth=DEPTH, width=WIDTH, epochs=1, lr=LR, batch=BATCH, seed=0, **TASK)
    return _torch_training(torch, plan, lambda params: torch.optim.SGD(params, lr=LR, momentum=MOMENTUM), epochs,
                           evaluate)


def torch_digits(torch, epochs, evaluate=True):
    """The same loop on the digits with ``torch.optim.Adam(lr=1e-3)``, evaluating the held-out set too."""
    from fastinit.train.run import Plan

    plan = Plan.build("he_normal", "relu", epochs=1, **DIGITS)
    return _torch_training(torch, plan, lambda params: torch.optim.Adam(params, lr=DIGITS["lr"]), epochs, evaluate)


def torch_prenorm(torch, epochs, evaluate=True):
    """The digits loop on the pre-norm residual stream of :data:`PRENORM`."""
    from fastinit.train.run import Plan

    plan = Plan.build("he_normal", "relu", epochs=1, **PRENORM)
    return _torch_training(torch, plan, lambda params: torch.optim.Adam(params, lr=PRENORM["lr"]), epochs, evaluate,
                           prenorm_alpha=PRENORM["residual"])


def _prenorm_stream(torch, linears, alpha):
    """``h + alpha relu(W LayerNorm(h) + b)`` on the layers with fan-in = fan-out, ``relu(W h + b)`` on the
    others, the last linear the readout: ``fastinit.train``'s wiring of ``norm_at="branch"``."""
    nn = torch.nn

    class PreNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.linears = nn.ModuleList(linears)
            self.norms = nn.ModuleList(nn.LayerNorm(m.in_features, eps=1e-5, elementwise_affine=False)
                                       if m.in_features == m.out_features else nn.Identity() for m in linears[:-1])

        def forward(self, h):
            for linear, norm in zip(self.linears[:-1], self.norms):
                if linear.in_features == linear.out_features:
                    h = h + alpha * torch.relu(linear(norm(h)))
                else:
                    h = torch.relu(linear(h))
            return self.linears[-1](h)

    return PreNorm()


def _torch_training(torch, plan, make_optimizer, epochs, evaluate, prenorm_alpha=None):
    """``plan``'s net in torch (its weights, zero biases) trained by ``make_optimizer``'s rule; per epoch the
    steps and, when ``evaluate``, the loss and accuracy of every set fastinit measures, and the norms."""
    from fastinit.train import build_network

    net = build_network(plan)
    linears = []
    for l in range(1, net.n_layers + 1):
        w = net.weight(l)
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.zero_()
        linears.append(lin)
    if prenorm_alpha is None:
        layers = [module for lin in linears for module in (lin, torch.nn.ReLU())]
        model = torch.nn.Sequential(*layers[:-1])
    else:
        model = _prenorm_stream(torch, linears, prenorm_alpha)
    x, y = torch.from_numpy(plan.data.x), torch.from_numpy(plan.data.y)
    sets = [(x, y)] + ([(torch.from_numpy(plan.data.x_test), torch.from_numpy(plan.data.y_test))]
                       if plan.data.x_test.shape[0] else [])
    optimizer = make_optimizer(model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    n, batch = x.shape[0], plan.batch

    def train():
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch):
                idx = order[start:start + batch]
                optimizer.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                optimizer.step()
            if evaluate:
                with torch.no_grad():
                    for inputs, labels in sets:
                        total, correct = 0.0, 0
                        for start in range(0, inputs.shape[0], batch):
                            out = model(inputs[start:start + batch])
                            total += loss_fn(out, labels[start:start + batch]).item() * out.shape[0]
                            correct += (out.argmax(1) == labels[start:start + batch]).sum().item()
                    [(m.weight.grad.norm().item(), m.weight.norm().item()) for m in linears]

    return train


def gemm_floor_torch(torch, epochs):
    h, w, dz = (torch.randn(n, WIDTH) for n in (BATCH, WIDTH, BATCH))
    steps = epochs * N_TRAIN // BATCH

    def products():
        for _ in range(steps):
            for _ in range(DEPTH - 1):
                torch.mm(h, w.T)
                torch.mm(dz.T, h)
                torch.mm(dz, w)
        for _ in range(steps):
            for _ in range(DEPTH - 1):
                torch.mm(h, w.T)

    return products


def main(argv=None):
    global WIDTH, BATCH
    parser = argparse.ArgumentParser(prog="python asv_bench/train_peers.py", description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("gaussians", "digits", "prenorm", "all"), default="all")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per timed run (fastinit's run also records epoch 0: one extra evaluation)")
    parser.add_argument("--digits-epochs", type=int, default=20,
                        help="epochs per timed digits run (an epoch is ~0.03 s: amortises fastinit's set-up, "
                             "loading the digits and drawing the weights, which its time includes)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / numba / torch threads")
    parser.add_argument("--width", type=int, default=WIDTH)
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args(argv)
    WIDTH, BATCH = args.width, args.batch

    import numba
    import scipy.linalg.cython_blas  # noqa: F401  load numba's BLAS now, so that threadpool_limits sees it
    from threadpoolctl import threadpool_info, threadpool_limits

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(args.threads)
    print(machine_line())
    with threadpool_limits(args.threads):
        if args.case in ("gaussians", "all"):
            _gaussians_table(args, torch, threadpool_info)
        if args.case in ("digits", "all"):
            _digits_table(args, torch)
        if args.case in ("prenorm", "all"):
            _digits_table(args, torch, prenorm=True)


def _gaussians_table(args, torch, threadpool_info):
    flop_epoch = 2.0 * BATCH * WIDTH * WIDTH * (DEPTH - 1) * (N_TRAIN // BATCH) * 4  # 3 per step + 1 eval
    functions = {"fastinit.train.run (jitted epoch loop)": fastinit_epoch(args.epochs),
                 "GEMM floor, numba np.dot (scipy OpenBLAS)": gemm_floor_numba(args.epochs)}
    if torch is not None:
        functions[f"torch {torch.__version__} loop (same measures)"] = torch_loop(torch, args.epochs)
        functions["torch loop (steps only, no evaluation)"] = torch_loop(torch, args.epochs, evaluate=False)
        functions["GEMM floor, torch.mm"] = gemm_floor_torch(torch, args.epochs)
    rows = compared(interleaved_seconds(functions, args.repeat), functions, next(iter(functions)))
    blas = sorted({(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()
                   if i["user_api"] == "blas"})
    print(f"\n{DEPTH} x {WIDTH} ReLU MLP, batch {BATCH}, {N_TRAIN} examples ({N_TRAIN // BATCH} steps/epoch), SGD, "
          f"{args.threads} thread(s), median of {args.repeat}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; BLAS libraries (api, arch, threads) {blas}\n")
    print("| implementation | s / epoch | epochs / s | GFLOP/s (GEMM work) | fastinit speed-up |")
    print("|---|---:|---:|---:|---:|")
    for label, seconds, ratio in rows:
        per_epoch = seconds / args.epochs
        print(f"| {label} | {per_epoch:.3f} | {1 / per_epoch:.2f} | {flop_epoch / per_epoch / 1e9:.1f} | {ratio:.2f}x |")


def fastinit_digits(epochs, setting=DIGITS):
    from fastinit.train import run

    return lambda: run("he_normal", "relu", epochs=epochs, **setting)


def _digits_table(args, torch, prenorm=False):
    epochs = args.digits_epochs
    setting, torch_case = (PRENORM, torch_prenorm) if prenorm else (DIGITS, torch_digits)
    functions = {"fastinit.train.run (jitted epoch loop, Adam)": fastinit_digits(epochs, setting)}
    if torch is not None:
        functions[f"torch {torch.__version__} loop, optim.Adam (same measures)"] = torch_case(torch, epochs)
        functions["torch loop (steps only, no evaluation)"] = torch_case(torch, epochs, evaluate=False)
    rows = compared(interleaved_seconds(functions, args.repeat), functions, next(iter(functions)))
    net = (f"{setting['depth']} x {setting['width']} pre-norm residual ReLU stream (layer norm on the branch)"
           if prenorm else f"{setting['depth']} x {setting['width']} ReLU MLP")
    print(f"\ndigits: {net}, batch {setting['batch']}, 1347 training + 450 "
          f"held-out images (43 steps/epoch), Adam lr {setting['lr']:g}, {args.threads} thread(s), "
          f"{epochs} epochs per run, median of {args.repeat}\n")
    print("| implementation | s / epoch | epochs / s | fastinit speed-up |")
    print("|---|---:|---:|---:|")
    for label, seconds, ratio in rows:
        per_epoch = seconds / epochs
        print(f"| {label} | {per_epoch:.4f} | {1 / per_epoch:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
