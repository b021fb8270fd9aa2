"""``fastinit.train.run``: train a deep MLP with mini-batch SGD, Adam or AdamW, recording per-epoch measures.

The public wrapper: it validates every input at the boundary, draws the weights from the
registries' streams, generates the task and hands the records a frozen :class:`Plan` makes
(preallocated arrays included) to the jitted epoch loop in :mod:`fastinit.train._kernels`
(no Python per step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fastinit import lsuv
from fastinit._kernels.draw import draw_weights, weight_substream
from fastinit._kernels.norm import standardizer_signatures
from fastinit._kernels.products import one_blas_thread
from fastinit._compile_ahead import compile_in_two
from fastinit._jit import announce_compile
from fastinit._validation import (
    Choice, check_dtype, check_int, check_no_extra, check_norm, check_params, check_real, check_seed, check_stream,
    check_unit_interval,
)
from fastinit.activations import get_activation
from fastinit.initializers import ORTHOGONAL, Draw, get_initializer
from fastinit.train import _kernels as K
from fastinit._kernels.blocks import N_BLOCKS
from fastinit._kernels.records import NORM_AT_CODES
from fastinit.train.tasks import ORDER_STREAM, Dataset, get_task, make_task

# A cold compile of the training kernels for one dtype on the 2-core project machine (announced).
COLD_COMPILE_SECONDS = 20

__all__ = ["run", "COLUMNS", "OPTIONS", "OPTIMIZERS", "DISTINCT_RTOL", "Network", "Plan", "build_network", "optimizer_state"]

# Two rows of [W_l | b_l] count as one unit when no entry differs by more than this
# times the layer's largest |entry|.  Units kept identical by symmetry differ at most by
# float32 rounding in BLAS (~1e-7 relative; a few such roundings per step); rows drawn
# independently differ by O(1) of the scale.  1e-4 sits between with margin both ways.
DISTINCT_RTOL = 1e-4

_GEMM = Choice(("blas", "loops"))
# The update rules, named as torch.optim's classes (lower case).
OPTIMIZERS = {"sgd": K.SGD, "adam": K.ADAM, "adamw": K.ADAMW}
_OPTIMIZER = Choice(OPTIMIZERS)
# torch.optim.Adam's defaults.
DEFAULT_BETAS, DEFAULT_EPS = (0.9, 0.999), 1e-8
DEFAULT_MOMENTUM = 0.9
OPTIONS = ("optimizer", "momentum", "betas", "eps", "weight_decay", "clip_norm", "batchnorm", "norm", "norm_at",
           "residual", "init_params", "activation_params", "task_params", "stream", "dtype", "distinct_rtol", "gemm")

COLUMNS = [
    "epoch", "layer", "kind", "fan_in", "fan_out",
    "loss", "accuracy", "r2", "test_loss", "test_accuracy", "test_r2", "batch_loss", "clipped_steps", "global_grad_norm", "diverged",
    "grad_norm", "grad_norm_mean", "bias_grad_norm", "weight_norm", "bias_norm", "update_norm", "distinct_units",
]


@dataclass(frozen=True, eq=False)
class Network:
    """A net's parameters in the kernels' flat layout (weights drawn, biases zero).

    ``W[w_off[k]:w_off[k] + widths[k+1] * widths[k]]`` is layer ``k + 1``'s weight matrix
    (row-major, PyTorch ``(fan_out, fan_in)``); :meth:`weight` and :meth:`bias` return views.
    ``config`` is the :class:`fastinit.train._kernels.Net` record the kernels read.
    """

    config: K.Net
    W: np.ndarray
    B: np.ndarray
    lsuv: object = None  # fastinit.lsuv.Calibration when init is "lsuv"

    @property
    def widths(self) -> np.ndarray:
        """Units of the input and of each layer, int64 ``(n_layers + 1,)``."""
        return self.config.widths

    @property
    def w_off(self) -> np.ndarray:
        """Offsets of each layer's weights in ``W`` (and one past the last)."""
        return self.config.w_off

    @property
    def b_off(self) -> np.ndarray:
        """Offsets of each layer's bias in ``B`` (and one past the last)."""
        return self.config.b_off

    @property
    def alpha(self) -> np.ndarray:
        """Residual branch scale of each layer (0: none)."""
        return self.config.alpha

    def weight(self, layer: int) -> np.ndarray:
        """View of layer ``layer``'s weights (1-based; ``depth + 1`` is the readout)."""
        k = layer - 1
        n_in, n_out = int(self.widths[k]), int(self.widths[k + 1])
        return self.W[self.w_off[k]: self.w_off[k] + n_in * n_out].reshape(n_out, n_in)

    def bias(self, layer: int) -> np.ndarray:
        """View of layer ``layer``'s bias (1-based)."""
        k = layer - 1
        return self.B[self.b_off[k]: self.b_off[k] + int(self.widths[k + 1])]

    @property
    def n_layers(self) -> int:
        """Linear layers, readout included."""
        return self.widths.size - 1

    def gradients(self, x, labels=None, targets=None):
        """Mean-loss gradients on one batch ``x`` (a test and analysis hook).

        Returns ``(loss, gW, gB)`` with ``gW``, ``gB`` in the flat layout.
        """
        labels, targets = _targets(x.shape[0], labels, targets, self.W.dtype)
        data = _data(np.ascontiguousarray(x, dtype=self.W.dtype), labels, targets, 1.0)
        bufs = _buffers(self.config, x.shape[0], self.W, targets.shape[1])
        loss = K.batch_gradients(self.config, data, self.W, self.B, bufs)
        return loss, bufs.gW, bufs.gB

    def step(self, x, labels=None, targets=None, *, lr, momentum=0.0, clip_norm=None, velocity=None):
        """One SGD step on batch ``x`` in place; returns ``(loss, norm before clipping, velocity)``."""
        VW, VB = velocity if velocity is not None else (np.zeros_like(self.W), np.zeros_like(self.B))
        opt = optimizer_state("sgd", self.W, self.B, lr=lr, momentum=momentum, clip_norm=clip_norm, moments=(VW, VB))
        loss, norm = self.update(x, labels, targets, opt)
        return loss, norm, (VW, VB)

    def update(self, x, labels, targets, optimizer: K.Optimizer):
        """One update of ``optimizer`` (:func:`optimizer_state`) on batch ``x`` in place (a test hook).

        Returns ``(loss, norm before clipping)``; the optimizer's buffers and step count advance.
        """
        loss, gW, gB = self.gradients(x, labels, targets)
        norm, _ = K.optimizer_step(optimizer, self.W, self.B, gW, gB)
        return loss, norm


def optimizer_state(optimizer, W, B, *, lr, momentum=0.0, betas=DEFAULT_BETAS, eps=DEFAULT_EPS, weight_decay=0.0,
                    clip_norm=None, moments=None) -> K.Optimizer:
    """The :class:`~fastinit.train._kernels.Optimizer` record of a fresh optimizer for parameters like ``W``, ``B``.

    Parameters
    ----------
    optimizer : {"sgd", "adam", "adamw"}
        The update rule (validated values: :meth:`Plan.build` checks them).
    W, B : numpy.ndarray
        The flat weights and biases (the buffers take their size and dtype).
    lr, momentum, betas, eps, weight_decay, clip_norm
        As :func:`run`.
    moments : (numpy.ndarray, numpy.ndarray), optional
        The first-moment (momentum) buffers to use, e.g. to carry SGD's velocity across
        calls; zero buffers by default (torch's fresh state).

    Returns
    -------
    fastinit.train._kernels.Optimizer
    """
    kind = OPTIMIZERS[optimizer]
    m_W, m_B = moments if moments is not None else (np.zeros_like(W), np.zeros_like(B))
    second = kind != K.SGD
    return K.Optimizer(
        kind=kind, lr=float(lr), momentum=float(momentum), beta1=float(betas[0]), beta2=float(betas[1]), eps=float(eps),
        weight_decay=float(weight_decay), max_norm=float(clip_norm or 0.0), steps=np.zeros(1, dtype=np.int64),
        m_W=m_W, m_B=m_B, v_W=np.zeros_like(W) if second else W[:0].copy(),
        v_B=np.zeros_like(B) if second else B[:0].copy())


def _targets(n, labels, targets, dtype):
    labels = np.zeros(n, dtype=np.int64) if labels is None else np.ascontiguousarray(labels, dtype=np.int64)
    targets = np.zeros((n, 1), dtype=dtype) if targets is None else np.ascontiguousarray(targets, dtype=dtype)
    return labels, targets


def _data(x, labels, targets, sst) -> K.Data:
    return K.Data(x, labels, targets, np.arange(x.shape[0], dtype=np.int64), float(sst))


def _buffers(config: K.Net, rows: int, W: np.ndarray, n_targets: int) -> K.Buffers:
    """Every array a step writes, for batches of up to ``rows`` rows of a net with weights like ``W``."""
    widths = config.widths
    n_layers, widest = widths.size - 1, int(widths.max())
    size, dtype = rows * widest, W.dtype
    n_b = int(config.b_off[-1])

    def flat(n):
        return np.empty(n, dtype=dtype)

    normed = config.batchnorm or config.layernorm
    # With a norm, u[k] keeps what its backward needs besides z and h (Norm(z), Norm(h_in) or
    # the residual sum: see _kernels._sites); the backward recomputes the per-row (layer norm)
    # or per-column (batch norm) mean and inverse std from it, as the shared kernels do.
    return K.Buffers(
        z=np.empty((n_layers, size), dtype=dtype), u=np.empty((n_layers if normed else 1, size), dtype=dtype),
        d=np.empty((n_layers, size), dtype=dtype), h=np.empty((n_layers, size), dtype=dtype),
        g_top=flat(size), g_h=flat(size), g_in=flat(size), g_a=flat(size), g_z=flat(size if normed else 0),
        acc=np.zeros((N_BLOCKS, 2, widest)), labels=np.zeros(rows, dtype=np.int64),
        targets=np.zeros((rows, n_targets), dtype=dtype), gW=flat(W.size), gB=flat(n_b),
        w_start=flat(W.size), norm_sum=np.zeros(n_layers), pending=np.zeros(1),
    )


def run(init, activation, *, depth, width, task="spirals", epochs=10, lr=0.01, batch=64, seed=0, **options) -> pd.DataFrame:
    """Train a deep MLP on a built-in task with mini-batch SGD, Adam or AdamW; one row per (epoch, layer).

    The net: the task's inputs -> ``depth`` hidden layers of ``width`` units
    (``z = h W^T + b``, optional norm, ``h = phi(z)``, optional residual) -> a
    linear readout to the task's outputs (never normalised).  Every weight matrix, readout included, is
    drawn with ``init`` from the cell's stream (layer ``l`` on substream
    ``weight_substream(l) = 2 l + 2``, exactly as :func:`fastinit.propagate` draws
    it); biases start at zero and are trained.  The update is ``torch.optim``'s, step
    for step: SGD with momentum (``v = momentum v + g``, ``w -= lr v``), Adam or AdamW
    (bias-corrected moments, not amsgrad); optional clipping of the global gradient norm
    first (``torch.nn.utils.clip_grad_norm_``: scale all gradients by
    ``clip_norm / (norm + 1e-6)`` when that is < 1), as a torch user clips before
    ``optimizer.step()``.  The data and each epoch's mini-batch order come from ``seed``
    alone (not ``stream``), so initializers compared at one seed see the same batches;
    the last mini-batch of an epoch may be smaller (PyTorch ``drop_last=False``).

    Parameters
    ----------
    init : str
        Initializer from ``fastinit.INITIALIZERS`` (parameters via ``init_params``).
    activation : str
        Activation from ``fastinit.ACTIVATIONS`` (parameter via ``activation_params``).
    depth : int
        Hidden layers, >= 1.
    width : int
        Units per hidden layer, >= 1.
    task : {"teacher", "spirals", "gaussians", "digits"}, default "spirals"
        Built-in task (see :mod:`fastinit.train.tasks`); parameters via ``task_params``.
        ``"digits"`` (sklearn's 8x8 handwritten digits) needs ``pip install "fastinit[data]"``.
    epochs : int, default 10
        Passes over the training set, >= 1.
    lr : float, default 0.01
        Learning rate, > 0.
    batch : int, default 64
        Mini-batch size, >= 1 (>= 2 with batch norm; layer norm allows one example).
    seed : int, default 0
        Root seed of the data, the mini-batch order and (with ``stream``) the weights.
    **options
        optimizer : {"sgd", "adam", "adamw"}, default "sgd"
            ``torch.optim.SGD``, ``Adam`` (``weight_decay`` is an L2 term added to the
            gradient) or ``AdamW`` (decoupled: ``p *= 1 - lr weight_decay`` before the step).
        momentum : float, default 0.9
            SGD momentum in [0, 1) (SGD only: Adam's is ``betas[0]``).
        betas : (float, float), default (0.9, 0.999)
            Adam's decay rates of the first and second moments, each in [0, 1) (Adam/AdamW only).
        eps : float, default 1e-8
            Adam's denominator term, > 0 (Adam/AdamW only).
        weight_decay : float, default 0
            >= 0; applies to every parameter, biases included, as torch's default parameter group.
        clip_norm : float, optional
            Clip the global gradient norm to this (> 0) before the update; default no clipping.
        norm : {None, "batch", "layer"}, default None
            Normalisation without affine parameters, biased variance, eps 1e-5 (PyTorch's
            ``BatchNorm1d(affine=False, track_running_stats=False)`` in training mode and
            ``LayerNorm(elementwise_affine=False)``): ``"batch"`` each unit over the
            mini-batch (training-mode statistics everywhere, also when evaluating, in
            chunks of ``batch``), ``"layer"`` each example over its units.
        norm_at : {"preact", "branch", "output"}, default "preact"
            Where the norm sits.  ``"preact"``: ``h_l = phi(Norm(z_l))`` (``+ h_{l-1}``,
            ``alpha`` on the branch, on a residual layer) on every hidden layer.
            ``"branch"`` (pre-norm residual) ``h_l = h_{l-1} + alpha phi(W_l Norm(h_{l-1}) + b_l)``
            and ``"output"`` (post-norm residual) ``h_l = Norm(h_{l-1} + alpha phi(z_l))``
            are part of a residual block: they need ``residual`` and sit on the residual
            layers; a hidden layer without a skip path (see ``residual``) is ``phi(z_l)``.
        batchnorm : bool, default False
            ``True`` is ``norm="batch", norm_at="preact"`` (the same bits); with a
            conflicting ``norm`` it is an error.
        residual : float, optional
            Branch scale ``alpha``: ``h_l = h_{l-1} + alpha phi(z_l)`` on every hidden
            layer whose fan-in equals its fan-out (all but the first unless the task's
            input dimension equals ``width``).
        init_params, activation_params, task_params : dict, optional
            Parameters of the initializer (``{"std": 2.0}``), activation
            (``{"slope": 0.2}``) and task (``{"n_train": 1024}``).
        stream : int, default 0
            64-bit stream id of the weights (the sweep derives one per cell).
        dtype : {"float32", "float64"}, default "float32"
            The network's dtype; losses and norms accumulate in float64.
        distinct_rtol : float, default 1e-4
            Relative tolerance of ``distinct_units`` (see :data:`DISTINCT_RTOL`).
        gemm : {"blas", "loops"}, default "blas"
            Matrix products through BLAS (fast), or plain jitted loops that round every
            output position the same way (slow).  Use "loops" to study exact symmetry
            (zero/constant init) in float32: OpenBLAS's sgemm rounds some column
            positions of its tiles differently (1 ulp), which breaks identical units at
            the 1e-7 level, and unstable dynamics (e.g. tanh) can grow that to O(1).
            float64 BLAS (dgemm) keeps identical units identical.

    Returns
    -------
    pandas.DataFrame
        **Long format**: ``(epochs + 1) * (depth + 1)`` rows, one per epoch
        ``0 .. epochs`` (0 = at initialisation, before any update) and layer
        ``1 .. depth + 1`` (``kind`` "hidden" or "readout"), epoch-level columns repeated
        on each layer's row.  Every measure describes the state *after* the epoch:

        * ``loss`` -- mean training loss over the whole training set, forward only, in
          chunks of ``batch`` in data-set order; ``accuracy`` (classification, else NaN)
          and ``r2`` = 1 - SSE/SST over all outputs (regression, else NaN);
        * ``test_loss``, ``test_accuracy``, ``test_r2`` -- the same on the task's held-out
          set (never trained on; NaN when the task has no held-out examples, ``n_test=0``);
        * ``batch_loss`` -- mean of the mini-batch losses seen during the epoch (NaN at 0);
        * ``grad_norm`` (||dL/dW_l||_F), ``bias_grad_norm``, ``global_grad_norm`` (all
          parameters) -- the gradient at the epoch's final weights on the next epoch's
          first mini-batch, i.e. the gradient the next step uses, before clipping
          (epoch 0: the first step's gradient);
        * ``grad_norm_mean`` -- mean over the epoch's steps of ||dL/dW_l||_F before
          clipping (NaN at 0); ``clipped_steps`` -- steps whose gradient was scaled down;
        * ``weight_norm`` (||W_l||_F), ``bias_norm``, ``update_norm``
          (||W_l(epoch) - W_l(epoch - 1)||_F, NaN at 0);
        * ``distinct_units`` -- rows of ``[W_l | b_l]`` differing by more than
          ``distinct_rtol`` times the layer's largest |entry| (1 for a layer whose units
          are all identical, ``width`` when symmetry is fully broken; NaN if non-finite);
        * ``diverged`` -- True from the first epoch whose training loss or weights are not
          finite; training stops there and later epochs' measures are NaN.

        ``attrs``: ``diverged`` (bool), ``diverged_epoch`` (int or None), ``steps_per_epoch``,
        ``n_train``, ``n_test`` and the resolved parameters (``momentum`` None for Adam,
        ``betas``/``eps`` None for SGD).

    Raises
    ------
    ValueError, TypeError
        For any bad input; the one-line message names the parameter, the value and the fix.

    Examples
    --------
    >>> df = run("he_normal", "relu", depth=4, width=32, task="gaussians", epochs=3, lr=0.05, batch=64,
    ...          init_params={"nonlinearity": "relu"})
    >>> df.groupby("epoch").loss.first().is_monotonic_decreasing
    True
    """
    plan = Plan.build(init, activation, depth=depth, width=width, task=task, epochs=epochs, lr=lr, batch=batch,
                      seed=seed, **options)
    net = build_network(plan)
    args = _train_args(plan, net)
    net_config, sched, opt, data, _, W, B, bufs, epoch_rec, layer_rec = args
    order = data.order  # any int64 order: the types are what matter
    epoch_args = (np.int64(0), net_config, sched, opt, data, W, B, bufs, order, order, epoch_rec, layer_rec)
    if announce_compile(K.train_epoch, epoch_args, f"the training kernels for {plan.dtype.name}", COLD_COMPILE_SECONDS,
                        plan.dtype):
        kernels = K.signatures(*args)
        compile_in_two(_parent_compile_stages(kernels, plan.dtype), "fastinit.train.run:_child_compile_stages",
                       plan.dtype.name)
    last = K.train(*args)
    return _frame(plan, net, epoch_rec, layer_rec, last)


def _parent_compile_stages(kernels, dtype):
    """This process's side of a cold compile (:mod:`fastinit._compile_ahead`): the small kernels both passes
    call and the batch copy and the loss the epoch calls, then the forward pass, then the epoch.

    Parameters
    ----------
    kernels : dict
        :func:`fastinit.train._kernels.signatures` of the run.
    dtype : numpy.dtype
        The run's dtype.

    Returns
    -------
    list of list of (dispatcher, tuple)
    """
    small = (kernels["view"], kernels["gather"], kernels["loss_and_grad"])
    return [[*small, *standardizer_signatures(dtype)], [kernels["forward"]], [kernels["train_epoch"]]]


def _child_compile_stages(dtype_name: str):
    """The child's side of a cold compile (:mod:`fastinit._compile_ahead`): the distinct-units count while this
    process compiles the small kernels both passes call, then the backward pass and the update, then the epoch's
    records (forward only: it links none of the backward pass).

    Parameters
    ----------
    dtype_name : str
        ``"float32"`` or ``"float64"``.

    Returns
    -------
    list of list of (dispatcher, tuple)
    """
    kernels = _sample_signatures(dtype_name)
    return [[kernels["distinct_rows"]], [kernels["backward"], kernels["optimizer_step"]], [kernels["record_state"]]]


def _sample_signatures(dtype_name: str):
    """:func:`fastinit.train._kernels.signatures` of a small run in ``dtype_name``: the types of every run's in
    that dtype.

    Parameters
    ----------
    dtype_name : str
        ``"float32"`` or ``"float64"``.

    Returns
    -------
    dict
    """
    plan = Plan.build("he_normal", "relu", depth=2, width=8, task="teacher", epochs=1, dtype=dtype_name)
    return K.signatures(*_train_args(plan, build_network(plan)))


def _train_args(plan, net):
    """The arguments of :func:`fastinit.train._kernels.train` for ``plan`` and its network ``net``: the records,
    the data, the parameters, the buffers and the (NaN) epoch and layer records it fills.

    Parameters
    ----------
    plan : Plan
    net : Network

    Returns
    -------
    tuple
        ``(net config, schedule, optimizer, data, test, W, B, buffers, epoch records, layer records)``.
    """
    data = plan.dataset()
    epoch_rec = np.full((plan.epochs + 1, K.N_EPOCH_COLS), np.nan)
    layer_rec = np.full((plan.epochs + 1, net.n_layers, K.N_LAYER_COLS), np.nan)
    return (net.config, plan.schedule(), plan.optimizer_state(net), data, plan.dataset(held_out=True), net.W, net.B,
            _buffers(net.config, plan.batch, net.W, data.targets.shape[1]), epoch_rec, layer_rec)


@dataclass(frozen=True, eq=False)
class Plan:
    """A validated :func:`run`: every resolved parameter, the task's data and the layers' draws.

    Build it with :meth:`build` (the same signature as :func:`run`); it makes the records
    the kernels take (:meth:`net`, :meth:`schedule`, :meth:`dataset`), and
    :func:`build_network` draws its weights.  Immutable, so one plan can make any number
    of networks with the same bits.
    """

    init: str
    activation: str
    task: str
    depth: int
    width: int
    epochs: int
    lr: float
    batch: int
    seed: int
    dtype: np.dtype
    optimizer: str
    momentum: float | None  # SGD only
    betas: tuple | None  # Adam / AdamW only
    eps: float | None  # Adam / AdamW only
    weight_decay: float
    clip_norm: float | None
    norm: str | None  # "batch", "layer" or None
    norm_at: str  # "preact", "branch" or "output"
    residual: float | None
    stream: int
    distinct_rtol: float
    gemm: str
    init_params: dict
    activation_param: float
    task_params: dict
    data: Dataset  # the task's training and held-out sets
    widths: np.ndarray  # int64: inputs, depth x width, outputs
    draws: tuple  # each layer's initializers.Draw (kind and parameters from its fans)
    code: int  # activation code

    @classmethod
    def build(cls, init, activation, *, depth, width, task="spirals", epochs=10, lr=0.01, batch=64, seed=0,
              **options) -> "Plan":
        """Validate everything at the boundary (the kernels never validate).

        Parameters
        ----------
        init, activation, depth, width, task, epochs, lr, batch, seed, **options
            As :func:`run`.

        Returns
        -------
        Plan
            The resolved parameters, the task's data and each layer's draw.

        Raises
        ------
        ValueError, TypeError
            For any bad input; the one-line message names the parameter, the value and the fix.
        """
        check_no_extra("train.run()", {k: v for k, v in options.items() if k not in OPTIONS}, OPTIONS)
        entry = get_initializer(init)
        act = get_activation(activation)
        task_entry = get_task(task)
        init_params = entry.resolve(**check_params("init_params", options.get("init_params")))
        param = act.resolve_param(**check_params("activation_params", options.get("activation_params")))
        task_params = task_entry.resolve(**check_params("task_params", options.get("task_params")))
        depth = check_int("depth", depth, minimum=1)
        width = check_int("width", width, minimum=1)
        epochs = check_int("epochs", epochs, minimum=1, maximum=2**31 - 3)
        lr = check_real("lr", lr, minimum=0.0, exclusive_minimum=True)
        seed = check_seed(seed)
        dtype = check_dtype(options.get("dtype", "float32"))
        optimizer, momentum, betas, eps, weight_decay = _check_optimizer(options)
        clip_norm = options.get("clip_norm")
        if clip_norm is not None:
            clip_norm = check_real("clip_norm", clip_norm, minimum=0.0, exclusive_minimum=True)
        batch = check_int("batch", batch, minimum=1)
        residual = options.get("residual")
        if residual is not None:
            residual = check_real("residual", residual, minimum=0.0, exclusive_minimum=True)
        norm, norm_at = check_norm(options, batch, residual)
        stream = check_stream(options.get("stream", 0))
        distinct_rtol = check_real("distinct_rtol", options.get("distinct_rtol", DISTINCT_RTOL), minimum=0.0)
        gemm = _GEMM.check("gemm", options.get("gemm", "blas"))
        data = make_task(task_entry.name, seed=seed, dtype=dtype, **task_params)
        widths = np.array([data.n_inputs] + [width] * depth + [data.n_outputs], dtype=np.int64)
        draws = [entry.draw(int(widths[k]), int(widths[k + 1]), **init_params) for k in range(depth + 1)]
        return cls(
            init=entry.name, activation=act.name, task=task_entry.name, depth=depth, width=width, epochs=epochs, lr=lr,
            batch=batch, seed=seed, dtype=dtype, optimizer=optimizer, momentum=momentum, betas=betas, eps=eps,
            weight_decay=weight_decay, clip_norm=clip_norm, norm=norm, norm_at=norm_at,
            residual=residual, stream=stream, distinct_rtol=distinct_rtol, gemm=gemm, init_params=init_params,
            activation_param=param, task_params=task_params, data=data, widths=widths, draws=tuple(draws),
            code=act.code)

    @property
    def batchnorm(self) -> bool:
        """Batch norm before phi (``batchnorm=True``), as the older callers know it."""
        return self.norm == "batch" and self.norm_at == "preact"

    def net(self) -> K.Net:
        """The record the layer kernels read.

        Returns
        -------
        fastinit.train._kernels.Net
            Widths and offsets of the flat layout, residual scales (0 where fan-in and
            fan-out differ), activation code and parameter, the norm and its site, loss, products.
        """
        widths = self.widths
        n_layers = widths.size - 1
        w_off = np.concatenate([[0], np.cumsum(widths[1:] * widths[:-1])]).astype(np.int64)
        b_off = np.concatenate([[0], np.cumsum(widths[1:])]).astype(np.int64)
        alpha = np.zeros(n_layers)
        if self.residual is not None:
            for k in range(n_layers - 1):
                if widths[k] == widths[k + 1]:
                    alpha[k] = self.residual
        return K.Net(widths=widths, w_off=w_off, b_off=b_off, alpha=alpha, code=int(self.code),
                     param=float(self.activation_param), batchnorm=self.norm == "batch",
                     layernorm=self.norm == "layer", norm_at=int(NORM_AT_CODES[self.norm_at]),
                     loss=int(self.data.loss),  # the tasks use the kernels' loss codes
                     loops=self.gemm == "loops")

    def schedule(self) -> K.Schedule:
        """The record of the loop.

        Returns
        -------
        fastinit.train._kernels.Schedule
            Batch, epochs, the order's seed and stream, the ``distinct_units`` tolerance.
        """
        return K.Schedule(batch=int(self.batch), epochs=int(self.epochs), seed=np.uint64(self.seed),
                          order_stream=np.uint64(ORDER_STREAM), rtol=float(self.distinct_rtol))

    def optimizer_state(self, net: Network) -> K.Optimizer:
        """A fresh optimizer record for ``net``'s parameters (zero moments, step 0).

        Parameters
        ----------
        net : Network
            The parameters the buffers mirror (:func:`build_network`).

        Returns
        -------
        fastinit.train._kernels.Optimizer
            Kind, hyper-parameters (momentum 0.9 / torch's betas and eps where the rule
            ignores them: never read), clipping norm (0: none), step count and buffers.
        """
        return optimizer_state(self.optimizer, net.W, net.B, lr=self.lr,
                               momentum=DEFAULT_MOMENTUM if self.momentum is None else self.momentum,
                               betas=self.betas or DEFAULT_BETAS, eps=self.eps or DEFAULT_EPS,
                               weight_decay=self.weight_decay, clip_norm=self.clip_norm)

    def dataset(self, held_out: bool = False) -> K.Data:
        """The record of the task's training set, or of its held-out set.

        Parameters
        ----------
        held_out : bool, default False
            The held-out set (evaluated every epoch, never trained on) instead.

        Returns
        -------
        fastinit.train._kernels.Data
            Inputs, labels (classification) or targets (regression) with a placeholder
            for the other, the data-set order and the targets' total sum of squares.
        """
        data = self.data
        x, y = (data.x_test, data.y_test) if held_out else (data.x, data.y)
        if data.classification:
            labels, targets = y, np.zeros((y.shape[0], 1), dtype=self.dtype)
        else:
            labels, targets = np.zeros(y.shape[0], dtype=np.int64), y
        sst = float(((targets.astype(np.float64) - targets.mean(axis=0, dtype=np.float64)) ** 2).sum()) \
            if y.shape[0] else 0.0
        return _data(x, labels, targets, sst or 1.0)


def build_network(plan: Plan) -> Network:
    """Allocate the flat parameter arrays of ``plan``'s net and draw every layer's weights from its substream.

    Parameters
    ----------
    plan : Plan
        A validated run (:meth:`Plan.build`).

    Returns
    -------
    Network
        Weights drawn as :func:`fastinit.propagate` draws them (layer ``l`` on substream
        ``weight_substream(l)``), biases zero.
    """
    config, dtype = plan.net(), plan.dtype
    widths, w_off = config.widths, config.w_off
    W = np.empty(int(w_off[-1]), dtype=dtype)
    B = np.zeros(int(config.b_off[-1]), dtype=dtype)
    draws = plan.draws
    calibration = None
    if plan.init == "lsuv":
        with one_blas_thread():  # the gains' bits must not depend on the machine's core count
            calibration = _lsuv_gains(plan, config)
    if calibration is not None:
        draws = tuple(Draw(ORTHOGONAL, g) for g in calibration.scales)
    for k, draw in enumerate(draws):
        view = W[w_off[k]: w_off[k + 1]].reshape(int(widths[k + 1]), int(widths[k]))
        draw_weights(view, draw.kind, float(draw.a), float(draw.b), np.uint64(plan.seed),
                     np.uint64(plan.stream), np.int64(weight_substream(k + 1)))
    return Network(config, W, B, calibration)


def _lsuv_gains(plan: Plan, config: K.Net) -> lsuv.Calibration:
    """LSUV's gain for every layer, readout included, on the first mini-batch training sees.

    Each layer's orthogonal base (the weights its substream draws with gain 1) is rescaled
    until its pre-activations on that batch have variance within ``tol`` of 1; biases are 0
    at initialisation.  The net is then drawn with these gains, as propagate draws them.
    A norm sits where the kernels put it (:func:`fastinit.train._kernels._sites`): before
    phi on every hidden layer, or on the residual layers' branch input or output.
    """
    tol, max_iter = plan.init_params["tol"], plan.init_params["max_iter"]
    order = K.permutation(plan.data.x.shape[0], plan.seed, ORDER_STREAM, 1)  # epoch 1's order
    h = plan.data.x[order[: plan.batch]].astype(np.float64)
    widths, n_layers = config.widths, config.widths.size - 1
    scales, iterations, variances = [], [], []
    for k in range(n_layers):
        base = np.empty((int(widths[k + 1]), int(widths[k])))
        draw_weights(base, ORTHOGONAL, 1.0, 0.0, np.uint64(plan.seed), np.uint64(plan.stream),
                     np.int64(weight_substream(k + 1)))
        hidden, alpha = k < n_layers - 1, float(config.alpha[k]) or None
        norm = plan.norm if hidden and (plan.norm_at == "preact" or alpha) else None
        product = lsuv.gemm_input(h, norm=norm, norm_at=plan.norm_at) @ base.T
        gain, count, variance = lsuv.unit_variance_gain(product, 0.0, tol, max_iter, k + 1)
        scales.append(gain)
        iterations.append(count)
        variances.append(variance)
        if hidden:  # the readout has no activation after it
            h = lsuv.layer_output(config.code, config.param, h, gain * product, alpha=alpha, norm=norm,
                                  norm_at=plan.norm_at)
    return lsuv.Calibration(tuple(scales), tuple(iterations), tuple(variances))


def _frame(plan, net, epoch_rec, layer_rec, last) -> pd.DataFrame:
    n_epochs, n_layers = layer_rec.shape[0], layer_rec.shape[1]
    diverged_epoch = None
    if not (math.isfinite(epoch_rec[last, K.LOSS]) and np.isfinite(layer_rec[last, :, K.WEIGHT_NORM]).all()):
        diverged_epoch = int(last)
    epoch = np.repeat(np.arange(n_epochs), n_layers)
    widths = net.widths
    per_epoch = {name: np.repeat(epoch_rec[:, col], n_layers) for name, col in (
        ("loss", K.LOSS), ("accuracy", K.ACCURACY), ("r2", K.R2), ("test_loss", K.TEST_LOSS),
        ("test_accuracy", K.TEST_ACCURACY), ("test_r2", K.TEST_R2), ("batch_loss", K.BATCH_LOSS),
        ("clipped_steps", K.CLIPPED_STEPS), ("global_grad_norm", K.GLOBAL_GRAD_NORM))}
    per_layer = {name: layer_rec[:, :, col].reshape(-1) for name, col in (
        ("grad_norm", K.GRAD_NORM), ("grad_norm_mean", K.GRAD_NORM_MEAN), ("bias_grad_norm", K.BIAS_GRAD_NORM),
        ("weight_norm", K.WEIGHT_NORM), ("bias_norm", K.BIAS_NORM), ("update_norm", K.UPDATE_NORM),
        ("distinct_units", K.DISTINCT))}
    layer = np.tile(np.arange(1, n_layers + 1), n_epochs)
    frame = pd.DataFrame({
        "epoch": epoch,
        "layer": layer,
        "kind": np.where(layer == n_layers, "readout", "hidden"),
        "fan_in": widths[layer - 1],
        "fan_out": widths[layer],
        **per_epoch,
        "diverged": (epoch >= diverged_epoch) if diverged_epoch is not None else np.zeros(epoch.size, dtype=bool),
        **per_layer,
    })[COLUMNS]
    frame.attrs.update({
        "diverged": diverged_epoch is not None, "diverged_epoch": diverged_epoch,
        "steps_per_epoch": -(-plan.data.x.shape[0] // plan.batch),
        "n_train": int(plan.data.x.shape[0]), "n_test": int(plan.data.x_test.shape[0]),
        **{key: getattr(plan, key) for key in ("init", "activation", "task", "depth", "width", "epochs", "lr", "batch", "seed",
                                      "optimizer", "momentum", "betas", "eps", "weight_decay", "clip_norm", "batchnorm",
                                      "norm", "norm_at", "residual", "stream", "distinct_rtol", "gemm")},
        "dtype": plan.dtype.name, "init_params": dict(plan.init_params), "task_params": dict(plan.task_params),
        "activation_param": plan.activation_param,
    })
    if net.lsuv is not None:
        frame.attrs.update({"lsuv_scales": list(net.lsuv.scales), "lsuv_iterations": list(net.lsuv.iterations)})
    return frame


def _check_optimizer(options) -> tuple:
    """``(optimizer, momentum, betas, eps, weight_decay)`` from ``run``'s options.

    A hyper-parameter of the other rule is an error rather than silently unused
    (``momentum=0.5`` with Adam would do nothing); the rule's own ones get torch's
    defaults, the others ``None``.
    """
    optimizer = _OPTIMIZER.check("optimizer", options.get("optimizer", "sgd"))
    weight_decay = check_real("weight_decay", options.get("weight_decay", 0.0), minimum=0.0)
    if optimizer == "sgd":
        for name in ("betas", "eps"):
            if options.get(name) is not None:
                raise ValueError(f"{name} applies to optimizer='adam' or 'adamw', got {name}={options[name]!r} with "
                                 "optimizer='sgd'; drop it or choose an Adam optimizer")
        momentum = check_unit_interval("momentum", options.get("momentum", DEFAULT_MOMENTUM),
                                       "use e.g. 0.9, or 0 for plain SGD")
        return optimizer, momentum, None, None, weight_decay
    if options.get("momentum") is not None:
        raise ValueError(f"momentum applies to optimizer='sgd', got momentum={options['momentum']!r} with "
                         f"optimizer={optimizer!r}; Adam's momentum is betas[0]")
    betas = options.get("betas", DEFAULT_BETAS)
    if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2) of reals in [0, 1), got {betas!r}; e.g. (0.9, 0.999)")
    betas = tuple(check_unit_interval(f"betas[{i}]", beta, "torch's default is betas=(0.9, 0.999)")
                  for i, beta in enumerate(betas))
    eps = check_real("eps", options.get("eps", DEFAULT_EPS), minimum=0.0, exclusive_minimum=True)
    return optimizer, None, betas, eps, weight_decay
