"""``fastinit.propagate``: per-layer statistics of a deep dense net, forward and backward.

Layer ``l`` computes ``z_l = h_{l-1} W_l^T (+ b_l)`` and ``h_l = phi(z_l)``; ``h_0`` is an
i.i.d. N(0, input_std^2) batch and the backward pass starts from an i.i.d. N(0, 1)
readout gradient dL/dh_L (a random linear readout), through the same weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fastinit._kernels import blocks, draw, layer, norm, orthogonal, products, records, walk
from fastinit import _spare, lsuv, rng
from fastinit._compile_ahead import compile_in_two
from fastinit._jit import announce_compile
from fastinit._team import team_size
from fastinit._validation import (
    NORM_SITES, NORMS, Choice, check_dtype, check_int, check_no_extra, check_norm, check_real, check_seed, check_stream,
)
from fastinit.activations import get_activation
from fastinit.initializers import ORTHOGONAL, get_initializer

__all__ = ["propagate", "Plan", "COLUMNS", "DEFAULT_MEMORY_BUDGET", "NORMS", "NORM_SITES"]

COLUMNS = [
    "layer", "width", "fwd_mean", "fwd_var", "log10_fwd_var", "act_second_moment", "log10_act_second_moment",
    "grad_var", "log10_grad_var", "wgrad_var", "log10_wgrad_var", "dead_frac", "saturated_frac", "nonfinite", "corr",
    "fwd_nonfinite", "grad_nonfinite",
]
# Bytes the stored segment (inputs, pre-activations, derivatives, weights) may use;
# deeper nets are recomputed from checkpoints in the backward pass.
DEFAULT_MEMORY_BUDGET = 384 * 2**20
# Rows per lane (see _lanes).  A lane's GEMMs on one core, measured (128 x 256) @ (256 x 256)
# in cache: 64 rows 101 GFLOP/s, 128 rows 115, 256 rows 123; so more lanes than cores
# only for big batches, and two lanes of 64 rows rather than one core idle.
LANE_ROWS = 128
LANE_MIN_ROWS = 64
_NUMERICS = Choice(("rescaled", "raw"))
_OPTIONS = ("residual", "batchnorm", "norm", "norm_at", "input_std", "input_corr", "numerics", "init_params", "activation_params",
            "stream", "memory_budget")
_LOG10_E = 1.0 / math.log(10.0)
# A cold compile of the kernels for one dtype on the 2-core project machine (announced).
COLD_COMPILE_SECONDS = 15


def propagate(init, activation, *, depth, width, batch=256, seed=0, dtype="float32", bias_std=0.0, **options) -> pd.DataFrame:
    """Run a batch forward and a gradient backward through a deep dense net; one row per layer.

    Parameters
    ----------
    init : str
        Initializer name from ``fastinit.INITIALIZERS`` (parameters via ``init_params``).
    activation : str
        Activation name from ``fastinit.ACTIVATIONS`` (parameter via ``activation_params``).
    depth : int
        Number of layers, >= 1.
    width : int or list of int
        Units per layer, or a list of ``depth`` widths (layer ``l`` maps
        ``width[l-2]`` to ``width[l-1]`` units; the input has ``width[0]`` units).
    batch : int, default 256
        Examples in the batch, >= 1 (variances are over batch and units); one example is
        Hanin & Rolnick's single-input setting.  Batch norm needs >= 2 (its statistics
        are over the batch).
    seed : int, default 0
        Root seed; with ``stream`` it fixes every number drawn.
    dtype : {"float32", "float64"}, default "float32"
        The network's dtype; statistics accumulate in float64 regardless.
    bias_std : float, default 0.0
        Biases are i.i.d. N(0, bias_std^2); 0 means no bias.
    **options
        residual : float, optional
            Branch scale ``alpha``: ``h_l = h_{l-1} + alpha phi(z_l)`` (equal widths only).
        norm : {None, "batch", "layer"}, default None
            Normalisation, gamma 1, beta 0, biased variance, eps 1e-5 (PyTorch's
            ``BatchNorm1d(affine=False)`` in training mode and ``LayerNorm(elementwise_affine=False)``):
            ``"batch"`` each unit over the batch (needs ``batch >= 2``), ``"layer"`` each
            example over its units.
        norm_at : {"preact", "branch", "output"}, default "preact"
            Where the norm sits: ``"preact"`` ``h_l = phi(Norm(z_l))`` (``+ h_{l-1}``
            with a residual, ``alpha`` on the branch); ``"branch"`` (pre-norm residual)
            ``h_l = h_{l-1} + alpha phi(W_l Norm(h_{l-1}) + b_l)``; ``"output"`` (post-norm
            residual) ``h_l = Norm(h_{l-1} + alpha phi(z_l))``.  ``"branch"`` and
            ``"output"`` need ``norm`` and ``residual``.  The ``fwd_*`` columns are always
            of the GEMM's output z_l, ``act_second_moment`` of h_l (the residual stream).
        batchnorm : bool, default False
            ``True`` is ``norm="batch", norm_at="preact"`` (the same bits); with a
            conflicting ``norm`` it is an error.
        input_std : float, default 1.0
            Std of the input batch.
        input_corr : float, optional
            Correlate the input rows in pairs (0, 1), (2, 3), ... with this
            correlation in [-1, 1]; the ``corr`` column (mean cosine of the pairs) then
            traces the correlation map.
        numerics : {"rescaled", "raw"}, default "rescaled"
            ``"rescaled"`` carries a log scale so that ``log10_*`` columns stay exact at
            any depth: always for the backward pass, and for the forward pass when the
            activation is positively homogeneous (linear, relu, leaky_relu) or the
            branch is computed from a norm (``norm_at="branch"``: any activation); other activations run forward as the hardware would (their
            overflow is recorded in ``nonfinite``), and ``attrs["forward_rescaled"]``
            says which.  Rescaled, a layer input stored far below RMS 1 (2^-64: the
            input batch, or an unrescaled forward's output) enters its weight
            gradient, and the forward's GEMM in a layer without a norm, scaled up by
            a power of two, so that no product of it is subnormal; the forward's z
            is scaled back and rounded once to the dtype.  The stored
            values are the dtype's, so the net underflows where it would anyway
            (``first_underflow_layer``), but each z is its product rounded once,
            not after every subnormal product as a BLAS rounds it: such a net
            reaches exact zeros a layer or two later than ``"raw"`` does.
            ``"raw"`` runs both passes as the hardware would (the gradient, too, is
            never rescaled).
        init_params, activation_params : dict, optional
            Parameters of the initializer (e.g. ``{"std": 0.01}``) and activation
            (e.g. ``{"slope": 0.2}``).
        stream : int, default 0
            64-bit stream id (the sweep derives one per cell).
        memory_budget : int, default 384 MiB
            Bytes for stored layers: past it, weights are drawn again in the backward
            pass, and deeper nets are recomputed from checkpoints.

    Returns
    -------
    pandas.DataFrame
        Columns ``layer, width, fwd_mean, fwd_var, log10_fwd_var`` (statistics of z_l over
        batch and units), ``act_second_moment`` (E[h_l^2]) and its log10, ``grad_var``
        and ``log10_grad_var`` (of dL/dz_l), ``wgrad_var`` and ``log10_wgrad_var`` (of
        dL/dW_l), ``dead_frac`` (units with phi'(z) = 0 for every example),
        ``saturated_frac`` (entries with |phi'(z)| < 1e-3, bounded activations),
        ``nonfinite`` (= ``fwd_nonfinite + grad_nonfinite``), ``corr``, and
        ``fwd_nonfinite`` / ``grad_nonfinite``: the inf/NaN entries of z_l / dL/dz_l.

        **NaN means not known**, never 0.  A statistic is NaN at a layer where the matrix
        it summarises has a non-finite entry: ``fwd_mean, fwd_var, log10_fwd_var`` where
        z_l does (``fwd_nonfinite > 0``); ``act_second_moment`` and its log10, and
        ``corr``, where h_l does; ``grad_var`` and its log10 where dL/dz_l does
        (``grad_nonfinite > 0``); ``wgrad_var`` and its log10 where dL/dW_l does;
        ``dead_frac`` and ``saturated_frac`` where z_l does (phi' of inf is a limit and
        of NaN nothing, so the units they classify are not measured).  Sums whose float64
        squares overflow (or underflow) although every entry is finite are redone in a
        power-of-two unit, so ``log10_*`` stay exact; the plain column is then float64's
        rounding of the exact value (inf above 1.8e308, 0 below 1e-308, as for the
        rescaled columns).  ``corr`` is also NaN there (its cosines are plain float64
        sums), where a row pair is exactly 0 (a cosine 0/0), and at every layer of a
        batch of one example (no pair to measure).  An **exact zero** is a
        measured 0 with log10 ``-inf`` (zeros init: z_l = 0 exactly): 0 / ``-inf`` and NaN
        never mean the same thing.  Plain variance columns may be 0 or inf where float64
        cannot hold them; ``log10_*`` are exact.

        ``attrs``: ``first_overflow_layer`` (int or None) and ``first_overflow_pass``
        ("forward", "backward" or None): the first layer, in forward order, whose z_l
        or h_l has a non-finite entry or whose ``fwd_var`` is not a finite float64;
        else, if the forward pass is clean, the first layer the backward pass reaches
        (the largest l) whose dL/dz_l or dL/dW_l has a non-finite entry or whose
        ``grad_var`` is not a finite float64.  ``first_underflow_layer`` and
        ``first_underflow_pass``, with the same order of passes: the first layer where,
        for z_l forward (dL/dz_l backward),

        * the variance is subnormal in float64, or is 0 with a finite log10 (float64
          cannot hold it; the rescaled numerics still know it);
        * the values themselves underflow in the net's dtype, when that pass runs
          unrescaled (forward: ``attrs["forward_rescaled"]`` false; backward:
          ``numerics="raw"``): their mean square is below the square of the dtype's
          smallest normal number (float32: 1.18e-38), i.e. typical entries are
          subnormal or flushed to 0 -- what is observable in float64 statistics of
          the stored values;
        * or the matrix is exactly 0 without anything in the net to explain it: z_l = 0
          while h_{l-1} is not; dL/dz_l = 0 while dL/dz_{l+1} is not (or l is the top)
          and not every unit of layer l is dead.  Weights that are all exactly zero
          (``zeros``, ``constant:value=0``, a gain of 0), judged from the initializer's
          draw, explain every zero: such a net reports no underflow, its zeros are exact.

        ``attrs`` also records how the work was cut: ``lanes`` (row ranges of the
        batch: one per 128 examples, at most 8, and 2 from 128 examples on; fixed by
        ``batch``, so results do not depend on the thread count) and ``workers``
        (threads that ran them: at most numba's thread count).

    Notes
    -----
    Parallelism comes from the lanes: each runs its GEMMs on one BLAS thread, and
    BLAS is limited to one thread for the duration of the call.

    The big buffers of a call (its stored layers, about ``memory_budget``) are kept when it
    returns and reused by the next call of the same shapes, which then skips page faulting
    fresh memory; a call of other shapes drops them first (``fastinit._spare.release()``
    drops them at any time).

    Examples
    --------
    >>> df = propagate("he_normal", "relu", depth=50, width=128, batch=64, init_params={"nonlinearity": "relu"})
    >>> bool(abs(df.log10_fwd_var.iloc[-1] - df.log10_fwd_var.iloc[0]) < 0.5)
    True
    """
    plan = Plan.build(init, activation, depth=depth, width=width, batch=batch, seed=seed, dtype=dtype,
                      bias_std=bias_std, **options)
    n_workers = team_size(plan.n_lanes)
    cfg = plan.config()
    # The kernels' types do not depend on the inputs' values: check for (and run) a cold compile
    # before the inputs are drawn, so that the draw's own compile is one of its stages.
    ws = plan.workspace(*plan.input_buffers())
    if announce_compile(walk.forward_pass, (0, n_workers, cfg, ws, -1), f"the propagate kernels for {plan.dtype.name}",
                        COLD_COMPILE_SECONDS, plan.dtype):
        _compile_cold(cfg, ws)
    h0, grad_top = plan.inputs()
    ws = ws._replace(h0=h0, grad_top=grad_top)
    with products.one_blas_thread():
        walk.run(n_workers, cfg, ws)
    frame = _frame(ws.stats, plan, n_workers)
    _spare.give_back({name: getattr(ws, name) for name in plan.lent_shapes()})
    return frame


def _compile_cold(cfg, ws):
    """A cold compile of the kernels for ``cfg`` and ``ws``'s types on two cores (:mod:`fastinit._compile_ahead`).

    Here :func:`_parent_compile_stages`, in a child meanwhile :func:`_child_compile_stages`: the walk's
    forward pass here, its backward pass there; the call that follows loads them.
    """
    compile_in_two(_parent_compile_stages(cfg, ws), "fastinit.propagate:_child_compile_stages", ws.h0.dtype.name)


def _parent_compile_stages(cfg, ws):
    """This process's side of a cold compile: the weight draw and the samplers of the inputs and biases, then
    the walk's forward pass (:func:`fastinit._kernels.walk.forward_pass`, the forward layer under it).

    Parameters
    ----------
    cfg : fastinit._kernels.records.LayerConfig
    ws : fastinit._kernels.records.Workspace

    Returns
    -------
    list of list of (dispatcher, tuple)
    """
    kernels = walk.signatures(cfg, ws)
    return [[kernels["draw_weights_share"], (rng.fill_serial, rng.fill_signature(np.float64)),
             (rng.fill_serial, rng.fill_signature(ws.h0.dtype))],
            [kernels["forward_pass"]]]


def _child_compile_stages(dtype_name: str):
    """The child's side of a cold compile: ``activate_block``, the reductions both layers call and the lane copy
    both passes call, then the walk's backward pass (:func:`fastinit._kernels.walk.backward_pass`, the backward
    layer under it).

    Parameters
    ----------
    dtype_name : str
        ``"float32"`` or ``"float64"``.

    Returns
    -------
    list of list of (dispatcher, tuple)
    """
    cfg, ws = _sample_records(dtype_name)
    kernels = walk.signatures(cfg, ws)
    shared = ("activate_block", "_share_and_rescale", "checked_sums", "finite_sums", "known_sums", "rms_factor",
              "_scaled_rows", "column_sums_block", "column_sums_rows", "_norm_slot", "weight_substream", "part",
              "_copy_lanes")
    return [[*(kernels[name] for name in shared), *norm.standardizer_signatures(ws.h0.dtype)],
            [kernels["backward_pass"]]]


def _sample_records(dtype_name: str):
    """The kernel records of a small net in ``dtype_name``: the types of every net's records in that dtype.

    Parameters
    ----------
    dtype_name : str
        ``"float32"`` or ``"float64"``.

    Returns
    -------
    tuple of (fastinit._kernels.records.LayerConfig, fastinit._kernels.records.Workspace)
    """
    plan = Plan.build("he_normal", "relu", depth=2, width=8, batch=4, dtype=dtype_name)
    return plan.config(), plan.workspace(*plan.input_buffers())


def _lanes(batch):
    """Row ranges the batch is cut into: 2, 4 or 8 of LANE_ROWS rows or more each (as many
    as fit), else 2 if each gets LANE_MIN_ROWS rows, else 1."""
    lanes = 1
    while lanes < 8 and batch // (2 * lanes) >= LANE_ROWS:
        lanes *= 2
    if lanes == 1 and batch // 2 >= LANE_MIN_ROWS:
        lanes = 2
    return lanes


@dataclass(frozen=True, eq=False)  # arrays inside: identity, not field equality
class Plan:
    """A validated :func:`propagate` call: every number the kernels and the result need.

    :meth:`build` is the one place that validates user input; :meth:`config` and
    :meth:`workspace` are the one place that builds the kernels' records
    (:class:`fastinit._kernels.records.LayerConfig` and ``Workspace``), each field with
    its one type.  Tests and twins read the same plan.
    """

    init: str  # registry name
    activation: str
    depth: int
    widths: np.ndarray  # int64 (depth + 1,): the input's width, then each layer's
    batch: int
    seed: int
    stream: int
    dtype: np.dtype
    init_params: dict  # resolved
    draws: tuple  # per layer: the initializer's draw (fastinit.initializers)
    draw_ab: np.ndarray  # float64 (depth, 2): the draws' parameters
    code: int  # activation code
    param: float  # activation parameter (resolved)
    bounded: bool
    bias_std: float
    residual: float | None  # branch scale, None without residual connections
    norm: str | None  # "batch", "layer" or None
    norm_at: str  # "preact", "branch" or "output"
    input_std: float
    input_corr: float | None
    numerics: str
    forward_rescaled: bool
    slope_from_output: bool  # phi' read off each layer's output instead of stored
    seg_len: int  # layers stored at once (see _memory_plan)
    w_slots: int  # of which keep their weights
    n_lanes: int  # row ranges of the batch (see _lanes)
    lsuv: object = None  # fastinit.lsuv.Calibration when init is "lsuv": the per-layer gains in draws

    @classmethod
    def build(cls, init, activation, *, depth, width, batch=256, seed=0, dtype="float32", bias_std=0.0,
              **options) -> Plan:
        """Validate a :func:`propagate` call (same parameters) at the boundary; the kernels never validate."""
        check_no_extra("propagate()", {k: v for k, v in options.items() if k not in _OPTIONS}, _OPTIONS)
        entry = get_initializer(init)
        act = get_activation(activation)
        init_params = entry.resolve(**dict(options.get("init_params") or {}))
        param = act.resolve_param(**dict(options.get("activation_params") or {}))
        depth = check_int("depth", depth, minimum=1)
        if isinstance(width, (list, tuple, np.ndarray)):
            if len(width) != depth:
                raise ValueError(f"width must be an int or a list of depth={depth} widths, got a list of {len(width)}")
            widths = [check_int("width", w, minimum=1) for w in width]
        else:
            widths = [check_int("width", width, minimum=1)] * depth
        widths = np.array([widths[0], *widths], dtype=np.int64)  # the input has widths[0] units
        batch = check_int("batch", batch, minimum=1)
        seed = check_seed(seed)
        dtype = check_dtype(dtype)
        bias_std = check_real("bias_std", bias_std, minimum=0.0)
        residual = options.get("residual")
        if residual is not None:
            residual = check_real("residual", residual, minimum=0.0, exclusive_minimum=True)
            if len(set(widths.tolist())) != 1:
                raise ValueError("residual connections need equal widths; got a width list with different values "
                                 "(use an int width or drop residual)")
        norm, norm_at = check_norm(options, batch, residual)
        input_std = check_real("input_std", options.get("input_std", 1.0), minimum=0.0, exclusive_minimum=True)
        input_corr = options.get("input_corr")
        if input_corr is not None:
            input_corr = check_real("input_corr", input_corr, minimum=-1.0, maximum=1.0)
        numerics = _NUMERICS.check("numerics", options.get("numerics", "rescaled"))
        stream = check_stream(options.get("stream", 0))
        budget = check_int("memory_budget", options.get("memory_budget", DEFAULT_MEMORY_BUDGET), minimum=1)
        widest = int(widths.max())
        # phi' is stored for the backward pass unless it can be read off the layer's output
        # (a residual layer's output also holds its input).
        slope_from_output = act.slope_from_output(param) and residual is None
        # h, phi', and what the norm's backward needs (z, Norm(h_in) or the residual sum).
        per_layer = 1 + (not slope_from_output) + (norm is not None)
        seg_len, w_slots = _memory_plan(depth, batch, widest, dtype.itemsize, per_layer, budget)
        # One draw per distinct (fan_in, fan_out): a draw is a function of the fans, and a
        # deep net of one width would otherwise spend ~20 us a layer in Python on the same gain.
        draw_of_fans = {}
        for fans in zip(widths[:-1].tolist(), widths[1:].tolist()):
            if fans not in draw_of_fans:
                draw_of_fans[fans] = entry.draw(*fans, **init_params)
        draws = tuple(draw_of_fans[fans] for fans in zip(widths[:-1].tolist(), widths[1:].tolist()))
        plan = cls(
            init=entry.name, activation=act.name, depth=depth, widths=widths, batch=batch, seed=seed, stream=stream,
            dtype=dtype, init_params=init_params, draws=draws,
            draw_ab=np.array([(d.a, d.b) for d in draws], dtype=np.float64), code=act.code, param=param,
            bounded=act.bounded, bias_std=bias_std, residual=residual, norm=norm, norm_at=norm_at, input_std=input_std,
            input_corr=input_corr, numerics=numerics,
            # A branch computed from a norm is scale-free, so the stream can be rescaled for any phi.
            forward_rescaled=numerics == "rescaled" and (act.homogeneous or (norm is not None and norm_at == "branch")),
            slope_from_output=slope_from_output, seg_len=seg_len, w_slots=w_slots, n_lanes=_lanes(batch),
        )
        # LSUV's gains come from a pass over this plan's own batch; the kernels then draw them.
        return lsuv.calibrate(plan) if entry.name == "lsuv" else plan

    @property
    def batchnorm(self) -> bool:
        """Batch norm before phi (``batchnorm=True``): the one norm LSUV and the older callers know."""
        return self.norm == "batch" and self.norm_at == "preact"

    def config(self) -> records.LayerConfig:
        """The kernels' read-only record; each field cast to its one type (see ``LayerConfig``)."""
        return records.LayerConfig(
            widths=self.widths, draw_ab=self.draw_ab, batch=int(self.batch), n_lanes=int(self.n_lanes),
            w_slots=int(self.w_slots), seed=np.uint64(self.seed), stream=np.uint64(self.stream),
            wide=bool(self.dtype == np.float64), kind=int(self.draws[0].kind),
            orthogonal=orthogonal.address(self.dtype) if self.draws[0].kind == ORTHOGONAL else 0, code=int(self.code),
            param=float(self.param), bias_std=float(self.bias_std), residual=self.residual is not None,
            alpha=float(self.residual or 0.0), batchnorm=self.norm == "batch", layernorm=self.norm == "layer",
            norm_at=int(records.NORM_AT_CODES[self.norm_at]),
            rescale_forward=bool(self.forward_rescaled), rescale_backward=self.numerics == "rescaled",
            bounded=bool(self.bounded), slope_from_output=bool(self.slope_from_output),
        )

    def workspace(self, h0, grad_top) -> records.Workspace:
        """Every buffer of one kernel run (see ``Workspace``), around the inputs ``h0`` and ``grad_top``.

        Allocated here rather than in the kernel because NumPy asks Linux for transparent
        huge pages on large arrays: first touches then fault 2 MiB at a time instead of
        4 KiB (measured: page faults were ~30 % of a (64, 1000) run).  The big ones
        (:meth:`lent_shapes`) are the last run's when their shapes match (:mod:`fastinit._spare`).
        """
        dtype, widest = self.dtype, int(self.widths.max())
        lent = _spare.take(self.lent_shapes(), dtype)
        return records.Workspace(
            h0=h0, grad_top=grad_top, stats=np.zeros((self.depth, records.N_STATS)),
            log_scales=np.zeros((self.n_lanes, self.depth + 1)), log_grad=np.zeros(self.n_lanes),
            h_scale=np.ones(self.depth + 1),
            sync=np.zeros(2, dtype=np.int64), shared=np.zeros(layer.N_SHARED), bias=np.empty(widest, dtype=dtype),
            acc=np.empty((blocks.N_BLOCKS, blocks.N_ACC, widest)), acc_z=np.empty((blocks.N_BLOCKS, 2, widest)),
            acc_in=np.empty((blocks.N_BLOCKS, 2, widest)), acc_w=np.empty((self.n_lanes, 2, widest)),
            corr=np.empty(blocks.N_BLOCKS), **lent,
        )

    def lent_shapes(self) -> dict:
        """The shapes of the ``Workspace`` buffers one run lends the next (:mod:`fastinit._spare`): all but the
        small ones and those that must start as zeros.

        Returns
        -------
        dict of str to int or tuple of int
            Buffer name -> shape (``self.dtype``).
        """
        batch, seg_len = self.batch, self.seg_len
        widest = int(self.widths.max())
        rows, square = batch * widest, widest * widest
        n_segments = (self.depth + seg_len - 1) // seg_len
        return {
            "seg_h": (seg_len, rows), "seg_z": (seg_len if self.norm else 1, rows),
            "seg_dphi": (1 if self.slope_from_output else seg_len, rows),
            "seg_w": (min(seg_len, self.w_slots + 1), square), "checkpoints": (n_segments, rows),
            "u": rows, "h_last": rows, "grad": rows, "grad_in": rows, "grad_act": rows if self.norm else 0,
            "grad_z": rows, "wgrad": square,
        }

    def input_buffers(self):
        """``(h0, grad_top)`` uninitialised: the shapes and dtype of :meth:`inputs`, for what needs only their types."""
        return (np.empty((self.batch, int(self.widths[0])), dtype=self.dtype),
                np.empty((self.batch, int(self.widths[-1])), dtype=self.dtype))

    def inputs(self):
        """``(h0, grad_top)``: the input batch and readout gradient from the cell's stream (substreams 0, 1, 2)."""
        batch, n_in, n_out = self.batch, int(self.widths[0]), int(self.widths[-1])
        seed, stream, dtype = self.seed, self.stream, self.dtype
        h0 = rng.standard_normal(seed, (batch, n_in), stream=stream, substream=draw.SUB_INPUT, dtype="float64")
        if self.input_corr is not None:
            c = self.input_corr
            noise = rng.standard_normal(seed, (batch, n_in), stream=stream, substream=draw.SUB_INPUT_PAIR, dtype="float64")
            h0[1::2] = c * h0[0:2 * (batch // 2):2] + math.sqrt(1.0 - c * c) * noise[1::2][: batch // 2]
        h0 = (self.input_std * h0).astype(dtype)
        grad_top = rng.standard_normal(seed, (batch, n_out), stream=stream, substream=draw.SUB_READOUT, dtype=dtype.name)
        return h0, grad_top


def _memory_plan(depth, batch, widest, itemsize, per_layer, budget):
    """How many layers to keep at once (``seg_len``) and how many of them keep their weights.

    The backward pass needs each layer's input and derivative (and, with batch norm,
    its pre-activation), and its weights.  In order of cost, when the budget is short:
    keep everything; keep the activations of every layer but draw some layers' weights
    again (a draw costs a fraction of the layer's GEMMs); keep segments of layers and
    recompute the earlier ones from checkpoints (a draw, a GEMM and the activation).
    """
    activations = per_layer * batch * widest * itemsize
    weights = widest * widest * itemsize
    if depth * (activations + weights) <= budget:
        return depth, depth
    if depth * activations + weights <= budget:
        return depth, min(depth, (budget - depth * activations - weights) // weights)
    seg_len = int(max(1, min(depth, budget // (activations + weights))))
    return seg_len, seg_len


def _moments(total, total_sq, log_scale, count):
    """Mean, variance and log10 variance of scaled sums; exact in log space whatever the scale."""
    mean = total / count
    var = np.maximum(total_sq / count - mean**2, 0.0)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        log10_var = np.log10(var) + 2.0 * log_scale * _LOG10_E
        scale = np.exp(log_scale)
        return mean * scale, var * scale**2, log10_var


def _frame(stats, plan, n_workers) -> pd.DataFrame:
    widths = plan.widths
    batch = plan.batch
    n_out = widths[1:].astype(np.float64)
    n_in = widths[:-1].astype(np.float64)
    # The kernels leave a sum NaN where its matrix has a non-finite entry, so the moments
    # below are NaN there without further masking.
    fwd_mean, fwd_var, log10_fwd = _moments(stats[:, records.FWD_SUM], stats[:, records.FWD_SUMSQ], stats[:, records.FWD_LOG_SCALE], batch * n_out)
    act_sq = stats[:, records.ACT_SUMSQ] / (batch * n_out)
    _, grad_var, log10_grad = _moments(stats[:, records.GRAD_SUM], stats[:, records.GRAD_SUMSQ], stats[:, records.GRAD_LOG_SCALE], batch * n_out)
    _, wgrad_var, log10_wgrad = _moments(stats[:, records.WGRAD_SUM], stats[:, records.WGRAD_SUMSQ], stats[:, records.WGRAD_LOG_SCALE], n_out * n_in)
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        log10_act = np.log10(act_sq) + 2.0 * stats[:, records.ACT_LOG_SCALE] * _LOG10_E
        act_second_moment = act_sq * np.exp(2.0 * stats[:, records.ACT_LOG_SCALE])
    fwd_nonfinite = stats[:, records.FWD_NONFINITE].astype(np.int64)
    grad_nonfinite = stats[:, records.GRAD_NONFINITE].astype(np.int64)
    # phi'(z) of a non-finite z is a limit or NaN, not a measurement: the units it
    # classifies are not known.
    z_unknown = fwd_nonfinite > 0
    frame = pd.DataFrame({
        "layer": np.arange(1, plan.depth + 1),
        "width": widths[1:],
        "fwd_mean": fwd_mean,
        "fwd_var": fwd_var,
        "log10_fwd_var": log10_fwd,
        "act_second_moment": act_second_moment,
        "log10_act_second_moment": log10_act,
        "grad_var": grad_var,
        "log10_grad_var": log10_grad,
        "wgrad_var": wgrad_var,
        "log10_wgrad_var": log10_wgrad,
        "dead_frac": np.where(z_unknown, np.nan, stats[:, records.DEAD_UNITS] / n_out),
        "saturated_frac": np.where(z_unknown, np.nan, stats[:, records.SATURATED] / (batch * n_out)),
        "nonfinite": fwd_nonfinite + grad_nonfinite,
        "corr": stats[:, records.CORR_SUM] if batch >= 2 else np.full(len(stats), np.nan),  # no pair: not known
        "fwd_nonfinite": fwd_nonfinite,
        "grad_nonfinite": grad_nonfinite,
    })
    frame.attrs.update({
        "init": plan.init, "activation": plan.activation, "numerics": plan.numerics,
        "forward_rescaled": plan.forward_rescaled, "segment_layers": plan.seg_len,
        "lanes": plan.n_lanes, "workers": n_workers,
    })
    if plan.lsuv is not None:
        frame.attrs.update({"lsuv_scales": list(plan.lsuv.scales), "lsuv_iterations": list(plan.lsuv.iterations)})
    frame.attrs.update(_range_limits(frame, stats, plan))
    return frame


def _range_limits(frame, stats, plan) -> dict:
    """``first_overflow_layer``/``_pass`` and ``first_underflow_layer``/``_pass`` (rules in :func:`propagate`)."""
    counts = plan.batch * plan.widths[1:].astype(np.float64)
    tiny64 = np.finfo(np.float64).tiny
    # Twice log10 of the dtype's smallest normal: a second moment below it means typical
    # entries are subnormal (or flushed to 0) in the net's own dtype.
    dtype_floor = 2.0 * math.log10(np.finfo(plan.dtype).tiny)
    weights_zero = all(d.a == 0.0 and (d.kind != rng.KIND_UNIFORM or d.b == 0.0) for d in plan.draws)

    def underflow(var, log10_var, sumsq, log_scale, raw_values, explained):
        # The float64 statistic can no longer hold the variance (its log10 is still exact) ...
        mask = ((var > 0.0) & (var < tiny64)) | ((var == 0.0) & np.isfinite(log10_var))
        if raw_values:  # ... or the values themselves went subnormal in the net's dtype ...
            with np.errstate(divide="ignore", invalid="ignore"):
                log10_m2 = np.log10(sumsq / counts) + 2.0 * log_scale * _LOG10_E
            mask |= np.isfinite(log10_m2) & (log10_m2 < dtype_floor)
        # ... or flushed to exactly 0 with nothing in the net to explain it.
        return mask | ((sumsq == 0.0) & ~explained & ~weights_zero)

    fwd_sumsq, act_sumsq, grad_sumsq = stats[:, records.FWD_SUMSQ], stats[:, records.ACT_SUMSQ], stats[:, records.GRAD_SUMSQ]
    fwd_var, grad_var = frame.fwd_var.to_numpy(), frame.grad_var.to_numpy()
    fwd_over = (frame.fwd_nonfinite.to_numpy() > 0) | (stats[:, records.ACT_NONFINITE] > 0) | ~np.isfinite(fwd_var)
    grad_over = ((frame.grad_nonfinite.to_numpy() > 0) | (stats[:, records.WGRAD_NONFINITE] > 0)
                 | ~np.isfinite(grad_var))
    # z_l = 0 is explained by h_{l-1} = 0; dL/dz_l = 0 by dL/dz_{l+1} = 0 or every unit dead.
    input_zero = np.concatenate([[False], act_sumsq[:-1] == 0.0])
    upstream_zero = np.concatenate([grad_sumsq[1:] == 0.0, [False]]) | (frame.dead_frac.to_numpy() == 1.0)
    fwd_under = underflow(fwd_var, frame.log10_fwd_var.to_numpy(), fwd_sumsq, stats[:, records.FWD_LOG_SCALE],
                          not plan.forward_rescaled, input_zero)
    grad_under = underflow(grad_var, frame.log10_grad_var.to_numpy(), grad_sumsq, stats[:, records.GRAD_LOG_SCALE],
                           plan.numerics == "raw", upstream_zero)
    limits = {}
    for kind, forward, backward in (("overflow", fwd_over, grad_over), ("underflow", fwd_under, grad_under)):
        layer, where = None, None
        if forward.any():
            layer, where = int(np.flatnonzero(forward)[0]) + 1, "forward"
        elif backward.any():  # the backward pass meets the top layers first
            layer, where = int(np.flatnonzero(backward)[-1]) + 1, "backward"
        limits[f"first_{kind}_layer"], limits[f"first_{kind}_pass"] = layer, where
    return limits
