"""Cells: one network configuration and replicate of a study, with a stable identity.

A cell's key and random stream are a hash of its own parameters (design section 5),
never of its position in the grid: adding a value to an axis adds cells and leaves
every existing cell's key, stream and numbers unchanged.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging

from fastinit import rng
from fastinit.activations import get_activation
from fastinit.initializers import get_initializer
from fastinit.propagate import DEFAULT_MEMORY_BUDGET
from fastinit.sweep.spec import ADAM_AXES, AXES, PROPAGATION_AXES, SGD_AXES, TRAINING_AXES, Choice, Study, StudyError
from fastinit.train.tasks import TASKS

log = logging.getLogger("fastinit.sweep")

__all__ = ["Cell", "expand", "estimate"]

# Effective rate of one worker thread on the 3 GEMMs per layer, measured on the
# project machine (about a third of a core's peak sgemm); only used for estimates.
_ESTIMATE_FLOPS_PER_THREAD = 35e9
_ESTIMATE_SECONDS_PER_CELL = 0.02  # Parquet write, scheduling
_PROCESS_BYTES = 450 * 2**20  # resident size of a worker that has imported fastinit
# The digits' training examples at the default split: 1,797 images less the quarter held out
# (counting them would import scikit-learn for an estimate).  Other tasks state n_train.
_DIGITS_TRAINING_EXAMPLES = 1348
# Axes added after cells were first stored, with the value every earlier cell of the kind
# had: at that value they stay out of the identity, so those cells keep their keys.
# The norm axes came to propagation cells first, then to training cells.
_ADDED_LATER_PROPAGATION = {"norm": "none", "norm_at": "preact"}
_ADDED_LATER_TRAINING = {"optimizer": "sgd", "weight_decay": 0.0, **_ADDED_LATER_PROPAGATION}


@dataclasses.dataclass(frozen=True)
class Cell:
    """One configuration and replicate.  Field names are the result columns."""

    init: Choice
    activation: Choice
    depth: int
    width: int
    batch: int
    bias_std: float
    dtype: str
    numerics: str
    residual: float
    batchnorm: bool
    norm: str
    norm_at: str
    task: str
    epochs: int
    lr: float
    optimizer: str
    momentum: float
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    clip_norm: float
    seed: int  # replicate index, 0 .. seeds - 1

    @property
    def trains(self) -> bool:
        """A training cell (:func:`fastinit.train.run`) rather than a propagation cell."""
        return self.task != "none"

    def identity(self) -> str:
        """Canonical JSON of every parameter that changes the cell's numbers.

        Axes the cell's kind ignores are left out, so a propagation cell's identity
        (and key, and stream) is the same whatever the training axes say, and the other
        way round; so are the hyper-parameters its update rule ignores (momentum for Adam,
        betas and eps for SGD), and axes added later at the value earlier cells had.
        """
        fields = dataclasses.asdict(self)
        fields["init"] = [self.init.name, dict(self.init.params)]
        fields["activation"] = [self.activation.name, dict(self.activation.params)]
        # A registered entry's functions are part of it: an edited one makes new cells (the
        # built-ins have no fingerprint, so their keys are unchanged).
        for axis, entry in (("init", get_initializer(self.init.name)), ("activation", get_activation(self.activation.name))):
            if entry.fingerprint is not None:
                fields[axis].append(entry.fingerprint)
        if self.trains:
            ignored = [*PROPAGATION_AXES, *(ADAM_AXES if self.optimizer == "sgd" else SGD_AXES),
                       *(name for name, value in _ADDED_LATER_TRAINING.items() if fields[name] == value)]
        else:
            ignored = ["task", *TRAINING_AXES,
                       *(name for name, value in _ADDED_LATER_PROPAGATION.items() if fields[name] == value)]
        for name in ignored:
            del fields[name]
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @property
    def stream(self) -> int:
        """The cell's 64-bit random stream (with the study's root seed, it fixes every number)."""
        return rng.stream_id("fastinit.sweep.cell", self.identity())

    @property
    def key(self) -> str:
        """File-name-safe key: the stream in hex."""
        return f"{self.stream:016x}"

    def propagate_arguments(self, root_seed: int) -> dict:
        """Keyword arguments of :func:`fastinit.propagate` that reproduce this cell alone."""
        options = {"residual": self.residual} if self.residual > 0 else {}
        return {
            "init": self.init.name, "activation": self.activation.name, "depth": self.depth, "width": self.width,
            "batch": self.batch, "seed": root_seed, "dtype": self.dtype, "bias_std": self.bias_std,
            "numerics": self.numerics, "stream": self.stream, "init_params": self.init.as_dict(),
            "activation_params": self.activation.as_dict(), **options, **self._norm_arguments(),
        }

    def train_arguments(self, root_seed: int) -> dict:
        """Keyword arguments of :func:`fastinit.train.run` that reproduce this training cell alone."""
        return {
            "init": self.init.name, "activation": self.activation.name, "depth": self.depth, "width": self.width,
            "task": self.task, "epochs": self.epochs, "lr": self.lr, "batch": self.batch, "seed": root_seed,
            "optimizer": self.optimizer, **self._rule_arguments(), "weight_decay": self.weight_decay,
            "clip_norm": self.clip_norm or None,
            "residual": self.residual or None, "dtype": self.dtype, "stream": self.stream,
            "init_params": self.init.as_dict(), "activation_params": self.activation.as_dict(),
            **self._norm_arguments(),
        }

    def _norm_arguments(self) -> dict:
        """``batchnorm``, ``norm`` and ``norm_at`` as both entry points take them: only those set (an
        explicit ``batchnorm=False`` beside ``norm="batch"`` would contradict it)."""
        options = {"batchnorm": True} if self.batchnorm else {}
        if self.norm != "none":
            options.update(norm=self.norm, norm_at=self.norm_at)
        return options

    def _rule_arguments(self) -> dict:
        if self.optimizer == "sgd":
            return {"momentum": self.momentum}
        return {"betas": (self.beta1, self.beta2), "eps": self.eps}

    def columns(self) -> dict:
        """Parameter columns written beside the statistics (labels for init and activation)."""
        return {
            "key": self.key, "init": self.init.label, "activation": self.activation.label,
            "init_name": self.init.name, "init_params": json.dumps(self.init.as_dict(), sort_keys=True),
            "activation_name": self.activation.name,
            "activation_params": json.dumps(self.activation.as_dict(), sort_keys=True),
            "depth": self.depth, "width": self.width, "batch": self.batch, "bias_std": self.bias_std,
            "dtype": self.dtype, "numerics": self.numerics, "residual": self.residual,
            "batchnorm": self.batchnorm, "norm": self.norm, "norm_at": self.norm_at, "task": self.task,
            "epochs": self.epochs, "lr": self.lr,
            "optimizer": self.optimizer, "momentum": self.momentum, "beta1": self.beta1, "beta2": self.beta2,
            "eps": self.eps, "weight_decay": self.weight_decay, "clip_norm": self.clip_norm, "seed": self.seed,
        }


def expand(study: Study) -> list[Cell]:
    """Every cell of the study's grids (grid by grid, axes in :data:`AXES` order, replicates innermost).

    Parameters
    ----------
    study : Study

    Returns
    -------
    list of Cell

    Raises
    ------
    fastinit.sweep.spec.StudyError
        If no combination of the grid is a net that can run (impossible ones are left out
        and logged: see :func:`_impossible`).
    """
    points = itertools.chain.from_iterable(
        itertools.product(*(grid.axes[axis] for axis in AXES), range(grid.seeds)) for grid in study.grids)
    cells, impossible = {}, {}
    for values in points:  # axes a cell's kind ignores, or two grids, would repeat it: keep the first
        cell = Cell(*values)
        reason = _impossible(cell)
        if reason:
            impossible.setdefault(reason, 0)
            impossible[reason] += 1
            continue
        cells.setdefault(cell.key, cell)
    if not cells:
        raise StudyError("no cell of the grid is a net that can run: " + "; ".join(impossible))
    if impossible:
        log.info("left out of the grid: %s", "; ".join(f"{n} cells where {why}" for why, n in impossible.items()))
    return list(cells.values())


def _impossible(cell: Cell) -> str:
    """Why a combination of the grid is not a net (it is left out), or '' when it is one.

    A grid crosses its axes, so plain and normalised nets in one study give combinations that
    mean nothing (a pre-norm branch without a residual branch); those are skipped, and a study
    left with none is an error.  The same rules for propagation and training cells.
    """
    if cell.batchnorm and cell.norm != "none":
        return "batchnorm = true and norm are both set (batchnorm is norm 'batch' at 'preact')"
    if cell.norm_at != "preact" and cell.norm == "none":
        return f"norm_at {cell.norm_at!r} has no norm"
    if cell.norm_at != "preact" and cell.residual == 0:
        return f"norm_at {cell.norm_at!r} has no residual branch"
    if cell.norm == "batch" and cell.batch < 2:
        return "batch norm has batch 1"
    return ""


def _flops(cell: Cell) -> float:
    """Floating-point work of a cell's GEMMs (2 flops per multiply-add)."""
    if not cell.trains:
        return 6.0 * cell.batch * cell.width**2 * cell.depth
    # Per epoch: steps over n_train examples (3 GEMMs per layer) and one evaluation pass (1).
    params = TASKS[cell.task].params
    examples = params["n_train"][0] if "n_train" in params else _DIGITS_TRAINING_EXAMPLES
    return 8.0 * examples * cell.width**2 * cell.depth * cell.epochs


def estimate(cells: list[Cell], workers: int, threads_per_worker: int) -> tuple[float, int]:
    """Rough wall time (s) and peak memory (bytes) of running ``cells``.

    The time counts the three GEMMs per layer (forward, two backward) at
    about 35 GFLOP/s per thread plus a fixed cost per cell; memory is the
    stored segment (capped by the propagation memory budget) per worker plus
    the process itself.  Good to a factor of about two.

    Returns
    -------
    seconds : float
    peak_bytes : int
    """
    if not cells:
        return 0.0, 0
    rate = _ESTIMATE_FLOPS_PER_THREAD * threads_per_worker
    work = sum(_flops(c) / rate + _ESTIMATE_SECONDS_PER_CELL for c in cells)
    itemsize = {"float32": 4, "float64": 8}
    largest = max(min(DEFAULT_MEMORY_BUDGET, (3 * c.batch * c.width + c.width**2) * itemsize[c.dtype] * c.depth)
                  for c in cells)
    return work / max(1, min(workers, len(cells))), workers * (largest + _PROCESS_BYTES)
