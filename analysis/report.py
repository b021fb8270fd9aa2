"""``python -m analysis.report RESULTS_DIR --out DIR``: figures and tables of a study, against theory.

Reads a sweep's results (``fastinit.sweep.load``), fits per-layer gains with
confidence intervals (:mod:`analysis.fit`), computes the mean-field predictions
(:mod:`analysis.theory`) and writes, for a paper:

1. forward variance against layer, a panel per activation, theory dashed;
2. the same for gradients;
3. fitted gains against theory, with intervals;
4. the finite-width spread of log variance against depth/width (ReLU + He);
5. the tanh (sigma_w^2, sigma_b^2) phase diagram with the studied initializers;
6. a heatmap of the gradient variance reaching layer 1, initializer x activation;
12. for studies with tanh or relu, Jacobian spectra at criticality, Gaussian against orthogonal
    weights (:mod:`analysis.spectra`; the same figure for every such study);

for traces of PyTorch models (``fastinit.torch``): 10. the traced model beside the engine and
theory; and for training cells (``fastinit.train``, :mod:`analysis._training_report`): 7. training
loss against epoch; 8. epochs to the target loss with intervals over seeds; 9. the fraction of
diverged runs over (initializer, learning rate); 11. with a held-out set, epochs to 90 % held-out
accuracy; 13. with zero or constant inits, the distinct units per layer after training;

each as PDF, SVG and PNG (300 dpi), the fit table as CSV, Markdown and LaTeX (every gain with
its status; one not measured is empty or a dash, never a number), and an ``index.md`` /
``index.html`` with a reading under every figure (figures 1 and 2: the criticality verdict of
:mod:`analysis.verdict`, the one ``python -m fastinit.sweep`` prints).  Output is
byte-stable: the same results give the same files.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import math
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import figures, fit, spectra, theory, verdict  # noqa: E402
from analysis._figure_writer import FigureWriter, Later  # noqa: E402
from analysis._tables import NOT_MEASURED, markdown, matching  # noqa: E402
from analysis._training_report import HELD_OUT_TARGET, training_report  # noqa: E402
from fastinit.initializers import get_initializer  # noqa: E402
from fastinit.sweep.spec import PROPAGATION_SHAPE  # noqa: E402
from fastinit.sweep.store import ResultsError, load  # noqa: E402
from fastinit.sweep.summary import log_slope  # noqa: E402

__all__ = ["build_report", "theory_curves", "main", "HELD_OUT_TARGET"]

FORMATS = ("pdf", "svg", "png")
_SHAPE = list(PROPAGATION_SHAPE)
log = logging.getLogger("analysis.report")


class FormatError(ValueError):
    """An unknown figure format."""


# ------------------------------------------------------------------ statistics for the figures


def theory_curves(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean-field forward and backward curves of every cell group in ``rows``.

    Returns
    -------
    pandas.DataFrame
        The group columns, ``seed`` = 0, ``layer``, ``log10_fwd_var`` and
        ``log10_grad_var`` (shaped like sweep rows, so :mod:`analysis.fit` reads it).
    """
    columns = ["init", "activation", "init_name", "init_params", "activation_name", "activation_params", *_SHAPE]
    groups = rows[columns].drop_duplicates()
    frames = []
    for group in groups.itertuples(index=False):
        cell = group._asdict()
        curve = theory.predict(
            cell["init_name"], cell["activation_name"], int(cell["depth"]), int(cell["width"]),
            batch=int(cell["batch"]), bias_std=float(cell["bias_std"]), init_params=json.loads(cell["init_params"]),
            activation_params=json.loads(cell["activation_params"]),
            residual=float(cell["residual"]) if cell["residual"] > 0 else None,
            **({"norm": cell["norm"], "norm_at": cell["norm_at"]} if cell.get("norm", "none") != "none" else {}))
        frames.append(curve[["layer", "log10_fwd_var", "log10_grad_var"]].assign(**cell, seed=0))
    return pd.concat(frames, ignore_index=True)


def _theory_gains(curves: pd.DataFrame) -> dict:
    """Theory's per-layer gain of a group: the same least-squares slope, fitted to its curve."""
    per_group = fit.slopes(curves)
    gains = {}
    for row in per_group.itertuples(index=False):
        key = tuple(getattr(row, c) for c in fit.GROUP_COLUMNS if hasattr(row, c))
        if row.batchnorm or getattr(row, "norm", "none") != "none":
            continue  # no fitted-gain theory for normalised nets (their curves are drawn): none rather than a wrong one
        for direction, (_, sign) in fit.DIRECTIONS.items():
            slope = getattr(row, f"{direction}_slope")
            gains[(key, direction)] = 0.0 if slope == -math.inf else 10.0 ** (sign * slope)
    return gains


def _studied_points(rows: pd.DataFrame) -> pd.DataFrame:
    """Where each initializer sits in the mean-field plane: sigma_w^2 = fan_in Var(W), sigma_b^2 = bias_std^2."""
    records = []
    for group in rows[["init", "init_name", "init_params", "width", "bias_std"]].drop_duplicates().itertuples():
        entry = get_initializer(group.init_name)
        # Studies are dense nets: receptive field 1.
        variance = entry.variance(int(group.width), int(group.width), 1, **json.loads(group.init_params))
        records.append({"init": group.init, "sigma_w2": variance * group.width, "sigma_b2": group.bias_std**2})
    return pd.DataFrame.from_records(records).drop_duplicates()


def _in_study_order(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows ordered as the study lists initializers and activations (panels and legends follow)."""
    axes = rows.attrs.get("manifest", {}).get("study", {}).get("axes", {})
    ordered = rows.copy()
    for column in ("init", "activation"):
        present = set(rows[column].unique())
        listed = [v for v in axes.get(column, []) if v in present]
        categories = listed + sorted(present - set(listed))
        ordered[f"_{column}_rank"] = ordered[column].map({v: i for i, v in enumerate(categories)})
    order = ["_activation_rank", "_init_rank", "seed", *(["epoch"] if "epoch" in ordered.columns else []), "layer"]
    ordered = ordered.sort_values(order, kind="stable")
    ordered = ordered.drop(columns=["_init_rank", "_activation_rank"]).reset_index(drop=True)
    ordered.attrs = rows.attrs
    return ordered


def _shape_label(shape: dict) -> str:
    extras = [f"{k}={shape[k]}" for k in ("bias_std", "residual") if shape.get(k)]
    extras += ["batchnorm"] if shape.get("batchnorm") else []
    extras += [f"{shape['norm']} norm at {shape.get('norm_at', 'preact')}"] if shape.get("norm", "none") != "none" else []
    extras += [shape["dtype"]] if shape.get("dtype") != "float32" else []
    extras += [f"{shape['numerics']} numerics"] if shape.get("numerics") != "rescaled" else []
    return ", ".join([f"depth {shape['depth']}", f"width {shape['width']}", f"batch {shape['batch']}", *extras])


def _shape_slug(shape: dict) -> str:
    return f"d{shape['depth']}_w{shape['width']}_b{shape['batch']}" + "".join(
        f"_{k}{shape[k]:g}" for k in ("bias_std", "residual") if shape.get(k)) + (
        "_bn" if shape.get("batchnorm") else "") + (
        f"_{shape['norm']}_{shape.get('norm_at', 'preact')}" if shape.get("norm", "none") != "none" else "") + (
        "" if shape.get("dtype") == "float32" else "_f64") + (
        "" if shape.get("numerics") == "rescaled" else "_raw")


# ------------------------------------------------------------------ writing


# How a table shows a number that was not measured (NaN): a dash, never a digit; the status says why.
def _write_tables(compared: pd.DataFrame, directory: Path) -> list[str]:
    """gains.csv, .md and .tex: every fitted gain with its interval, theory and status.

    A gain that was not measured (overflow, exact zero ...: :mod:`analysis.fit`) is empty in the
    CSV and a dash in Markdown and LaTeX, and its ``status`` says why.
    """
    columns = ["init", "activation", *[c for c in _SHAPE if compared[c].nunique() > 1], "direction", "seeds", "gain",
               "gain_low", "gain_high", "theory", "deviation", "status"]
    table = compared[columns].sort_values(["activation", "init", "direction"], kind="stable")
    table.to_csv(directory / "gains.csv", index=False, float_format="%.6g")
    (directory / "gains.md").write_text(markdown(table))
    (directory / "gains.tex").write_text(table.to_latex(index=False, float_format="%.4g", escape=True,
                                                        na_rep=NOT_MEASURED["tex"]))
    return ["gains.csv", "gains.md", "gains.tex"]


def _variance_reading(table: pd.DataFrame, direction: str) -> str:
    """The reading of figure 1 (forward) or 2 (backward): the study's criticality verdict.

    Both figures carry the same verdict (:mod:`analysis.verdict`, the one the sweep prints),
    since criticality weighs the two passes together.
    """
    lead = ("Forward variance per layer; for a bounded activation it settles at its fixed point q* whatever the "
            "weight scale, so the verdict weighs both passes" if direction == "forward" else
            "Gradient variance per layer; its per-layer gain is the mean-field chi1")
    return f"{lead}. Criticality — " + verdict.reading(table)


def _digits(*values, spread: float) -> int:
    """Decimals that show ``spread`` (an interval's half-width) to two significant digits and tell ``values`` apart."""
    finite = [v for v in values if np.isfinite(v)]
    decimals = 1 - math.floor(math.log10(spread)) if np.isfinite(spread) and spread > 0 else 3
    decimals = max(decimals, 3)
    while decimals < 12 and len({round(v, decimals) for v in finite}) < len(set(finite)):
        decimals += 1
    return decimals


def _estimate_text(gain: float, low: float, high: float, theory_gain: float) -> str:
    """``gain [low, high], theory t`` with the digits that carry the comparison (:func:`_digits`)."""
    d = _digits(gain, low, high, theory_gain, spread=min(abs(gain - low), abs(high - gain)))
    return f"{gain:.{d}f} [{low:.{d}f}, {high:.{d}f}], theory {theory_gain:.{d}f}"


def _gain_reading(compared: pd.DataFrame) -> str:
    """Fig 3's caption: how many fitted gains hold theory inside their interval, and the largest miss."""
    drawn = figures.drawable_gains(compared)
    data = compared[drawn & np.isfinite(compared.deviation)]
    if data.empty:
        return "No fitted gain has a theoretical counterpart."
    inside = int((data.deviation.abs() <= 1).sum())
    worst = data.iloc[int(np.argmax(data.deviation.abs().to_numpy()))]
    percent = 100 * (worst.gain / worst.theory - 1)
    skipped = len(compared) - len(data)
    return (f"{inside} of {len(data)} fitted gains have theory inside their 95 % interval; the largest miss is "
            f"{worst.init} + {worst.activation} {worst.direction} "
            f"({_estimate_text(worst.gain, worst.gain_low, worst.gain_high, worst.theory)}; {percent:+.2g} %, "
            f"{worst.deviation:+.1f} half-widths)."
            + (f" {skipped} gains without an estimate, interval or theory are not drawn (listed under the figure)."
               if skipped else ""))


def build_report(results, out, *, formats=FORMATS) -> Path:
    """Write every figure, table and the index of a study's report.

    Parameters
    ----------
    results : str or path-like
        A sweep's results directory.
    out : str or path-like
        Where the report goes (created; existing report files are replaced).
    formats : iterable of {"pdf", "svg", "png"}
        Figure formats.

    Returns
    -------
    pathlib.Path
        The ``index.md`` written.

    Raises
    ------
    fastinit.sweep.ResultsError
        If ``results`` is not a sweep's results directory or holds no finished cell.
    FormatError
        For an unknown format.
    """
    formats = tuple(formats)
    for extension in formats:
        if extension not in FORMATS:
            raise FormatError(f"format must be a comma-separated subset of {','.join(FORMATS)}, got {extension!r}")
    start = time.perf_counter()
    rows = _in_study_order(load(results))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures.apply_style()
    with FigureWriter(out, formats) as writer:
        trains = rows["task"] != "none" if "task" in rows.columns else np.zeros(len(rows), dtype=bool)
        sections, tables = [], []
        if not trains.all():
            propagation = rows[~trains]
            propagation.attrs = rows.attrs
            # First: it needs none of the fits and theory below, so it is drawn while they run.
            spectra_section = _spectra_section(writer) if {"tanh", "relu"} & set(propagation.activation) else None
            more_sections, more_tables = _propagation_report(propagation, out, writer, spectra_section)
            sections += more_sections
            tables += more_tables
        if trains.any():
            training = rows[trains]
            training.attrs = rows.attrs
            more_sections, more_tables = training_report(training, out, writer)
            sections += more_sections
            tables += more_tables
    sections = [(name, files, reading.value if isinstance(reading, Later) else reading)
                for name, files, reading in sections]
    index = _write_index(out, results, rows, sections, tables)
    log.info("report of %s written to %s in %.1f s", results, out, time.perf_counter() - start)
    return index


def _propagation_report(rows, out, writer, spectra_section=None):
    """Figures 1-6 and the gain table of the propagation cells (and figure 12, started by the caller)."""
    curves = theory_curves(rows)
    gains = _theory_gains(curves)
    fits = fit.fit_gains(rows)
    compared = fit.compare(fits, lambda row: gains.get(
        (tuple(getattr(row, c) for c in fit.GROUP_COLUMNS if hasattr(row, c)), row.direction), math.nan))
    sections = []
    shapes = rows[_SHAPE].drop_duplicates().to_dict("records")
    for shape in shapes:
        mask = matching(rows, shape)
        theory_mask = matching(curves, shape)
        verdicts = verdict.criticality(rows[mask], fits=fits[matching(fits, shape)])
        for number, direction in ((1, "forward"), (2, "backward")):
            name = f"fig{number}_{direction}_{_shape_slug(shape)}"
            figure = figures.variance_figure(rows[mask], direction=direction, theory=curves[theory_mask])
            figure.suptitle(f"{'Forward' if direction == 'forward' else 'Gradient'} variance, {_shape_label(shape)}")
            sections.append((name, writer.save(figure, name),
                             _variance_reading(verdicts, direction) + _range_note(rows[mask], direction)))
    figure = figures.gain_figure(compared, inits=list(dict.fromkeys(rows.init)),
                                 activations=list(dict.fromkeys(rows.activation)))
    sections.append(("fig3_gain_vs_theory", writer.save(figure, "fig3_gain_vs_theory"),
                     _gain_reading(compared)))
    sections.append(_spread_section(rows, writer))
    sections.append(_phase_section(rows, writer))
    sections.append(_heatmap_section(rows, shapes[0], writer))
    if spectra_section is not None:
        sections.append(spectra_section)
    if "source" in rows.columns and (rows["source"] == "trace").any():  # fastinit.torch.save_trace's directories
        sections.append(_trace_section(rows, curves, writer))
    return sections, _write_tables(compared, out)


# The columns that pair a traced model's rows with the engine's and theory's for the same init.
_PAIRING = ["init_name", "init_params", "activation", *_SHAPE]


def _trace_section(rows, curves, writer):
    """Figure 10: each traced model beside the engine (``fastinit.propagate``) and theory, for the same init."""
    name = "fig10_trace_vs_engine"
    means, parts = [], []
    traced_groups = rows[rows["source"] == "trace"][_PAIRING].drop_duplicates().to_dict("records")
    for group in traced_groups:
        mine = rows[matching(rows, group)]
        label = mine.loc[mine["source"] == "engine", "init"].iloc[0] if (mine["source"] == "engine").any() else (
            mine["init"].iloc[0])
        theory_rows = curves[matching(curves, {k: v for k, v in group.items() if k in curves.columns})]
        sources = [("traced", mine[mine["source"] == "trace"]), ("engine", mine[mine["source"] == "engine"]),
                   ("theory", theory_rows.drop_duplicates("layer"))]
        factors = {}
        for source, frame in sources:
            if frame.empty:
                continue
            # the mean over seeds of log10 variance (aggregated here, not on a log axis: style guide 12)
            curve = frame.groupby("layer", sort=True)[["log10_fwd_var", "log10_grad_var"]].mean().reset_index()
            means.append(curve.assign(init=f"{label} + {group['activation']}", source=source))
            factors[source] = {d: 10.0 ** (sign * log_slope(curve["layer"].to_numpy(), curve[column].to_numpy()))
                               for d, (column, sign) in fit.DIRECTIONS.items()}
        parts.append(f"{label} + {group['activation']}: per-layer factor forward " + ", ".join(
            f"{s} {f['forward']:.3g}" for s, f in factors.items()) + "; backward " + ", ".join(
            f"{s} {f['backward']:.3g}" for s, f in factors.items()))
    curves_drawn = pd.concat(means, ignore_index=True)
    figure = figures.trace_figure(curves_drawn, title="Traced PyTorch models, the engine and theory, same init")
    reading = ("Solid: the traced torch model (fastinit.torch.trace; mean of log10 variance over replicates); "
               "dashed: fastinit.propagate with the same initializer, shape, seed and stream; dotted: mean-field "
               "theory (analysis.theory.predict). Per-layer factors (least-squares slope of the curve: forward "
               "10^slope, backward 10^-slope) — " + "; ".join(parts) + ".")
    return name, writer.save(figure, name), reading


def _range_note(rows, direction: str) -> str:
    """Where figure 1/2's curves leave the float range or are not drawn, layer by layer (a sentence, or "")."""
    ends = figures.curve_ends(figures.curve_summary(rows, direction), direction)
    parts = []
    exits = ends[ends.end.isin(["overflow", "underflow"]) & ends.last_layer.notna()]
    for (init, end), frame in exits.groupby(["init", "end"], sort=False):
        where = [f"{int(layer)} ({', '.join(group.activation)})"
                 for layer, group in frame.groupby("last_layer", sort=False)]
        parts.append(f"{init} {end}s after layer " + ", ".join(where))
    never = ends[ends.last_layer.isna()]
    missing = []
    for init, frame in never.groupby("init", sort=False):
        where = "every activation" if frame.activation.nunique() == rows.activation.nunique() else ", ".join(
            frame.activation)
        missing.append(f"{init} ({'/'.join(dict.fromkeys(frame.end))}: {where})")
    text = ""
    if parts:
        text += " Curves that leave the float range end in a triangle: " + "; ".join(parts) + "."
    if missing:
        text += " Not drawn, no finite layer: " + "; ".join(missing) + "."
    return text


def _two(value: float) -> str:
    """Two significant digits, without an exponent for values up to 10^4."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2g}"


def _spread_section(rows, writer):
    name = "fig4_finite_width_spread"
    plain = (rows.bias_std == 0) & (rows.residual == 0) & ~rows.batchnorm.astype(bool)
    relu_he = rows[plain & (rows.activation_name == "relu") & rows.init_name.isin(["he_normal", "he_uniform"])]
    relu_he = relu_he[relu_he.depth == relu_he.depth.max()] if not relu_he.empty else relu_he
    relu_he = relu_he[relu_he.width == relu_he.width.min()] if not relu_he.empty else relu_he
    if not relu_he.empty:  # one network shape: the steps of different shapes must not be mixed
        relu_he = relu_he[matching(relu_he, relu_he[_SHAPE].iloc[0].to_dict())]
    if relu_he.empty or relu_he.seed.nunique() < 2 or not np.isfinite(relu_he.log10_fwd_var).all():
        return name, [], "Not drawn: the study has no ReLU + He cells with two or more seeds and finite variances."
    measured = fit.spread(relu_he)
    measured["var_ln_low"], measured["var_ln_high"] = fit.variance_interval(measured.var_ln, measured.seeds - 1)
    pooled = fit.spread_by_steps(relu_he)
    depth = int(relu_he.depth.max())
    width = int(relu_he.width.min())
    # z_l = W_l h_{l-1}: the spread of h_{l-1} (theory row l - 1, none at l = 1) plus z_l's own chi^2_n / n
    # factor over its units, variance 2 / n (log_variance_spread's docstring), drawn at beta_l = l / n.
    spread_h = theory.log_variance_spread(depth, width, activation="relu")
    predicted = pd.DataFrame({"layer": spread_h.layer, "depth_over_width": spread_h.beta,
                              "var_ln": np.concatenate([[0.0], spread_h.var_ln.to_numpy()[:-1]]) + 2.0 / width})
    figure = figures.spread_figure(measured, predicted, pooled=pooled, title="ReLU + He: finite-width fluctuations")
    expected = float(predicted.var_ln.iloc[-1])
    parts, findings = [], []
    for init, frame in measured.groupby("init", sort=False):
        last = frame[frame.layer == frame.layer.max()].iloc[0]
        steps = pooled[(pooled.init == init) & (pooled.layer == last.layer)].iloc[0]
        finding = ("inside the interval" if steps.var_ln_low <= expected <= steps.var_ln_high else
                   "below the interval" if steps.var_ln_low > expected else "above the interval")
        findings.append(finding)
        parts.append(f"{init}: across {int(last.seeds)} seeds {_two(last.var_ln)} (95 % interval "
                     f"[{_two(last.var_ln_low)}, {_two(last.var_ln_high)}], {int(last.seeds) - 1} degrees of freedom); "
                     f"summed over the per-layer steps {steps.var_ln:.2f} [{steps.var_ln_low:.2f}, "
                     f"{steps.var_ln_high:.2f}] ({steps.dof:.0f} effective degrees of freedom), theory {finding} "
                     f"(measured/theory {steps.var_ln / expected:.2f})")
    low, high = fit.variance_interval(1.0, int(relu_he.seed.nunique()) - 1)
    factor = high / low
    outcome = ("confirm it at this depth" if all(f == "inside the interval" for f in findings) else
               "refute it at this depth (theory outside the interval)")
    reading = (f"At depth/width β = {depth / width:.2f} the one-input theory of Hanin & Rolnick (2018) gives "
               f"Var ln Var(z_L) = 5(L - 1)/n + 2/n = {expected:.2f}. "
               + "; ".join(parts) + f". The seeds alone cannot test it (their interval spans a factor of "
               f"{factor:.0f}); "
               f"the per-layer steps (independent by that theory) {outcome}. At small depth a batch of "
               f"{int(relu_he.batch.iloc[0])} uncorrelated inputs sharing the weights fluctuates less than one input.")
    return name, writer.save(figure, name), reading


def _phase_section(rows, writer):
    name = "fig5_tanh_phase_diagram"
    # A log sigma_w^2 axis wide enough for every studied scale (too small 0.01 to too large 64).
    sigma_w2 = np.geomspace(0.01, 100.0, 241)
    sigma_b2 = np.linspace(0.0, 0.25, 101)
    chi = theory.chi1("tanh", sigma_w2[None, :], sigma_b2[:, None])
    critical = theory.critical_sigma_w2("tanh", sigma_b2)
    studied = _studied_points(rows)
    figure = figures.phase_figure(sigma_w2, sigma_b2, chi, critical, studied,
                                  title=r"tanh: $\chi_1$ over ($\sigma_w^2$, $\sigma_b^2$)")
    phases = []
    for point in studied.itertuples(index=False):
        value = float(theory.chi1("tanh", point.sigma_w2, point.sigma_b2))
        state = "critical" if abs(value - 1) < 1e-3 else ("ordered" if value < 1 else "chaotic")
        where = "" if sigma_w2[0] <= point.sigma_w2 <= sigma_w2[-1] else ", off the axes"
        phases.append(f"{point.init} (σw² = {point.sigma_w2:.3g}, χ1 = {value:.3g}, {state}{where})")
    reading = (f"The critical line starts at σw² = {critical[0]:.2f} for σb² = 0 and reaches "
               f"{critical[-1]:.2f} at σb² = {sigma_b2[-1]:.2f}. Studied: " + ("; ".join(phases) or "none") + ".")
    return name, writer.save(figure, name), reading


def _heatmap_section(rows, shape, writer):
    name = "fig6_gradient_heatmap"
    mask = matching(rows, shape)
    summary = figures.curve_summary(rows[mask], "backward")
    ends = figures.curve_ends(summary, "backward").set_index(["init", "activation"])["end"]
    first = summary[summary.layer == 1].set_index(["init", "activation"])["mean"]
    inits, activations = list(dict.fromkeys(rows[mask].init)), list(dict.fromkeys(rows[mask].activation))
    table = first.unstack("activation").reindex(index=inits, columns=activations)
    status = ends.unstack("activation").reindex(index=inits, columns=activations).where(~np.isfinite(table), "")
    figure = figures.heatmap_figure(table, status=status.fillna(""),
                                    title=f"Gradient variance reaching layer 1\n({_shape_label(shape)})")
    finite = table.stack()
    finite = finite[np.isfinite(finite)]
    if finite.empty:
        plt.close(figure)
        return name, [], "Not drawn: no gradient reaches layer 1 in any cell (every one vanished or overflowed)."
    low, high = finite.idxmin(), finite.idxmax()
    counts = status.stack().value_counts()
    missing = [f"{int(counts[k])} exactly zero" for k in ["exactly zero"] if k in counts] + [
        f"{int(counts[k])} {k}" for k in ["overflow", "underflow"] if k in counts]
    reading = (f"After backpropagating through {shape['depth']} layers the gradient variance at layer 1 spans "
               f"10^{finite.min():.0f} ({low[0]} + {low[1]}) to 10^{finite.max():.0f} ({high[0]} + {high[1]}); "
               f"white is a gradient that arrives as large as it left (per-layer gain 1)."
               + (f" Cells without a number: {', '.join(missing)} (hatched: overflow or underflow)."
                  if missing else ""))
    return name, writer.save(figure, name), reading


def _spectra_section(writer):
    """Figure 12: Jacobian spectra at criticality, Gaussian against orthogonal weights (one net each).

    It is drawn from constants, not from the study's rows, so the writer builds it (in a child
    when it forks) while the report goes on; its reading is a :class:`~analysis._figure_writer.Later`
    until the writer closes.
    """
    name = "fig12_jacobian_spectra"
    later = writer.build_and_save(name, _spectra_figure)
    return name, later.files, later


def _spectra_figure():
    """Figure 12 and its reading."""
    depth, width = 32, 256
    measured, predicted = spectra.critical_spectra(depth=depth, width=width)
    figure = figures.spectra_figure(measured, predicted, title=f"Squared singular values of the input-output "
                                    f"Jacobian at one input at the fixed point, depth {depth}, width {width}")
    parts = []
    for case, rows in predicted.groupby("case", sort=False):
        by = rows.set_index("weights")
        parts.append(f"{case}: Gaussian weights spread the spectrum to variance {by.loc['gaussian', 'sample_variance']:.3g} "
                     f"(free-probability theory {by.loc['gaussian', 'variance']:.3g}), orthogonal ones to "
                     f"{by.loc['orthogonal', 'sample_variance']:.3g} (theory {by.loc['orthogonal', 'variance']:.3g})")
    reading = ("Dynamical isometry (Pennington et al. 2017), measured by fastinit.jacobian_singular_values, the mean "
               "1 in both: " + "; ".join(parts) + ". Orthogonal tanh near q* = 0 is close to isometry; ReLU is not, "
               "with either ensemble (half its units pass nothing). This figure is the same for every study.")
    return figure, reading


# What each table holds, by file stem (the index names a table only when the study wrote it).
_TABLE_NOTES = {"gains": "Fitted per-layer gains with 95 % intervals and theory",
                "epochs_to_target": "Epochs to the target loss with 95 % intervals",
                "epochs_to_held_out_accuracy": "Epochs to 90 % held-out accuracy with 95 % intervals"}


def _write_index(out: Path, results, rows, sections, tables) -> Path:
    manifest = rows.attrs.get("manifest", {})
    study = manifest.get("study", {})
    title = f"Report: study {study.get('name', '?')!r}"
    origin = (f"traced with {study['source']} (each beside the engine's run of the same init)" if study.get("source")
              else f"root seed {study.get('root_seed')}")
    summary = (f"{rows.key.nunique()} cells ({rows.init.nunique()} initializers × {rows.activation.nunique()} "
               f"activations × {rows.seed.nunique()} seeds, and the other axes of the study), {origin}, "
               f"from `{results}`.")
    markdown = [f"# {title}", "", summary, ""]
    page = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>",
            f"<h1>{html.escape(title)}</h1><p>{html.escape(summary)}</p>"]
    for name, files, reading in sections:
        markdown += [f"## {name}", "", reading, ""]
        page.append(f"<h2>{html.escape(name)}</h2><p>{html.escape(reading)}</p>")
        png = next((f for f in files if f.endswith(".png")), None)
        if png:
            markdown += [f"![{name}]({png})", ""]
            page.append(f"<img src='{png}' alt='{html.escape(name)}' style='max-width:100%'>")
        if files:
            markdown += ["Files: " + ", ".join(f"[{f}]({f})" for f in files), ""]
    # Only the tables this study wrote are named: a propagation-only study has no epochs_to_target.*.
    groups = {}
    for table in tables:
        groups.setdefault(Path(table).stem, []).append(table)
    lines = [(_TABLE_NOTES.get(stem, stem), files) for stem, files in groups.items()]
    markdown += ["## Tables", ""]
    markdown += [f"- {note}: " + ", ".join(f"[{t}]({t})" for t in files) for note, files in lines] or ["No tables."]
    markdown += [""]
    page.append("<h2>Tables</h2><ul>" + "".join(
        f"<li>{html.escape(note)}: " + ", ".join(f"<a href='{t}'>{t}</a>" for t in files) + "</li>"
        for note, files in lines) + "</ul></body></html>")
    (out / "index.md").write_text("\n".join(markdown))
    (out / "index.html").write_text("\n".join(page) + "\n")
    return out / "index.md"


# ------------------------------------------------------------------ command line


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"python -m analysis.report: error: {message} (see --help)\n")


def main(argv=None) -> int:
    """Run the command line; returns the exit code (0 done, 2 bad input)."""
    parser = _Parser(prog="python -m analysis.report", description=__doc__.split("\n\n")[0],
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("results", help="a results directory written by python -m fastinit.sweep")
    parser.add_argument("--out", help="report directory (default: RESULTS/report)")
    parser.add_argument("--format", default=",".join(FORMATS), help="figure formats, comma-separated")
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:
        return done.code
    try:
        index = build_report(args.results, args.out or Path(args.results) / "report",
                             formats=[f.strip() for f in args.format.split(",") if f.strip()])
    except (ResultsError, FormatError) as error:
        print(f"python -m analysis.report: error: {error}", file=sys.stderr)
        return 2
    print(f"report: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
