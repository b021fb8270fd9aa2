"""Built-in tasks of :func:`fastinit.train.run`: synthetic ones generated from a seed, and the digits.

Every number of a task is a pure function of ``(seed, task, task parameters)``: the data
do **not** depend on the cell's ``stream``, so two initializers run at the same seed see
the same examples in the same mini-batch order (a paired comparison); only their weights
differ.  Every task has a training set and a held-out set (evaluated each epoch, never
trained on).  Streams (all keyed by the root seed):

* ``DATA_STREAM[task]`` -- the task's inputs, labels and noise (substreams below); a
  synthetic task's held-out set is drawn exactly as its training set, from the same
  substreams shifted by ``HELD_OUT`` (so adding it changed no training example), and the
  digits' split from substream ``SUB_SPLIT``;
* ``TEACHER_STREAM`` -- the teacher net of ``"teacher"``, layer ``l`` on substream
  ``weight_substream(l)`` as for a student net;
* ``ORDER_STREAM`` -- epoch ``e``'s mini-batch permutation on substream ``e``.

Tasks
-----
``teacher``
    Teacher-student regression.  ``x ~ N(0, I_in_dim)``; a random tanh teacher with
    ``teacher_depth`` hidden layers of ``teacher_width`` units, weights N(0, 1/fan_in),
    zero biases, linear readout to ``out_dim`` outputs; targets ``y = teacher(x) +
    noise * N(0, 1)``, then divided by their per-output std over the training set (so
    predicting the mean scores MSE 1; held-out targets by the same std).  Loss: mean
    squared error.
``spirals``
    Two interleaved spirals in 2-D, 2 classes (example ``i`` has class ``i % 2``):
    ``t = 0.1 + 0.9 u`` with ``u ~ U[0, 1)``, angle ``2 pi turns t + pi class``,
    radius ``2 t``, plus ``noise * N(0, I_2)``.  Loss: softmax cross-entropy.
``gaussians``
    A mixture of ``n_classes`` isotropic unit Gaussians in ``dim`` dimensions with
    means ``N(0, separation^2 / dim I)`` (so means sit about ``separation * sqrt(2)``
    apart); example ``i`` has class ``i % n_classes``.  Loss: softmax cross-entropy.
``digits``
    The 1,797 8x8 handwritten digits scikit-learn ships in its package
    (``sklearn.datasets.load_digits``; no download; ``pip install "fastinit[data]"``),
    64 pixel inputs, 10 classes.  Stratified split fixed by the seed: within each class
    the examples are ordered by float64 Philox uniforms of ``(seed, DATA_STREAM["digits"],
    SUB_SPLIT)`` (one per example, by its index in the data set) and the first
    ``round(test_fraction * n_class)`` (half to even) are held out; both sets keep the
    data set's order.  Inputs are standardized per pixel with the training set's mean and
    std (population std); a pixel constant on the training set (std 0: the corner pixels
    are always blank) is 0 on both sets -- it carries nothing to learn, and dividing
    held-out values by 0 would feed the net inf.  Loss: softmax cross-entropy.

Synthetic tasks take ``n_test`` (default 256, 0 for none) held-out examples.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from fastinit import rng
from fastinit._kernels.draw import weight_substream
from fastinit._validation import Int, Real, check_choice, check_dtype, check_no_extra, check_seed, check_unit_interval
from fastinit.train._kernels import CROSS_ENTROPY, MSE

__all__ = ["TASKS", "Task", "Dataset", "make_task", "get_task", "DATA_STREAM", "TEACHER_STREAM", "ORDER_STREAM",
           "MissingExtraError", "HELD_OUT"]

# Substreams of a task's data stream.
SUB_X, SUB_T, SUB_NOISE, SUB_MEANS, SUB_SPLIT = 0, 1, 2, 3, 4
# A synthetic task's held-out set: the training set's draws on these substreams shifted by this.
HELD_OUT = 16

TEACHER_STREAM = rng.stream_id("fastinit.train", "teacher")
ORDER_STREAM = rng.stream_id("fastinit.train", "order")


class Fraction:
    """A real number in ``[0, 1)`` (declared, as ``_validation.Real``)."""

    def check(self, name: str, value) -> float:
        """Return ``value`` as float or raise naming ``name``."""
        return check_unit_interval(name, value, "e.g. 0.25 holds out a quarter of each class")

    def invalid_examples(self) -> list:
        """Values this constraint must reject."""
        return [-0.1, 1.0, float("nan"), "text"]


class MissingExtraError(ImportError, ValueError):
    """A task needs an optional dependency that is not installed (the message names the extra).

    Both an ImportError (what it is) and a ValueError (the API's bad-input contract).
    """


@dataclass(frozen=True)
class Dataset:
    """A task's data: training inputs ``x`` (n, n_inputs) and targets ``y``, held-out ``x_test``, ``y_test``.

    ``y`` is int64 labels (n,) for cross-entropy tasks, float (n, n_outputs) for MSE.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    loss: int
    n_outputs: int
    params: Mapping[str, object]
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def n_inputs(self) -> int:
        """Input dimension."""
        return self.x.shape[1]

    @property
    def classification(self) -> bool:
        """True for softmax cross-entropy tasks."""
        return self.loss == CROSS_ENTROPY


@dataclass(frozen=True)
class Task:
    """One registry entry: a task's declared parameters and its generator."""

    name: str
    description: str
    params: Mapping[str, tuple]  # name -> (default, constraint)
    generate: Callable[..., tuple]  # (seed, data stream, **params) -> (x, y, x_test, y_test, loss, n_outputs)
    requires: tuple = ()  # an optional dependency the generator imports: (module, distribution)

    def check_available(self) -> None:
        """Raise :class:`MissingExtraError` (naming the extra to install) if ``requires`` is not importable."""
        if self.requires:
            module, distribution = self.requires
            try:
                importlib.import_module(module)
            except ImportError:
                raise MissingExtraError(f"the {self.name!r} task needs {distribution} ({module} cannot be imported); "
                                        'pip install "fastinit[data]"') from None

    def resolve(self, **params) -> dict:
        """Validate ``params`` against the declaration and fill in defaults."""
        check_no_extra(f"task {self.name!r}", {k: v for k, v in params.items() if k not in self.params}, self.params)
        return {key: constraint.check(key, params.get(key, default)) for key, (default, constraint) in self.params.items()}


def _normal(seed, shape, stream, substream):
    return rng.standard_normal(seed, shape, stream=stream, substream=substream, dtype="float64")


def _splits(draw, n_train, n_test):
    """``draw(n, offset)``'s training set (substreams as they always were) and held-out set
    (the same draw on substreams shifted by :data:`HELD_OUT`; empty when ``n_test`` is 0)."""
    x, y = draw(n_train, 0)
    x_test, y_test = draw(n_test, HELD_OUT) if n_test else (x[:0], y[:0])
    return x, y, x_test, y_test


def _teacher(seed, stream, *, n_train, n_test, in_dim, out_dim, teacher_depth, teacher_width, noise):
    widths = [in_dim] + [teacher_width] * teacher_depth + [out_dim]
    weights = [_normal(seed, (widths[layer], widths[layer - 1]), TEACHER_STREAM, weight_substream(layer))
               for layer in range(1, len(widths))]

    def draw(n, offset):
        x = _normal(seed, (n, in_dim), stream, SUB_X + offset)
        h = x
        for layer, w in enumerate(weights, start=1):
            h = h @ (w.T / math.sqrt(widths[layer - 1]))
            if layer < len(widths) - 1:
                h = np.tanh(h)
        return x, h + noise * _normal(seed, (n, out_dim), stream, SUB_NOISE + offset)

    x, y, x_test, y_test = _splits(draw, n_train, n_test)
    std = y.std(axis=0)
    scale = np.where(std > 0.0, std, 1.0)
    return x, y / scale, x_test, y_test / scale, MSE, out_dim


def _spirals(seed, stream, *, n_train, n_test, turns, noise):
    def draw(n, offset):
        u = rng.uniform(seed, n, stream=stream, substream=SUB_T + offset, dtype="float64")
        t = 0.1 + 0.9 * u
        label = np.arange(n) % 2
        angle = 2.0 * math.pi * turns * t + math.pi * label
        x = 2.0 * t[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        x += noise * _normal(seed, (n, 2), stream, SUB_NOISE + offset)
        return x, label.astype(np.int64)

    return *_splits(draw, n_train, n_test), CROSS_ENTROPY, 2


def _gaussians(seed, stream, *, n_train, n_test, n_classes, dim, separation):
    means = separation / math.sqrt(dim) * _normal(seed, (n_classes, dim), stream, SUB_MEANS)

    def draw(n, offset):
        label = np.arange(n) % n_classes
        return means[label] + _normal(seed, (n, dim), stream, SUB_X + offset), label.astype(np.int64)

    return *_splits(draw, n_train, n_test), CROSS_ENTROPY, n_classes


def stratified_split(labels, test_fraction, seed, stream):
    """Indices ``(train, test)`` of a stratified split fixed by ``(seed, stream)`` (see ``digits``).

    Parameters
    ----------
    labels : numpy.ndarray
        int labels (n,).
    test_fraction : float
        In [0, 1): per class, ``round(test_fraction * n_class)`` examples are held out.
    seed, stream : int
        The split's random stream (substream :data:`SUB_SPLIT`).

    Returns
    -------
    train, test : numpy.ndarray
        Sorted int64 indices.
    """
    keys = rng.uniform(seed, labels.size, stream=stream, substream=SUB_SPLIT, dtype="float64")
    held = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranked = members[np.argsort(keys[members], kind="stable")]
        held.append(ranked[: int(np.rint(test_fraction * members.size))])
    test = np.sort(np.concatenate(held)).astype(np.int64)
    return np.setdiff1d(np.arange(labels.size, dtype=np.int64), test), test


def _digits(seed, stream, *, test_fraction):
    from sklearn.datasets import load_digits  # an optional extra: make_task checked it is there

    x, y = load_digits(return_X_y=True)
    train, test = stratified_split(y, test_fraction, seed, stream)
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    constant = std == 0.0
    scale = np.where(constant, 1.0, std)

    def standardize(rows):
        return np.where(constant, 0.0, (x[rows] - mean) / scale)

    labels = y.astype(np.int64)
    return standardize(train), labels[train], standardize(test), labels[test], CROSS_ENTROPY, 10


_N_TRAIN = (512, Int(1))
_N_TEST = (256, Int(0))
_NOISE = (0.0, Real(0.0))
TASKS: dict[str, Task] = {t.name: t for t in (
    Task("teacher", "teacher-student regression (random tanh teacher), MSE",
         {"n_train": _N_TRAIN, "n_test": _N_TEST, "in_dim": (8, Int(1)), "out_dim": (1, Int(1)), "teacher_depth": (2, Int(0)),
          "teacher_width": (32, Int(1)), "noise": _NOISE}, _teacher),
    Task("spirals", "two interleaved 2-D spirals, 2 classes, softmax cross-entropy",
         {"n_train": _N_TRAIN, "n_test": _N_TEST, "turns": (1.5, Real(0.0, exclusive=True)), "noise": (0.05, Real(0.0))}, _spirals),
    Task("gaussians", "isotropic Gaussian mixture, several classes, softmax cross-entropy",
         {"n_train": _N_TRAIN, "n_test": _N_TEST, "n_classes": (4, Int(2)), "dim": (8, Int(1)), "separation": (3.0, Real(0.0))}, _gaussians),
    Task("digits", "sklearn's 8x8 handwritten digits (1,797 images, 10 classes), softmax cross-entropy; "
         'needs pip install "fastinit[data]"', {"test_fraction": (0.25, Fraction())}, _digits,
         requires=("sklearn.datasets", "scikit-learn")),
)}
"""Every built-in task by name."""

DATA_STREAM: dict[str, int] = {name: rng.stream_id("fastinit.train", "data", name) for name in TASKS}


def get_task(name: str) -> Task:
    """Look up a task by name; ValueError with a did-you-mean hint for an unknown one."""
    return TASKS[check_choice("task", name, TASKS)]


def make_task(task: str, *, seed: int = 0, dtype="float32", **params) -> Dataset:
    """Generate a built-in task's training and held-out sets.

    Parameters
    ----------
    task : {"teacher", "spirals", "gaussians", "digits"}
        Task name (see the module docstring for each generator).
    seed : int, default 0
        Root seed; the same seed and parameters give the same data bit for bit.
    dtype : {"float32", "float64"}, default "float32"
        dtype of ``x`` (and of ``y`` for regression).
    **params
        The task's parameters, e.g. ``n_train=512``, ``n_test=256``, ``noise=0.05``,
        ``test_fraction=0.25`` (``TASKS[task].params``).

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError, TypeError
        For a bad task or parameter (one line naming it, the value and the fix).
    MissingExtraError
        For ``"digits"`` without scikit-learn (an ImportError and a ValueError).
    """
    entry = get_task(task)
    resolved = entry.resolve(**params)
    seed = check_seed(seed)
    dtype = check_dtype(dtype)
    entry.check_available()
    x, y, x_test, y_test, loss, n_outputs = entry.generate(seed, DATA_STREAM[entry.name], **resolved)
    y_dtype = np.int64 if loss == CROSS_ENTROPY else dtype
    return Dataset(entry.name, np.ascontiguousarray(x, dtype=dtype), np.ascontiguousarray(y, dtype=y_dtype), loss,
                   n_outputs, resolved, np.ascontiguousarray(x_test, dtype=dtype),
                   np.ascontiguousarray(y_test, dtype=y_dtype))

