"""Fitted per-layer gains with confidence intervals, compared with theory.

For each cell group (every parameter but the replicate ``seed``) and each direction,
the per-layer gain is ``10**slope`` of the least-squares line of ``log10`` variance
against layer, fitted to each replicate separately; replicates are independent (their
random streams are), so the group's slope is the mean of theirs and its confidence
interval comes from their spread:

* ``method="t"`` (default): Student's t interval of the mean slope.  Exact when the per-seed
  slopes are normal, which they nearly are (sums of many small per-layer increments);
  on synthetic random-walk curves it covers 94.3-94.5 % at a nominal 95 % with 3, 5
  and 30 seeds (1,000 draws each, ``tests/test_fit.py``).
* ``method="bootstrap"``: the BCa bootstrap over seeds (``scipy.stats.bootstrap``).
  It needs many seeds: on the same curves it covers 86 % with 5 seeds and 93 % with
  30 (300 draws each).

So ``method="t"`` is the default; the bootstrap is there for statistics whose
sampling distribution is far from normal.

Directions follow the sweep's summary: forward gain multiplies the pre-activation
variance per layer on the way up (``10**slope``), backward gain multiplies the
gradient variance per layer on its way down (``10**-slope``).

Only measured layers are fitted.  Each group and direction has a ``status``
(:func:`fastinit.sweep.summary.pass_status`, decided per replicate and aggregated over
seeds): ``"ok"``, or e.g. ``"overflow at layer 61 (3/3 seeds)"``, ``"underflow at layer
k"``, ``"exact zero at layer 1 (3/3 seeds)"`` (zeros init: there is no gain to measure),
``"symmetric init"``, ``"saturated (58% at layer 100)"``, ``"dead units (...)"``.  Every
seed is fitted on the layers all seeds measured (before the earliest problem in the pass's
direction); with fewer than two such layers the gain and its interval are NaN -- never a
made-up 0.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from fastinit.sweep.spec import PROPAGATION_GROUP, TRAINING_GROUP
from fastinit.sweep.summary import log_slope, pass_status, run_diverged

__all__ = ["GROUP_COLUMNS", "TRAINING_GROUP", "slopes", "fit_gains", "compare", "spread", "spread_by_steps",
           "variance_interval", "default_target", "epochs_to_target"]

# Parameters that define a cell group (all but the replicate).
GROUP_COLUMNS = list(PROPAGATION_GROUP)
DIRECTIONS = {"forward": ("log10_fwd_var", 1.0), "backward": ("log10_grad_var", -1.0)}
_METHODS = ("t", "bootstrap")


def _group_columns(rows: pd.DataFrame) -> list[str]:
    return [column for column in GROUP_COLUMNS if column in rows.columns]


def slopes(rows: pd.DataFrame, *, first_layer: int = 1) -> pd.DataFrame:
    """Least-squares slope of log10 variance against layer for every replicate, on measured layers.

    Parameters
    ----------
    rows : pandas.DataFrame
        Per-layer rows (:func:`fastinit.sweep.load`), with ``seed`` and ``layer``.
    first_layer : int, default 1
        Fit layers ``>= first_layer`` (skip a transient, e.g. while tanh approaches
        its fixed point).

    Returns
    -------
    pandas.DataFrame
        One row per (group, seed): the group columns, ``seed``, ``forward_slope``,
        ``backward_slope`` (per layer, in log10 units, over the layers every seed of the
        group measured -- :func:`fastinit.sweep.summary.pass_status`; NaN when fewer than
        two) and ``forward_status``/``backward_status``.
    """
    if first_layer < 1:
        raise ValueError(f"first_layer must be an integer >= 1, got {first_layer}")
    group = _group_columns(rows)
    table = pass_status(rows, group)[[*group, "direction", "status", "fit_first", "fit_last"]]
    status = {(*row[:-4], row[-4]): row[-3:] for row in table.itertuples(index=False)}
    records = []
    for keys, frame in rows.groupby([*group, "seed"], sort=True, dropna=False):
        record = dict(zip([*group, "seed"], keys))
        layers = frame["layer"].to_numpy(dtype=np.float64)
        for direction, (column, _) in DIRECTIONS.items():
            text, fit_first, fit_last = status[(*keys[:-1], direction)]
            used = (layers >= max(first_layer, fit_first)) & (layers <= fit_last)
            record[f"{direction}_slope"] = log_slope(layers[used], frame[column].to_numpy(dtype=np.float64)[used])
            record[f"{direction}_status"] = text
        records.append(record)
    return pd.DataFrame.from_records(records)


def _interval(values: np.ndarray, level: float, method: str, seed: int) -> tuple[float, float, float]:
    """Mean and confidence interval of independent replicate slopes."""
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size < 2 or np.ptp(values) == 0.0:
        return mean, (mean if values.size >= 2 else math.nan), (mean if values.size >= 2 else math.nan)
    if method == "t":
        half = stats.t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size)
        return mean, mean - half, mean + half
    result = stats.bootstrap((values,), np.mean, confidence_level=level, method="BCa", n_resamples=4999,
                             random_state=np.random.default_rng(seed))
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def fit_gains(rows: pd.DataFrame, *, level: float = 0.95, method: str = "t", first_layer: int = 1,
              seed: int = 0) -> pd.DataFrame:
    """Fitted per-layer forward and backward gains with confidence intervals over seeds.

    Parameters
    ----------
    rows : pandas.DataFrame
        Per-layer rows of a sweep (:func:`fastinit.sweep.load`).
    level : float, default 0.95
        Confidence level of the intervals, in (0, 1).
    method : {"t", "bootstrap"}, default "t"
        How intervals are formed (module docstring).
    first_layer : int, default 1
        First layer of the fit.
    seed : int, default 0
        Seed of the bootstrap resampling (results are reproducible).

    Returns
    -------
    pandas.DataFrame
        One row per group and direction: the group columns, ``direction``
        ("forward" or "backward"), ``seeds``, ``gain``, ``gain_low``, ``gain_high``
        (the per-layer factor and its interval; NaN where fewer than two layers were
        measured), ``log10_gain`` with ``log10_gain_low``/``_high`` (the same on the
        log10 scale, where the interval is symmetric for ``method="t"``) and ``status``
        (module docstring).

    Raises
    ------
    ValueError
        For a level outside (0, 1) or an unknown method.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
    per_seed = slopes(rows, first_layer=first_layer)
    group = _group_columns(rows)
    records = []
    for keys, frame in per_seed.groupby(group, sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        for direction, (_, sign) in DIRECTIONS.items():
            mean, low, high = _interval(frame[f"{direction}_slope"].to_numpy(), level, method, seed)
            log10_gain, log10_low, log10_high = sign * mean, *sorted((sign * low, sign * high))
            used = int(frame[f"{direction}_slope"].notna().sum())  # replicates with a slope
            records.append({**dict(zip(group, keys)), "direction": direction, "seeds": used,
                            "log10_gain": log10_gain, "log10_gain_low": log10_low, "log10_gain_high": log10_high,
                            "gain": 10.0**log10_gain, "gain_low": 10.0**log10_low, "gain_high": 10.0**log10_high,
                            "status": frame[f"{direction}_status"].iloc[0]})
    return pd.DataFrame.from_records(records)


def compare(fits: pd.DataFrame, theory_gain) -> pd.DataFrame:
    """Add the theoretical gain and the difference in units of the confidence interval.

    Parameters
    ----------
    fits : pandas.DataFrame
        Output of :func:`fit_gains`.
    theory_gain : callable
        ``theory_gain(row) -> float``: the predicted per-layer gain of a fit row
        (e.g. from :mod:`analysis.theory`), NaN where theory has no prediction.

    Returns
    -------
    pandas.DataFrame
        ``fits`` with ``theory`` and ``deviation``: (fitted - theory) in log10 units,
        divided by the interval's half-width on that side (so |deviation| <= 1 means
        theory lies inside the interval).
    """
    out = fits.copy()
    out["theory"] = [float(theory_gain(row)) for row in out.itertuples(index=False)]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_theory = np.log10(out["theory"].to_numpy())
        difference = out["log10_gain"].to_numpy() - log_theory
        half = np.where(difference >= 0, out["log10_gain"] - out["log10_gain_low"],
                        out["log10_gain_high"] - out["log10_gain"])
        out["deviation"] = np.where(difference == 0, 0.0, difference / half)
    return out


def spread(rows: pd.DataFrame, column: str = "log10_fwd_var") -> pd.DataFrame:
    """Across-seed spread of ln variance per layer: the finite-width fluctuation.

    Parameters
    ----------
    rows : pandas.DataFrame
        Per-layer rows of a sweep.
    column : str, default "log10_fwd_var"
        A ``log10_*`` column.

    Returns
    -------
    pandas.DataFrame
        Per group and layer: ``seeds``, ``mean_ln`` and ``var_ln`` (sample variance
        across seeds of the natural log, ddof=1), and ``depth_over_width`` =
        layer / width, the x-axis of the finite-width theory (docs/theory.md section 4).
    """
    group = _group_columns(rows)
    ln = rows[column] * math.log(10.0)
    table = (rows.assign(_ln=ln).groupby([*group, "layer"], sort=True, dropna=False)["_ln"]
             .agg(seeds="count", mean_ln="mean", var_ln=lambda v: v.var(ddof=1)).reset_index())
    table["depth_over_width"] = table["layer"] / table["width"]
    return table


def variance_interval(variance, dof, level: float = 0.95):
    """Confidence interval of a normal sample variance from its chi-square pivot.

    Parameters
    ----------
    variance : array_like
        Sample variances.
    dof : array_like
        Their degrees of freedom (``n - 1`` for ``n`` samples, or an effective number).
    level : float, default 0.95
        Coverage.

    Returns
    -------
    tuple of numpy.ndarray
        ``(low, high)``; NaN where ``dof`` is 0 or not finite.
    """
    variance, dof = np.asarray(variance, dtype=np.float64), np.asarray(dof, dtype=np.float64)
    tail = (1.0 - level) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return dof * variance / stats.chi2.ppf(1.0 - tail, dof), dof * variance / stats.chi2.ppf(tail, dof)


def spread_by_steps(rows: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Var of ln Var(z_l) as the sum of the across-seed variances of its per-layer steps, with an interval.

    docs/theory.md section 4: ln M_l is a sum of independent per-layer steps, so its variance is
    the sum of theirs.  Each step's variance over seeds has seeds - 1 degrees of freedom,
    and the sum has Satterthwaite's effective degrees of freedom, about (seeds - 1) x
    layers: a test of the spread with many more samples than the seeds alone.

    Parameters
    ----------
    rows : pandas.DataFrame
        Per-layer rows of one network shape (``init``, ``seed``, ``layer``, ``width``,
        ``log10_fwd_var``).
    level : float, default 0.95
        Coverage of the intervals.

    Returns
    -------
    pandas.DataFrame
        Per initializer and layer: ``var_ln`` with ``var_ln_low``/``var_ln_high``, ``dof``
        (effective) and ``depth_over_width``.
    """
    records = []
    for init, frame in rows.groupby("init", sort=False):
        table = frame.pivot_table(index="layer", columns="seed", values="log10_fwd_var") * math.log(10.0)
        steps = table.diff()
        steps.iloc[0] = table.iloc[0]  # layer 1's own spread starts the sum
        variance = steps.var(axis=1, ddof=1).to_numpy()
        dof = steps.count(axis=1).to_numpy() - 1.0
        total = np.cumsum(variance)
        with np.errstate(divide="ignore", invalid="ignore"):  # one seed: no degree of freedom, NaN interval
            effective = total**2 / np.cumsum(variance**2 / dof)
        low, high = variance_interval(total, effective, level)
        records.append(pd.DataFrame({"init": init, "layer": table.index, "var_ln": total, "var_ln_low": low,
                                     "var_ln_high": high, "dof": effective}))
    out = pd.concat(records, ignore_index=True)
    out["depth_over_width"] = out["layer"] / int(rows.width.iloc[0])
    return out


# The default target loss, as a fraction of the median loss at initialization: 3/4 of
# chance level (ln 2) on two spirals is 0.52, which good 20-layer nets reach in a few
# epochs and poor ones do not.
TARGET_FRACTION = 0.75


def default_target(rows: pd.DataFrame) -> float:
    """:data:`TARGET_FRACTION` of the median training loss at initialization (epoch 0) over the rows' runs."""
    at_init = rows[(rows["epoch"] == 0) & (rows["layer"] == 1)]["loss"]
    return float(TARGET_FRACTION * np.nanmedian(at_init.to_numpy(dtype=np.float64)))


# Measures a run reaches from below (at least the target); losses are reached from above.
HIGHER_IS_BETTER = ("accuracy", "test_accuracy", "r2", "test_r2")


def epochs_to_target(rows: pd.DataFrame, target: float | None = None, *, level: float = 0.95,
                     measure: str = "loss") -> pd.DataFrame:
    """Epochs each training configuration needs to bring ``measure`` to ``target``, over seeds.

    Parameters
    ----------
    rows : pandas.DataFrame
        Training rows (``task != "none"``) of :func:`fastinit.sweep.load`.
    target : float, optional
        The target; for the training loss default :func:`default_target`, else required.
    level : float, default 0.95
        Confidence level of the interval.
    measure : str, default "loss"
        The per-epoch column: a loss is reached at or below ``target``, a measure in
        :data:`HIGHER_IS_BETTER` (e.g. ``"test_accuracy"``) at or above it.

    Returns
    -------
    pandas.DataFrame
        Per configuration: ``seeds``, ``reached`` (replicates that reached the target
        within their epochs), ``epochs`` (mean over those that reached it) with a
        Student-t interval ``epochs_low``/``epochs_high`` over them (NaN with fewer
        than two), ``diverged`` (replicates that diverged, :func:`fastinit.sweep.summary.run_diverged`) and
        ``target``.  Runs that never reach the target are counted, not averaged in:
        read ``epochs`` together with ``reached``.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if target is None and measure != "loss":
        raise ValueError(f"target is required for measure {measure!r} (the default is the training loss's)")
    target = default_target(rows) if target is None else float(target)
    higher = measure in HIGHER_IS_BETTER
    group = [c for c in TRAINING_GROUP if c in rows.columns]
    per_epoch = rows[rows["layer"] == 1]
    records = []
    for keys, frame in per_epoch.groupby(group, sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        hits, diverged = [], 0
        for _, run in frame.groupby("seed"):
            run = run.sort_values("epoch")
            diverged += int(run_diverged(run))
            values = run[measure].to_numpy(dtype=np.float64)
            reached = np.flatnonzero(values >= target if higher else values <= target)
            if reached.size:
                hits.append(float(run["epoch"].to_numpy()[reached[0]]))
        hits = np.array(hits)
        mean, low, high = (_interval(hits, level, "t", 0) if hits.size else (math.nan, math.nan, math.nan))
        records.append({**dict(zip(group, keys)), "seeds": frame["seed"].nunique(), "reached": int(hits.size),
                        "epochs": mean, "epochs_low": low, "epochs_high": high, "diverged": diverged,
                        "target": target})
    return pd.DataFrame.from_records(records)
