"""One verdict per activation, about criticality: which studied initializer is near-critical, else which scale.

Both the terminal summary of ``python -m fastinit.sweep`` and the report's readings of
figures 1 and 2 are :func:`describe` of :func:`criticality`, so they cannot disagree.

What is judged.  A deep net at initialization is trainable when neither pass blows the
signal up or wipes it out over its depth.  The backward per-layer gain of the gradient
variance is the mean-field chi1 (Schoenholz et al. 2017; docs/theory.md section 3): the gradient
changes by ``chi1**L`` over ``L`` layers, and its depth scale is ``xi = -1 / ln chi1``.  For
a bounded activation (tanh, sigmoid) the forward variance settles at its fixed point q*
whatever the weight scale, so a flat forward curve alone says nothing -- a saturated,
chaotic tanh net is flat forward.  Hence both passes are weighed together:

* A cell group is *eligible* when both its forward and backward status are ``"ok"``
  (:mod:`analysis.fit`: no overflow, underflow or exact zero in either pass, no symmetric
  init, not saturated, no dead units) and both gains were measured.
* It is *near-critical* when over the studied depth ``L`` both the gradient variance and
  the forward variance change by at most a factor 10: ``|L log10 g| <= 1``
  (:data:`TOLERANCE_DECADES`) for the fitted backward gain and the forward gain alike.  For
  the gradient that is ``L <= ln(10) xi ~ 2.3 xi``: the net is within a couple of depth
  scales of the input, where Schoenholz et al. find every net still trains (they train to
  about 6 xi), while a net that loses ten decades over its depth is ordered or chaotic in
  any practical sense.  The test is on the point estimate; its interval is reported beside it.
* Among eligible groups the one with the smallest ``max(|L log10 g_forward|, |L log10
  g_backward|)`` is the *best*; ties go to the first in sorted order.

When no studied initializer is near-critical, the verdict says so and names the weight
scale that mean-field theory makes critical at the study's bias: ``sigma_w^2 =
analysis.theory.critical_sigma_w2(activation, sigma_b^2)`` (chi1 = 1 at q*), spelled for
the sweep as ``variance_scaling:scale=S,mode=fan_in`` (variance ``S / fan_in``), with the
registry's presets of that scale, and says whether that point is a usable fixed point: the
length map is run from the input's variance (:func:`analysis.theory.fixed_point`); at q* = 0
the point is only marginal (the variance decays algebraically), and where the map runs
away from it (gelu, silu without bias: q* = inf, chi1 = 2) no weight scale alone is critical.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from analysis import fit, theory
from fastinit.initializers import INITIALIZERS, get_initializer
from fastinit.sweep.spec import PROPAGATION_SHAPE

__all__ = ["TOLERANCE_DECADES", "criticality", "describe", "reading"]

TOLERANCE_DECADES = 1.0
"""Largest change, in decades, of each pass's variance over the studied depth that is near-critical."""
# Input variance of every studied net (fastinit.propagate's input_std = 1): the length map starts there.
_INPUT_VARIANCE = 1.0
# A studied preset "gives" a critical scale when its sigma_w^2 matches to this relative tolerance
# (leaky_relu's 2 / (1 + 0.01^2) is he_normal's 2 to 1e-4).
_SAME_SCALE = 1e-3
_SHOWN_PRESETS = 3
_NO_THEORY = {"critical_sigma_w2": math.nan, "critical_q": math.nan, "critical_chi1": math.nan, "critical_init": "",
              "critical_presets": ""}


def _names(rows: pd.DataFrame, column: str) -> dict:
    """Label -> (registry name, params) of the rows' initializers or activations."""
    name, params = f"{column}_name", f"{column}_params"
    if name not in rows.columns:
        return {label: (label, {}) for label in rows[column].unique()}
    pairs = rows[[column, name, params]].drop_duplicates(column)
    return {row[0]: (row[1], json.loads(row[2])) for row in pairs.itertuples(index=False)}


def _mean_field(activation, params, sigma_w2, sigma_b2):
    """(q*, chi1 at q*) reached from the input's first-layer variance."""
    q0 = max(sigma_w2 * _INPUT_VARIANCE + sigma_b2, 1e-300)
    q_star = float(theory.fixed_point(activation, sigma_w2, sigma_b2, q0=q0, activation_params=params))
    if math.isnan(q_star):
        return math.nan, math.nan
    if math.isinf(q_star):
        # chi1's own fixed point (from q0 = 1) takes the limit q -> inf; it is ours when it runs away too.
        same = math.isinf(float(theory.fixed_point(activation, sigma_w2, sigma_b2, activation_params=params)))
        chi = float(theory.chi1(activation, sigma_w2, sigma_b2, activation_params=params)) if same else math.nan
        return q_star, chi
    return q_star, float(theory.chi1(activation, sigma_w2, sigma_b2, q=q_star, activation_params=params))


def _sigma_w2(init_name, init_params, width) -> float:
    """fan_in Var(W) of a studied initializer in a dense layer of equal widths."""
    entry = get_initializer(init_name)
    return entry.variance(width, width, 1, **entry.resolve(**init_params)) * width


def _presets(sigma_w2: float, width: int) -> list[str]:
    """Registry initializers whose default parameters give ``sigma_w2`` at this width."""
    found = []
    for name, entry in INITIALIZERS.items():
        try:
            value = entry.variance(width, width, 1, **entry.resolve()) * width
        except (TypeError, ValueError):  # a required parameter (constant's value): no default scale
            continue
        if math.isclose(value, sigma_w2, rel_tol=_SAME_SCALE):
            found.append(name)
    return found


def _spelling(sigma_w2: float) -> str:
    return f"variance_scaling:scale={sigma_w2:.3g},mode=fan_in"


def _critical_scale(activation, params, sigma_b2, width) -> dict:
    """Mean-field critical weight variance at this bias, its registry spelling and whether it is a usable point."""
    sigma_w2 = float(theory.critical_sigma_w2(activation, sigma_b2, activation_params=params))
    if not math.isfinite(sigma_w2):
        return dict(_NO_THEORY)
    q_star, chi = _mean_field(activation, params, sigma_w2, sigma_b2)
    return {"critical_sigma_w2": sigma_w2, "critical_q": q_star, "critical_chi1": chi,
            "critical_init": _spelling(sigma_w2), "critical_presets": ", ".join(_presets(sigma_w2, width))}


def _wide(fits: pd.DataFrame) -> pd.DataFrame:
    """One row per group: forward_* and backward_* gain, interval and status side by side."""
    group = [c for c in fit.GROUP_COLUMNS if c in fits.columns]
    parts = []
    for direction in ("forward", "backward"):
        part = fits[fits["direction"] == direction].set_index(group)[["gain", "gain_low", "gain_high", "status"]]
        parts.append(part.add_prefix(f"{direction}_"))
    return parts[0].join(parts[1], how="outer").reset_index()


def criticality(rows: pd.DataFrame, *, fits: pd.DataFrame | None = None) -> pd.DataFrame:
    """The criticality verdict for every activation and network shape of a study.

    Parameters
    ----------
    rows : pandas.DataFrame
        Per-layer propagation rows (:func:`fastinit.sweep.load`, ``task == "none"``).
    fits : pandas.DataFrame, optional
        :func:`analysis.fit.fit_gains` of ``rows`` (computed when not given).

    Returns
    -------
    pandas.DataFrame
        One row per activation and shape (the ``PROPAGATION_SHAPE`` columns present), in
        sorted order: ``verdict`` (``"near-critical"``, ``"not near-critical"`` or ``"not
        measured"``: no eligible group), ``best`` (the eligible initializer closest to
        critical, ``""`` if none), its ``forward``/``backward`` gains with ``_low``/``_high``
        intervals, ``forward_decades``/``backward_decades`` (``depth * log10 gain``: the
        change over the depth), ``chi1`` (mean field at the best's sigma_w^2 and q*),
        ``near`` (every near-critical initializer, comma-separated), ``studied`` (every
        initializer of the group, comma-separated), ``excluded`` (the
        initializers that were not eligible, with their statuses), and the theory's
        ``critical_sigma_w2``, ``critical_q``, ``critical_chi1`` (chi1 at the q* reached from
        the input there), ``critical_init`` (its ``--init`` spelling) and
        ``critical_presets`` (registry names of that scale).  Residual and batch-norm nets
        have no mean-field critical scale here: those columns are NaN or empty.
    """
    fits = fit.fit_gains(rows) if fits is None else fits
    wide = _wide(fits)
    shape = [c for c in PROPAGATION_SHAPE if c in wide.columns]
    inits, activations = _names(rows, "init"), _names(rows, "activation")
    records = []
    for keys, frame in wide.groupby(["activation", *shape], sort=True, dropna=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        cell = dict(zip(["activation", *shape], keys))
        depth, width = int(cell.get("depth", 1)), int(cell.get("width", 1))
        sigma_b2 = float(cell.get("bias_std", 0.0)) ** 2
        activation, act_params = activations[cell["activation"]]
        with np.errstate(divide="ignore", invalid="ignore"):
            forward_decades = depth * np.log10(frame["forward_gain"].to_numpy(dtype=np.float64))
            backward_decades = depth * np.log10(frame["backward_gain"].to_numpy(dtype=np.float64))
        score = np.maximum(np.abs(forward_decades), np.abs(backward_decades))
        eligible = ((frame["forward_status"] == "ok") & (frame["backward_status"] == "ok")).to_numpy() & np.isfinite(
            score)
        near = eligible & (score <= TOLERANCE_DECADES)
        order = np.argsort(np.where(eligible, score, np.inf), kind="stable")
        record = {**cell, "verdict": "near-critical" if near.any() else (
            "not near-critical" if eligible.any() else "not measured")}
        best = order[0] if eligible.any() else None
        if best is not None:
            row = frame.iloc[best]
            init_name, init_params = inits[row["init"]]
            q_star, chi = _mean_field(activation, act_params, _sigma_w2(init_name, init_params, width), sigma_b2)
            record.update({"best": row["init"], "forward_decades": forward_decades[best],
                           "backward_decades": backward_decades[best], "chi1": chi})
            for direction in ("forward", "backward"):
                for suffix in ("", "_low", "_high"):
                    record[f"{direction}{suffix}"] = row[f"{direction}_gain{suffix}"]
        else:
            record.update({"best": "", "chi1": math.nan})
        record["near"] = ", ".join(frame["init"].to_numpy()[order][near[order]])
        record["studied"] = ", ".join(frame["init"])
        record["excluded"] = "; ".join(f"{row.init} ({_status_text(row)})"
                                       for row, ok in zip(frame.itertuples(index=False), eligible) if not ok)
        plain = not cell.get("residual", 0.0) and not cell.get("batchnorm", False)
        record.update(_critical_scale(activation, act_params, sigma_b2, width) if plain else _NO_THEORY)
        records.append(record)
    table = pd.DataFrame.from_records(records)
    table.attrs["varying"] = [c for c in shape if table[c].nunique() > 1]
    return table


def _status_text(row) -> str:
    """A group's statuses in one phrase: once when both passes agree, else per pass."""
    forward, backward = (str(status).split("; ") for status in (row.forward_status, row.backward_status))
    shared = [part for part in forward if part in backward and part != "ok"]
    own = [f"{name} {part}" for name, parts in (("forward", forward), ("backward", backward)) for part in parts
           if part not in shared and part != "ok"]
    return "; ".join(own + shared)


def _beyond_plain(row) -> bool:
    """A residual branch or a norm: the plain net's chi1 is not this net's per-layer gain."""
    return bool(row.residual or row.batchnorm or getattr(row, "norm", "none") not in ("none", None))


def _gains(row) -> str:
    theory_note = ("plain-net mean-field chi1 does not apply to a residual or normalised net" if _beyond_plain(row)
                   else f"theory {row.chi1:.3f}: mean-field chi1")
    return (f"forward {row.forward:.3f} [{row.forward_low:.3f}, {row.forward_high:.3f}], backward "
            f"{row.backward:.3f} [{row.backward_low:.3f}, {row.backward_high:.3f}] per layer ({theory_note}); "
            f"variance x{10.0 ** row.forward_decades:.3g} and gradient "
            f"x{10.0 ** row.backward_decades:.3g} over {int(row.depth)} layers")


def _theory_text(row) -> str:
    sigma_b2 = float(getattr(row, "bias_std", 0.0)) ** 2
    if not math.isfinite(row.critical_sigma_w2):
        if _beyond_plain(row):
            return "Mean-field theory here has no residual branch or norm, so it names no critical scale."
        return f"Mean-field theory finds no critical weight variance at sigma_b^2 = {sigma_b2:g}."
    presets = row.critical_presets.split(", ") if row.critical_presets else []
    studied = [name for name in presets if name in row.studied.split(", ")]
    shown = ", ".join(presets[:_SHOWN_PRESETS]) + (f"; studied: {', '.join(studied)}" if studied else "")
    spelled = f"--init {row.critical_init}" + (f" (as {shown})" if presets else "")
    head = f"Mean-field theory: chi1 = 1 at sigma_w^2 = {row.critical_sigma_w2:.3g}, i.e. {spelled}"
    if row.critical_q == 0.0:
        return (head + "; only marginally: there q* = 0, so the variance decays algebraically instead of staying "
                "flat, and a bias (sigma_b^2 > 0) is needed for a critical point with q* > 0.")
    if math.isfinite(row.critical_q) and abs(row.critical_chi1 - 1.0) < 1e-6:
        return head + f" (fixed point q* = {row.critical_q:.3g})."
    return (f"Mean-field theory's critical line meets sigma_b^2 = {sigma_b2:g} at sigma_w^2 = "
            f"{row.critical_sigma_w2:.3g} ({spelled}), but from the input's variance the length map runs to q* = "
            f"{row.critical_q:.3g}, where chi1 = {row.critical_chi1:.3g}: no weight scale alone is critical at "
            f"sigma_b^2 = {sigma_b2:g}.")


def describe(table: pd.DataFrame) -> list[str]:
    """One sentence (or two) per row of :func:`criticality`: the verdict, in words.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`criticality`.

    Returns
    -------
    list of str
        Per activation (and shape, where the table's shapes differ), e.g. ``"relu: he_normal is
        near-critical (forward 0.981 [...], backward 0.993 [...] per layer ...)."`` or ``"tanh:
        no studied initializer is near-critical ...; closest xavier_normal (...). Mean-field
        theory: chi1 = 1 at sigma_w^2 = 1, ..."``.
    """
    varying = table.attrs.get("varying", [])
    sentences = []
    for row in table.itertuples(index=False):
        label = row.activation + (" (" + ", ".join(f"{c} {getattr(row, c)}" for c in varying) + ")" if varying else "")
        excluded = f"; excluded: {row.excluded}" if row.excluded else ""
        tolerance = (f"forward and gradient variance each within a factor {10 ** TOLERANCE_DECADES:g} over "
                     f"{int(row.depth)} layers")
        if row.verdict == "near-critical":
            others = [name for name in row.near.split(", ") if name and name != row.best]
            also = f"; also near-critical: {', '.join(others)}" if others else ""
            sentences.append(f"{label}: {row.best} is near-critical ({_gains(row)}){also}{excluded}.")
        elif row.verdict == "not near-critical":
            sentences.append(f"{label}: no studied initializer is near-critical ({tolerance}); closest {row.best} "
                             f"({_gains(row)}){excluded}. {_theory_text(row)}")
        else:
            sentences.append(f"{label}: no studied initializer was measured in both passes{excluded}. "
                             f"{_theory_text(row)}")
    return sentences


def reading(table: pd.DataFrame) -> str:
    """:func:`describe`'s sentences joined into one paragraph."""
    return " ".join(describe(table))
