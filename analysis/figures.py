"""Figures of a study: axes-level functions (take ``ax``, return it) composed by figure-level ones.

Nothing here computes statistics or theory: callers pass tables from
:mod:`analysis.fit` and :mod:`analysis.theory` (style guide item 11).  Averages of log
quantities are taken in pandas before plotting, never by seaborn on a log axis (item 12).
Every figure uses the colour-blind palette with line styles as well, so it reads in
greyscale print.
"""

from __future__ import annotations

import math

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

__all__ = [
    "PAPER_STYLE", "apply_style", "style_map", "variance_curves", "variance_figure", "gain_scatter", "gain_figure",
    "spread_plot", "spread_figure", "phase_diagram", "phase_figure", "gradient_heatmap", "heatmap_figure",
    "loss_curves", "training_figure", "epochs_plot", "divergence_map",
]

# Byte-stable, TrueType-embedded output (style guide item 13).
PAPER_STYLE = {
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "path",
    "svg.hashsalt": "fastinit",
    "font.family": "DejaVu Sans",
    "figure.dpi": 100,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
    "axes.spines.top": False,
    "axes.spines.right": False,
}
_LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 1)), (0, (5, 5)), (0, (3, 5, 1, 5))]
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">"]
_DIRECTION_COLUMN = {"forward": "log10_fwd_var", "backward": "log10_grad_var"}
_DIRECTION_LABEL = {"forward": r"$\log_{10}\,\mathrm{Var}(z_l)$", "backward": r"$\log_{10}\,\mathrm{Var}(\partial L/\partial z_l)$"}


def apply_style() -> None:
    """Seaborn's paper theme with the colour-blind palette and byte-stable TrueType output."""
    sns.set_theme(context="paper", style="ticks", palette="colorblind", rc=PAPER_STYLE)


def style_map(labels) -> dict:
    """A stable colour, line style and marker per label (in the order given)."""
    palette = sns.color_palette("colorblind", n_colors=max(len(labels), 1))
    return {label: {"color": palette[i % len(palette)], "linestyle": _LINESTYLES[i % len(_LINESTYLES)],
                    "marker": _MARKERS[i % len(_MARKERS)]} for i, label in enumerate(labels)}


def _order(values) -> list:
    return list(dict.fromkeys(values))


# ------------------------------------------------------------------ 1, 2: variance against layer


def variance_curves(ax, rows: pd.DataFrame, *, direction: str = "forward", theory: pd.DataFrame | None = None,
                    styles: dict | None = None):
    """Mean over seeds of log10 variance against layer, a line per initializer, theory dashed.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    rows : pandas.DataFrame
        Per-layer rows of one activation (and one network shape).
    direction : {"forward", "backward"}
    theory : pandas.DataFrame, optional
        Columns ``init``, ``layer`` and the direction's ``log10_*`` column.
    styles : dict, optional
        ``style_map`` of the initializers (consistent across panels).

    Returns
    -------
    matplotlib.axes.Axes
    """
    column = _DIRECTION_COLUMN[direction]
    inits = _order(rows["init"])
    styles = styles or style_map(inits)
    summary = rows.groupby(["init", "layer"], sort=False)[column].agg(["mean", "min", "max"]).reset_index()
    for init in inits:
        curve = summary[summary["init"] == init]
        style = styles[init]
        finite = np.isfinite(curve["mean"].to_numpy())
        if not finite.any():
            continue  # a signal that vanished entirely (zeros) is reported in the text, not drawn
        ax.plot(curve["layer"], curve["mean"], color=style["color"], linestyle=style["linestyle"], lw=1.2, label=init)
        ax.fill_between(curve["layer"], curve["min"], curve["max"], color=style["color"], alpha=0.15, lw=0)
        if theory is not None:
            predicted = theory[theory["init"] == init]
            ax.plot(predicted["layer"], predicted[column], color=style["color"], linestyle=(0, (2, 2)), lw=0.8,
                    alpha=0.9)
    ax.set_xlabel("layer $l$")
    ax.set_ylabel(_DIRECTION_LABEL[direction])
    return ax


def variance_figure(rows: pd.DataFrame, *, direction: str = "forward", theory: pd.DataFrame | None = None,
                    columns: int = 4):
    """A panel per activation of :func:`variance_curves`, with one shared legend.

    Returns
    -------
    matplotlib.figure.Figure
    """
    activations = _order(rows["activation"])
    styles = style_map(_order(rows["init"]))
    columns = min(columns, len(activations))
    lines = math.ceil(len(activations) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(2.6 * columns, 2.2 * lines + 0.6), squeeze=False,
                                constrained_layout=True)
    for ax, activation in zip(axes.flat, activations):
        mine = rows[rows["activation"] == activation]
        predicted = theory[theory["activation"] == activation] if theory is not None else None
        variance_curves(ax, mine, direction=direction, theory=predicted, styles=styles)
        ax.set_title(activation)
    for ax in list(axes.flat)[len(activations):]:
        ax.set_visible(False)
    handles = [mpl.lines.Line2D([], [], color=s["color"], linestyle=s["linestyle"], label=init)
               for init, s in styles.items()]
    if theory is not None:
        handles.append(mpl.lines.Line2D([], [], color="0.3", linestyle=(0, (2, 2)), lw=0.8, label="theory"))
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), frameon=False)
    return figure


# ------------------------------------------------------------------ 3: fitted gain against theory


def gain_scatter(ax, compared: pd.DataFrame, *, direction: str = "forward", styles: dict | None = None):
    """Fitted per-layer gain (with its interval) against theory's, one marker per initializer.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    compared : pandas.DataFrame
        Output of :func:`analysis.fit.compare` (columns ``init``, ``direction``,
        ``log10_gain``, ``log10_gain_low``/``_high``, ``theory``).
    direction : {"forward", "backward"}

    Returns
    -------
    matplotlib.axes.Axes
    """
    data = compared[(compared["direction"] == direction) & np.isfinite(compared["log10_gain"])
                    & (compared["theory"] > 0)]
    styles = styles or style_map(_order(compared["init"]))
    for init, frame in data.groupby("init", sort=False):
        style = styles[init]
        x = np.log10(frame["theory"].to_numpy())
        y = frame["log10_gain"].to_numpy()
        error = np.vstack([y - frame["log10_gain_low"].to_numpy(), frame["log10_gain_high"].to_numpy() - y])
        ax.errorbar(x, y, yerr=error, fmt=style["marker"], color=style["color"], ms=4, capsize=2, lw=0.8, label=init)
    if not data.empty:
        values = np.concatenate([np.log10(data["theory"]), data["log10_gain"]])
        low, high = values.min() - 0.05, values.max() + 0.05
        ax.plot([low, high], [low, high], color="0.5", lw=0.8, linestyle="--", zorder=0)
        ax.set_xlim(low, high)
        ax.set_ylim(low, high)
    ax.set_xlabel(r"theory: $\log_{10}$ gain per layer")
    ax.set_ylabel(r"fitted: $\log_{10}$ gain per layer")
    ax.set_title(direction)
    return ax


def gain_figure(compared: pd.DataFrame):
    """Forward and backward :func:`gain_scatter` side by side, one legend.

    Returns
    -------
    matplotlib.figure.Figure
    """
    styles = style_map(_order(compared["init"]))
    figure, axes = plt.subplots(1, 2, figsize=(7.0, 3.6), constrained_layout=True)
    for ax, direction in zip(axes, ("forward", "backward")):
        gain_scatter(ax, compared, direction=direction, styles=styles)
    handles = [mpl.lines.Line2D([], [], color=s["color"], marker=s["marker"], linestyle="", label=init)
               for init, s in styles.items()]
    figure.legend(handles=handles, loc="outside right center", frameon=False)
    return figure


# ------------------------------------------------------------------ 4: finite-width spread


def spread_plot(ax, measured: pd.DataFrame, predicted: pd.DataFrame | None = None):
    """Across-seed variance of ln variance against depth/width, with the finite-width prediction.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    measured : pandas.DataFrame
        :func:`analysis.fit.spread` rows (``init``, ``width``, ``depth_over_width``, ``var_ln``, ``seeds``).
    predicted : pandas.DataFrame, optional
        Columns ``depth_over_width`` and ``var_ln`` (theory.md section 4).

    Returns
    -------
    matplotlib.axes.Axes
    """
    labels = measured["init"].astype(str) + ", width " + measured["width"].astype(str)
    styles = style_map(_order(labels))
    for label, frame in measured.groupby(labels, sort=False):
        seeds = int(frame["seeds"].iloc[0])
        ax.plot(frame["depth_over_width"], frame["var_ln"], linestyle="", marker=styles[label]["marker"], ms=2.5,
                color=styles[label]["color"], alpha=0.7, label=f"{label} ({seeds} seeds)")
    if predicted is not None:
        ax.plot(predicted["depth_over_width"], predicted["var_ln"], color="0.2", lw=1.0, linestyle="--",
                label="theory (one input)")
    ax.set_xlabel("depth / width, $\\sum_l 1/n_l$")
    ax.set_ylabel("Var over seeds of $\\ln\\,\\mathrm{Var}(z_l)$")
    ax.legend(frameon=False, loc="upper left")
    return ax


def spread_figure(measured: pd.DataFrame, predicted: pd.DataFrame | None = None, *, title: str = ""):
    """One panel of :func:`spread_plot`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, ax = plt.subplots(figsize=(4.2, 3.2), constrained_layout=True)
    spread_plot(ax, measured, predicted)
    ax.set_title(title)
    return figure


# ------------------------------------------------------------------ 5: phase diagram


def phase_diagram(ax, sigma_w2: np.ndarray, sigma_b2: np.ndarray, chi1: np.ndarray, critical: np.ndarray,
                  studied: pd.DataFrame | None = None):
    """chi1 over the (sigma_w^2, sigma_b^2) plane, the critical line, and studied initializers.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    sigma_w2, sigma_b2 : numpy.ndarray
        Grid axes (1-D).
    chi1 : numpy.ndarray
        ``chi1[i, j]`` at ``(sigma_w2[j], sigma_b2[i])``.
    critical : numpy.ndarray
        Critical sigma_w^2 at each ``sigma_b2``.
    studied : pandas.DataFrame, optional
        Columns ``init``, ``sigma_w2``, ``sigma_b2``: where the study's initializers sit.

    Returns
    -------
    matplotlib.axes.Axes
    """
    with np.errstate(divide="ignore"):
        log_chi = np.log10(chi1)
    bound = np.nanmax(np.abs(log_chi[np.isfinite(log_chi)])) if np.isfinite(log_chi).any() else 1.0
    mesh = ax.pcolormesh(sigma_w2, sigma_b2, log_chi, cmap="RdBu_r", vmin=-bound, vmax=bound, shading="auto",
                         rasterized=True)
    ax.figure.colorbar(mesh, ax=ax, label=r"$\log_{10}\chi_1$")
    ax.plot(critical, sigma_b2, color="k", lw=1.4, label=r"critical line $\chi_1 = 1$")
    ax.text(0.04, 0.92, "ordered\n(gradients vanish)", transform=ax.transAxes, va="top", fontsize=7)
    ax.text(0.96, 0.92, "chaotic\n(gradients explode)", transform=ax.transAxes, ha="right", va="top", fontsize=7)
    if studied is not None and not studied.empty:
        styles = style_map(_order(studied["init"]))
        for row in studied.itertuples(index=False):
            if sigma_w2.min() <= row.sigma_w2 <= sigma_w2.max():
                ax.plot(row.sigma_w2, row.sigma_b2, marker=styles[row.init]["marker"], color="k", ms=5,
                        mfc=styles[row.init]["color"], linestyle="", label=row.init)
    ax.set_xlim(sigma_w2.min(), sigma_w2.max())
    margin = 0.03 * (sigma_b2.max() - sigma_b2.min())  # markers on sigma_b^2 = 0 stay whole
    ax.set_ylim(sigma_b2.min() - margin, sigma_b2.max())
    ax.set_xlabel(r"$\sigma_w^2$ (fan_in $\cdot$ Var W)")
    ax.set_ylabel(r"$\sigma_b^2$")
    ax.legend(frameon=True, fontsize=6, loc="center right", framealpha=0.9)
    return ax


def phase_figure(*args, title: str = "tanh", **kwargs):
    """One panel of :func:`phase_diagram`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, ax = plt.subplots(figsize=(4.8, 3.6), constrained_layout=True)
    phase_diagram(ax, *args, **kwargs)
    ax.set_title(title)
    return figure


# ------------------------------------------------------------------ 6: gradient heatmap


def gradient_heatmap(ax, table: pd.DataFrame):
    """log10 gradient variance at the input layer, initializer x activation.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    table : pandas.DataFrame
        Index initializers, columns activations, values log10 Var(dL/dz_1) (mean over
        seeds; ``-inf`` for a gradient that vanished entirely).

    Returns
    -------
    matplotlib.axes.Axes
    """
    shown = table.replace([-np.inf, np.inf], np.nan)
    finite = shown.to_numpy()[np.isfinite(shown.to_numpy())]
    bound = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    annotations = shown.map(lambda v: "" if np.isnan(v) else f"{round(v) + 0:d}")
    # Symmetric limits centre the diverging map at 0 (seaborn's center= trips a matplotlib deprecation).
    sns.heatmap(shown, ax=ax, cmap="RdBu_r", vmin=-bound, vmax=bound, annot=annotations, fmt="",
                annot_kws={"fontsize": 6}, linewidths=0.5, linecolor="white",
                cbar_kws={"label": r"$\log_{10}\,\mathrm{Var}(\partial L/\partial z_1)$"})
    # Cells seaborn leaves blank say why: no gradient at all, or the net overflowed.
    ax.set_facecolor("0.85")
    for i, init in enumerate(table.index):
        for j, activation in enumerate(table.columns):
            value = table.loc[init, activation]
            if not np.isfinite(value):
                text = "none" if np.isneginf(value) else ("inf" if np.isposinf(value) else "overflow")
                ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=6, color="0.2")
    ax.set_xlabel("activation")
    ax.set_ylabel("initializer")
    return ax


def heatmap_figure(table: pd.DataFrame, *, title: str = ""):
    """One panel of :func:`gradient_heatmap`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, ax = plt.subplots(figsize=(1.0 + 0.75 * table.shape[1], 0.9 + 0.4 * table.shape[0]),
                              constrained_layout=True)
    gradient_heatmap(ax, table)
    ax.set_title(title)
    return figure


# ------------------------------------------------------------------ training studies


def loss_curves(ax, rows: pd.DataFrame, *, styles: dict | None = None):
    """Training loss against epoch, a line per initializer (median over seeds, band min-max).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    rows : pandas.DataFrame
        Epoch-level rows of one activation and configuration (``epoch``, ``loss``, ``init``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    inits = _order(rows["init"])
    styles = styles or style_map(inits)
    summary = rows.groupby(["init", "epoch"], sort=False)["loss"].agg(["median", "min", "max"]).reset_index()
    for init in inits:
        curve = summary[(summary["init"] == init) & np.isfinite(summary["median"]) & (summary["median"] > 0)]
        if curve.empty:
            continue
        style = styles[init]
        ax.plot(curve["epoch"], curve["median"], color=style["color"], linestyle=style["linestyle"], lw=1.2,
                label=init)
        ax.fill_between(curve["epoch"], curve["min"], curve["max"], color=style["color"], alpha=0.15, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    return ax


def training_figure(rows: pd.DataFrame, *, panel: str = "activation", columns: int = 4):
    """A panel per value of ``panel`` (activation by default) of :func:`loss_curves`, one legend.

    Returns
    -------
    matplotlib.figure.Figure
    """
    values = _order(rows[panel])
    styles = style_map(_order(rows["init"]))
    columns = min(columns, len(values))
    lines = math.ceil(len(values) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(2.8 * columns, 2.3 * lines + 0.6), squeeze=False,
                                constrained_layout=True)
    for ax, value in zip(axes.flat, values):
        loss_curves(ax, rows[rows[panel] == value], styles=styles)
        ax.set_title(f"{value}")
    for ax in list(axes.flat)[len(values):]:
        ax.set_visible(False)
    handles = [mpl.lines.Line2D([], [], color=s["color"], linestyle=s["linestyle"], label=init)
               for init, s in styles.items()]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), frameon=False)
    return figure


def epochs_plot(ax, table: pd.DataFrame, *, styles: dict | None = None):
    """Epochs to the target loss with intervals, a marker per initializer, grouped by activation.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    table : pandas.DataFrame
        :func:`analysis.fit.epochs_to_target` rows (``init``, ``activation``, ``epochs``,
        ``epochs_low``, ``epochs_high``, ``reached``, ``seeds``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    activations = _order(table["activation"])
    inits = _order(table["init"])
    styles = styles or style_map(inits)
    offsets = np.linspace(-0.3, 0.3, len(inits)) if len(inits) > 1 else np.zeros(1)
    for offset, init in zip(offsets, inits):
        mine = table[(table["init"] == init) & (table["reached"] > 0)]
        x = np.array([activations.index(a) for a in mine["activation"]]) + offset
        y = mine["epochs"].to_numpy()
        low = np.nan_to_num(y - mine["epochs_low"].to_numpy())
        high = np.nan_to_num(mine["epochs_high"].to_numpy() - y)
        ax.errorbar(x, y, yerr=np.vstack([low, high]), fmt=styles[init]["marker"], color=styles[init]["color"],
                    ms=4, capsize=2, lw=0.8, label=init)
        for xi, yi, reached, seeds in zip(x, y, mine["reached"], mine["seeds"]):
            if reached < seeds:
                ax.annotate(f"{reached}/{seeds}", (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=5)
    ax.set_xticks(range(len(activations)), activations)
    ax.set_ylabel("epochs to target loss")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, fontsize=6)
    else:
        ax.text(0.5, 0.5, "no run reached the target", transform=ax.transAxes, ha="center", fontsize=7)
    return ax


def divergence_map(ax, table: pd.DataFrame):
    """Fraction of diverged runs over (initializer, learning rate).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    table : pandas.DataFrame
        Index initializers, columns learning rates, values in [0, 1].

    Returns
    -------
    matplotlib.axes.Axes
    """
    sns.heatmap(table, ax=ax, cmap="Reds", vmin=0.0, vmax=1.0, annot=True, fmt=".2f", annot_kws={"fontsize": 6},
                linewidths=0.5, linecolor="white", cbar_kws={"label": "fraction of runs diverged"})
    ax.set_xlabel("learning rate")
    ax.set_ylabel("initializer")
    return ax
