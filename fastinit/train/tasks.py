"""Built-in synthetic tasks of :func:`fastinit.train.run`, generated from a seed.

Every number of a task is a pure function of ``(seed, task, task parameters)``: the data
do **not** depend on the cell's ``stream``, so two initializers run at the same seed see
the same examples in the same mini-batch order (a paired comparison); only their weights
differ.  Streams (all keyed by the root seed):

* ``DATA_STREAM[task]`` -- the task's inputs, labels and noise (substreams below);
* ``TEACHER_STREAM`` -- the teacher net of ``"teacher"``, layer ``l`` on substream
  ``weight_substream(l)`` as for a student net;
* ``ORDER_STREAM`` -- epoch ``e``'s mini-batch permutation on substream ``e``.

Tasks
-----
``teacher``
    Teacher-student regression.  ``x ~ N(0, I_in_dim)``; a random tanh teacher with
    ``teacher_depth`` hidden layers of ``teacher_width`` units, weights N(0, 1/fan_in),
    zero biases, linear readout to ``out_dim`` outputs; targets ``y = teacher(x) +
    noise * N(0, 1)``, then divided by their per-output std over the data set (so
    predicting the mean scores MSE 1).  Loss: mean squared error.
``spirals``
    Two interleaved spirals in 2-D, 2 classes (example ``i`` has class ``i % 2``):
    ``t = 0.1 + 0.9 u`` with ``u ~ U[0, 1)``, angle ``2 pi turns t + pi class``,
    radius ``2 t``, plus ``noise * N(0, I_2)``.  Loss: softmax cross-entropy.
``gaussians``
    A mixture of ``n_classes`` isotropic unit Gaussians in ``dim`` dimensions with
    means ``N(0, separation^2 / dim I)`` (so means sit about ``separation * sqrt(2)``
    apart); example ``i`` has class ``i % n_classes``.  Loss: softmax cross-entropy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from fastinit import rng
from fastinit._kernels.draw import weight_substream
from fastinit._validation import Int, Real, check_choice, check_dtype, check_no_extra, check_seed
from fastinit.train._kernels import CROSS_ENTROPY, MSE

__all__ = ["TASKS", "Task", "Dataset", "make_task", "get_task", "DATA_STREAM", "TEACHER_STREAM", "ORDER_STREAM"]

# Substreams of a task's data stream.
SUB_X, SUB_T, SUB_NOISE, SUB_MEANS = 0, 1, 2, 3

TEACHER_STREAM = rng.stream_id("fastinit.train", "teacher")
ORDER_STREAM = rng.stream_id("fastinit.train", "order")


@dataclass(frozen=True)
class Dataset:
    """A generated task: inputs ``x`` (n, n_inputs) and targets ``y``.

    ``y`` is int64 labels (n,) for cross-entropy tasks, float (n, n_outputs) for MSE.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    loss: int
    n_outputs: int
    params: Mapping[str, object]

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
    generate: Callable[..., tuple]  # (seed, data stream, **params) -> (x, y, loss, n_outputs)

    def resolve(self, **params) -> dict:
        """Validate ``params`` against the declaration and fill in defaults."""
        check_no_extra(f"task {self.name!r}", {k: v for k, v in params.items() if k not in self.params}, self.params)
        return {key: constraint.check(key, params.get(key, default)) for key, (default, constraint) in self.params.items()}


def _normal(seed, shape, stream, substream):
    return rng.standard_normal(seed, shape, stream=stream, substream=substream, dtype="float64")


def _teacher(seed, stream, *, n_train, in_dim, out_dim, teacher_depth, teacher_width, noise):
    x = _normal(seed, (n_train, in_dim), stream, SUB_X)
    h = x
    widths = [in_dim] + [teacher_width] * teacher_depth + [out_dim]
    for layer in range(1, len(widths)):
        w = _normal(seed, (widths[layer], widths[layer - 1]), TEACHER_STREAM, weight_substream(layer))
        h = h @ (w.T / math.sqrt(widths[layer - 1]))
        if layer < len(widths) - 1:
            h = np.tanh(h)
    y = h + noise * _normal(seed, (n_train, out_dim), stream, SUB_NOISE)
    std = y.std(axis=0)
    y = y / np.where(std > 0.0, std, 1.0)
    return x, y, MSE, out_dim


def _spirals(seed, stream, *, n_train, turns, noise):
    u = rng.uniform(seed, n_train, stream=stream, substream=SUB_T, dtype="float64")
    t = 0.1 + 0.9 * u
    label = np.arange(n_train) % 2
    angle = 2.0 * math.pi * turns * t + math.pi * label
    x = 2.0 * t[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    x += noise * _normal(seed, (n_train, 2), stream, SUB_NOISE)
    return x, label.astype(np.int64), CROSS_ENTROPY, 2


def _gaussians(seed, stream, *, n_train, n_classes, dim, separation):
    means = separation / math.sqrt(dim) * _normal(seed, (n_classes, dim), stream, SUB_MEANS)
    label = np.arange(n_train) % n_classes
    x = means[label] + _normal(seed, (n_train, dim), stream, SUB_X)
    return x, label.astype(np.int64), CROSS_ENTROPY, n_classes


_N_TRAIN = (512, Int(1))
_NOISE = (0.0, Real(0.0))
TASKS: dict[str, Task] = {t.name: t for t in (
    Task("teacher", "teacher-student regression (random tanh teacher), MSE",
         {"n_train": _N_TRAIN, "in_dim": (8, Int(1)), "out_dim": (1, Int(1)), "teacher_depth": (2, Int(0)),
          "teacher_width": (32, Int(1)), "noise": _NOISE}, _teacher),
    Task("spirals", "two interleaved 2-D spirals, 2 classes, softmax cross-entropy",
         {"n_train": _N_TRAIN, "turns": (1.5, Real(0.0, exclusive=True)), "noise": (0.05, Real(0.0))}, _spirals),
    Task("gaussians", "isotropic Gaussian mixture, several classes, softmax cross-entropy",
         {"n_train": _N_TRAIN, "n_classes": (4, Int(2)), "dim": (8, Int(1)), "separation": (3.0, Real(0.0))}, _gaussians),
)}
"""Every built-in task by name."""

DATA_STREAM: dict[str, int] = {name: rng.stream_id("fastinit.train", "data", name) for name in TASKS}


def get_task(name: str) -> Task:
    """Look up a task by name; ValueError with a did-you-mean hint for an unknown one."""
    return TASKS[check_choice("task", name, TASKS)]


def make_task(task: str, *, seed: int = 0, dtype="float32", **params) -> Dataset:
    """Generate a built-in task's training set.

    Parameters
    ----------
    task : {"teacher", "spirals", "gaussians"}
        Task name (see the module docstring for each generator).
    seed : int, default 0
        Root seed; the same seed and parameters give the same data bit for bit.
    dtype : {"float32", "float64"}, default "float32"
        dtype of ``x`` (and of ``y`` for regression).
    **params
        The task's parameters, e.g. ``n_train=512``, ``noise=0.05`` (``TASKS[task].params``).

    Returns
    -------
    Dataset
    """
    entry = get_task(task)
    resolved = entry.resolve(**params)
    seed = check_seed(seed)
    dtype = check_dtype(dtype)
    x, y, loss, n_outputs = entry.generate(seed, DATA_STREAM[entry.name], **resolved)
    x = np.ascontiguousarray(x, dtype=dtype)
    y = np.ascontiguousarray(y, dtype=np.int64 if loss == CROSS_ENTROPY else dtype)
    return Dataset(entry.name, x, y, loss, n_outputs, resolved)

