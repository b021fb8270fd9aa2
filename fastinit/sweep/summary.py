"""The end-of-sweep summary: for each activation, which initializer keeps variance flattest.

The per-layer factor comes from the least-squares slope of the mean (over replicates)
of ``log10`` variance against layer: forward, ``10**slope`` of the pre-activation
variance (what one layer multiplies it by on the way up); backward, ``10**-slope`` of
the dL/dz variance (what one layer multiplies the gradient by on its way down to the
input).  So in both directions 1 is flat, < 1 vanishes and > 1 explodes; 0 means the
signal vanished entirely (zero variance, e.g. zero init).  The analysis layer fits the same slopes with
confidence intervals; this is the quick look printed when a sweep finishes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fastinit.sweep.spec import PROPAGATION_SHAPE, TRAINING_GROUP

__all__ = ["layer_factors", "flattest", "log_slope", "training_table", "run_diverged"]

_GROUP = ["activation", "init", *PROPAGATION_SHAPE]


def log_slope(layers: np.ndarray, log10_values: np.ndarray) -> float:
    """Least-squares slope of ``log10_values`` against ``layers`` over the finite values.

    Parameters
    ----------
    layers, log10_values : numpy.ndarray
        Layer indices and a ``log10_*`` column of the same length.

    Returns
    -------
    float
        The slope per layer; ``-inf`` when every value is ``-inf`` (the signal
        vanished entirely), NaN when fewer than two values are finite.
    """
    if log10_values.size and np.all(np.isneginf(log10_values)):
        return -math.inf
    finite = np.isfinite(log10_values)
    if finite.sum() < 2:
        return math.nan
    x = layers[finite] - layers[finite].mean()
    y = log10_values[finite]
    return float(np.dot(x, y - y.mean()) / np.dot(x, x))


def _factor(layers: np.ndarray, log10_values: np.ndarray, direction: float) -> float:
    """``10**(direction * slope)``; ``direction`` is +1 forward, -1 backward; 0 if the signal vanished."""
    slope = log_slope(layers, log10_values)
    return 0.0 if slope == -math.inf else float(10.0 ** (direction * slope))


def layer_factors(rows: pd.DataFrame) -> pd.DataFrame:
    """Fitted per-layer forward and backward factors of every cell group.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows of :func:`fastinit.sweep.load`.

    Returns
    -------
    pandas.DataFrame
        One row per group of replicates: the group's parameters, ``forward`` and
        ``backward`` (per-layer factors) and ``flatness`` (``|log10 forward| +
        |log10 backward|``; 0 is perfectly flat, inf when a signal vanished).
    """
    group = [column for column in _GROUP if column in rows.columns]
    mean = rows.groupby([*group, "layer"], sort=True, dropna=False)[["log10_fwd_var", "log10_grad_var"]].mean()
    records = []
    for keys, frame in mean.groupby(level=group, sort=True, dropna=False):
        layers = frame.index.get_level_values("layer").to_numpy(dtype=np.float64)
        forward = _factor(layers, frame["log10_fwd_var"].to_numpy(), +1.0)
        backward = _factor(layers, frame["log10_grad_var"].to_numpy(), -1.0)
        with np.errstate(divide="ignore"):
            flatness = abs(np.log10(forward)) + abs(np.log10(backward))
        records.append({**dict(zip(group, keys)), "forward": forward, "backward": backward, "flatness": flatness})
    return pd.DataFrame.from_records(records)


def flattest(rows: pd.DataFrame) -> pd.DataFrame:
    """For each activation (and network shape), the initializer whose variance stays flattest.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows of :func:`fastinit.sweep.load`.

    Returns
    -------
    pandas.DataFrame
        Columns ``activation`` (and any other axis with more than one value), ``best``,
        ``forward`` and ``backward`` (its per-layer factors), ``runner_up``.
    """
    factors = layer_factors(rows)
    varying = [c for c in PROPAGATION_SHAPE if c in factors.columns and factors[c].nunique() > 1]
    records = []
    for keys, frame in factors.groupby(["activation", *varying], sort=True, dropna=False):
        ranked = frame.dropna(subset=["flatness"]).sort_values("flatness", kind="stable")
        if ranked.empty:
            continue
        best = ranked.iloc[0]
        keys = keys if isinstance(keys, tuple) else (keys,)
        records.append({**dict(zip(["activation", *varying], keys)), "best": best["init"],
                        "forward": best["forward"], "backward": best["backward"],
                        "runner_up": ranked.iloc[1]["init"] if len(ranked) > 1 else ""})
    return pd.DataFrame.from_records(records)


def run_diverged(run: pd.DataFrame) -> bool:
    """Whether one training run diverged: flagged by :func:`fastinit.train.run` (loss or weights
    non-finite) or with a non-finite training loss in its rows."""
    flagged = "diverged" in run.columns and bool(run["diverged"].fillna(False).astype(bool).any())
    return flagged or not np.isfinite(run["loss"].to_numpy(dtype=np.float64)).all()


def training_table(rows: pd.DataFrame) -> pd.DataFrame:
    """For each training configuration: final loss and accuracy over replicates, and divergence.

    Parameters
    ----------
    rows : pandas.DataFrame
        Rows of :func:`fastinit.sweep.load` from training cells (``task != "none"``).

    Returns
    -------
    pandas.DataFrame
        The configuration columns that vary, ``seeds``, ``final_loss`` (median over
        replicates of the last finite epoch's training loss), ``final_accuracy`` (mean)
        and ``diverged`` (replicates whose loss became non-finite, as ``k/n``).
    """
    group = [c for c in TRAINING_GROUP if c in rows.columns]
    varying = [c for c in group if rows[c].nunique() > 1] or ["init"]
    per_epoch = rows[rows["layer"] == 1]
    records = []
    for keys, frame in per_epoch.groupby(varying, sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        finals, accuracies, diverged = [], [], 0
        for _, run in frame.groupby("seed"):
            finite = run[np.isfinite(run["loss"])]
            diverged += int(run_diverged(run))
            finals.append(finite["loss"].iloc[-1] if len(finite) else math.nan)
            accuracies.append(finite["accuracy"].iloc[-1] if len(finite) else math.nan)
        seeds = frame["seed"].nunique()
        records.append({**dict(zip(varying, keys)), "seeds": seeds, "final_loss": float(np.nanmedian(finals)),
                        "final_accuracy": float(np.nanmean(accuracies)) if np.isfinite(accuracies).any() else math.nan,
                        "diverged": f"{diverged}/{seeds}"})
    return pd.DataFrame.from_records(records)
