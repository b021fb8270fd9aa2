"""Figures of a study: axes-level functions (take ``ax``, return it) composed by figure-level ones.

Nothing here computes statistics or theory: callers pass tables from
:mod:`analysis.fit` and :mod:`analysis.theory` (style guide item 11).  Averages of log
quantities are taken in pandas before plotting, never by seaborn on a log axis (item 12).
Every figure uses the colour-blind palette with line styles as well, so it reads in
greyscale print.
"""

from __future__ import annotations

import math
import textwrap

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

__all__ = [
    "PAPER_STYLE", "SINGLE_COLUMN", "DOUBLE_COLUMN", "apply_style", "style_map", "curve_summary", "curve_ends",
    "trace_comparison", "trace_figure",
    "variance_curves", "variance_figure", "drawable_gains", "gain_forest", "gain_figure", "spread_plot",
    "spread_figure", "phase_diagram", "phase_figure", "gradient_heatmap", "heatmap_figure", "loss_curves",
    "training_figure", "epochs_plot", "distinct_units_plot", "divergence_map", "spectrum_plot", "spectra_figure",
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
    "savefig.pad_inches": 0.02,  # the printed width stays the column width
    "axes.spines.top": False,
    "axes.spines.right": False,
    # Sizes as printed at column width (7-8 pt text, 6 pt legends).
    "font.size": 7.5,
    "axes.labelsize": 7.5,
    "axes.titlesize": 8,
    "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5,
    "legend.fontsize": 6,
    "figure.titlesize": 8.5,
}
# A paper's column widths in inches: every figure is drawn at one of them, so its fonts print at their size.
SINGLE_COLUMN = 3.3
DOUBLE_COLUMN = 7.0
# One of each kind of dash, so no two entries read alike in greyscale print (a single dotted style).
_LINESTYLES = ["-", (0, (4, 1.5)), (0, (6, 1.5, 1, 1.5)), (0, (1, 1.2)), (0, (9, 2.5)),
               (0, (4, 1.5, 1, 1.5, 1, 1.5)), (0, (2, 3)), (0, (9, 2, 2, 2))]
# Triangles are kept for the ends of curves that leave the float range (_END_MARKERS).
_MARKERS = ["o", "s", "D", "P", "X", "h", "p", "d", "<", ">", "H"]
_END_MARKERS = {"overflow": "^", "underflow": "v", "exactly zero": "x"}
_END_LABELS = {"overflow": "last finite layer, then overflow", "underflow": "last finite layer, then underflow",
               "exactly zero": "last layer before exactly 0"}
_ARROWS = {"overflow": "↑", "underflow": "↓"}
_THEORY_STYLE = {"color": "k", "linestyle": "-", "lw": 0.6, "alpha": 0.75}
_DIRECTION_COLUMN = {"forward": "log10_fwd_var", "backward": "log10_grad_var"}
_NONFINITE_COLUMN = {"forward": "fwd_nonfinite", "backward": "grad_nonfinite"}
_DIRECTION_LABEL = {"forward": r"$\log_{10}\,\mathrm{Var}(z_l)$", "backward": r"$\log_{10}\,\mathrm{Var}(\partial L/\partial z_l)$"}
# A variance that reaches 0 from below 10^-20 was rounded away (underflow); one that reaches 0 from above is
# exactly zero (zeros init, every unit dead): no studied layer shrinks a variance by 20 decades at once.
_UNDERFLOW_BELOW = -20.0
# The y window of a panel always spans at least this many decades either side of Var = 1.
_WINDOW_FLOOR = 3.0
_NOTE_SIZE = 5.5
# Squared singular values below this are counted, not drawn (see spectrum_plot).
_SPECTRUM_FLOOR = 1e-4


def apply_style() -> None:
    """Seaborn's paper theme with the colour-blind palette and byte-stable TrueType output."""
    sns.set_theme(context="paper", style="ticks", palette="colorblind", rc=PAPER_STYLE)


def style_map(labels) -> dict:
    """A stable colour, line style and marker per label (in the order given), each unique among the labels.

    Colours, dashes and markers cycle with coprime-ish periods (10, 8, 11), so the triple of
    the first 440 labels is unique even where one of them repeats.
    """
    palette = sns.color_palette("colorblind", n_colors=10)
    return {label: {"color": palette[i % len(palette)], "linestyle": _LINESTYLES[i % len(_LINESTYLES)],
                    "marker": _MARKERS[i % len(_MARKERS)]} for i, label in enumerate(labels)}


def _order(values) -> list:
    return list(dict.fromkeys(values))


# DejaVu Sans averages about 0.55 em per character of English text; counting 0.6 em errs inside.
_CHAR_WIDTH_EM = 0.6


def _chars_across(figure_inches: float) -> int:
    """How many characters of a note fit on a line across a figure ``figure_inches`` wide (less its margins)."""
    return int(0.94 * figure_inches * 72.0 / (_CHAR_WIDTH_EM * _NOTE_SIZE))


def _legend_columns(labels, inches: float, most: int = 8) -> int:
    """The most legend columns (up to ``most``) whose entries fit on lines ``inches`` wide.

    Entries fill the columns top to bottom, as matplotlib lays them out; an entry is its handle, the
    gaps around it (matplotlib's defaults: 2 + 0.8 + 2 em) and its label at the legend's font size.
    """
    size = PAPER_STYLE["legend.fontsize"]
    widths = [(4.8 + _CHAR_WIDTH_EM * len(label)) * size for label in labels]
    for columns in range(min(most, len(widths)), 1, -1):
        rows = -(-len(widths) // columns)
        if sum(max(widths[c * rows:(c + 1) * rows], default=0.0) for c in range(columns)) <= inches * 72.0:
            return columns
    return 1


def _note(ax, lines, *, y=0.02, va="bottom", width: int = 40) -> None:
    """Small text inside ``ax`` (a panel's footnote), wrapped to ``width`` characters: what is not drawn and why.

    It stays out of the layout so a long note never shrinks the panels; the wrap keeps it inside
    (a note under a whole figure: ``width=_chars_across(figure width)``).
    """
    if lines:
        text = "\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in lines)
        ax.text(0.02, y, text, transform=ax.transAxes, fontsize=_NOTE_SIZE, va=va, ha="left", color="0.25",
                bbox={"boxstyle": "square,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
                zorder=5).set_in_layout(False)


# ------------------------------------------------------------------ where a curve stops


def curve_summary(rows: pd.DataFrame, direction: str = "forward") -> pd.DataFrame:
    """Mean, min and max over seeds of a direction's log10 variance, per curve and layer.

    A layer's summary is finite only when every seed's value is: a mean that skipped a
    seed which overflowed would be a number nobody measured.  Otherwise it is the
    non-finite value itself (NaN if any seed is NaN, else +inf, else -inf).

    Parameters
    ----------
    rows : pandas.DataFrame
        Per-layer rows (``init``, ``layer``, the direction's ``log10_*`` column, and
        ``activation`` if several activations are mixed).
    direction : {"forward", "backward"}

    Returns
    -------
    pandas.DataFrame
        ``activation`` (if present), ``init``, ``layer``, ``mean``, ``min``, ``max``,
        ``seeds`` and ``nonfinite`` (non-finite entries summed over seeds: the pass's own
        count ``fwd_nonfinite``/``grad_nonfinite`` where recorded, else ``nonfinite``,
        else 0).
    """
    keys = [c for c in ("activation", "init") if c in rows.columns] + ["layer"]
    values = rows[_DIRECTION_COLUMN[direction]].to_numpy(dtype=np.float64)
    counter = next((c for c in (_NONFINITE_COLUMN[direction], "nonfinite") if c in rows.columns), None)
    frame = rows[keys].assign(_v=np.where(np.isfinite(values), values, np.nan), _nan=np.isnan(values),
                              _pos=np.isposinf(values), _neg=np.isneginf(values),
                              _bad=rows[counter].to_numpy() if counter else 0)
    grouped = frame.groupby(keys, sort=False)
    out = grouped["_v"].agg(["mean", "min", "max", "size"]).rename(columns={"size": "seeds"})
    flags = grouped[["_nan", "_pos", "_neg", "_bad"]].sum()
    for column in ("mean", "min", "max"):
        value = out[column].to_numpy()
        value = np.where(flags["_neg"] > 0, -np.inf, value)
        value = np.where(flags["_pos"] > 0, np.inf, value)
        out[column] = np.where(flags["_nan"] > 0, np.nan, value)
    out["nonfinite"] = flags["_bad"].astype(np.int64)
    return out.reset_index()


def curve_ends(summary: pd.DataFrame, direction: str = "forward") -> pd.DataFrame:
    """Where each curve of :func:`curve_summary` stops being finite, and why.

    The forward pass runs from layer 1 up, the backward pass from the last layer down; the
    first non-finite layer in that order ends the curve.  It is an overflow when the
    statistic is NaN or +inf, or when the pass counted non-finite entries there (older
    results stored 0 for such a statistic); a fall to 0 from below 10^-20 is an underflow;
    any other 0 is exactly zero (zeros init, every unit dead).

    Returns
    -------
    pandas.DataFrame
        One row per curve: ``activation`` (if present), ``init``, ``last_layer`` (the last
        finite layer before the end, NaN if none), ``end_layer`` (the first non-finite one,
        NaN if the curve is finite throughout), ``end`` ("", "overflow", "underflow" or
        "exactly zero") and ``final`` (the value at the last layer reached, or the last
        finite one).
    """
    keys = [c for c in ("activation", "init") if c in summary.columns]
    records = []
    for group, curve in summary.groupby(keys, sort=False):
        curve = curve.sort_values("layer", ascending=direction == "forward")
        layers = curve["layer"].to_numpy()
        values = curve["mean"].to_numpy(dtype=np.float64)
        bad = curve["nonfinite"].to_numpy() > 0
        record = dict(zip(keys, group if isinstance(group, tuple) else (group,)))
        out = np.flatnonzero(~np.isfinite(values))
        record.update(last_layer=math.nan, end_layer=math.nan, end="", final=math.nan)
        if out.size == 0:
            record.update(last_layer=layers[-1], final=values[-1])
        else:
            k = out[0]
            before = values[k - 1] if k > 0 else math.nan
            if np.isnan(values[k]) or values[k] > 0 or bad[k]:
                end = "overflow"
            elif before < _UNDERFLOW_BELOW:
                end = "underflow"
            else:
                end = "exactly zero"
            record.update(end_layer=layers[k], end=end)
            if k > 0:
                record.update(last_layer=layers[k - 1], final=before)
        records.append(record)
    return pd.DataFrame.from_records(records)


def _window(spans, floor: float = _WINDOW_FLOOR) -> tuple[float, float]:
    """The y range that carries a panel's claim: the curves that stay near Var = 1.

    Curves are ranked by how far (in decades) they reach from 0; the window holds every
    curve reaching at most twice as far as the median one (and at least ``floor``), so
    one runaway curve cannot squeeze the rest into a few pixels.  The others are drawn
    until they leave it and labelled there.
    """
    if not spans:
        return -1.0, 1.0
    reach = np.array([max(abs(low), abs(high)) for low, high in spans])
    median = np.sort(reach)[math.ceil(reach.size / 2) - 1]
    limit = max(floor, 2.0 * median)
    kept = [span for span, r in zip(spans, reach) if r <= limit]
    low, high = min(s[0] for s in kept), max(s[1] for s in kept)
    pad = max(0.06 * (high - low), 0.15)
    return low - pad, high + pad


def _inside(layers, values, low: float, high: float):
    """The part of a curve inside [low, high], with the points where it crosses an edge.

    Returns x and y (NaN where outside, so the line breaks there) and the first crossing
    in the order given (``None`` if the curve never leaves).
    """
    xs, ys, first = [], [], None
    for i, (x, y) in enumerate(zip(layers, values)):
        inside = np.isfinite(y) and low <= y <= high
        if i > 0 and np.isfinite(y) and np.isfinite(values[i - 1]):
            prev_inside = low <= values[i - 1] <= high
            if inside != prev_inside:
                y_out, y_in = (y, values[i - 1]) if prev_inside else (values[i - 1], y)
                edge = high if y_out > high else low
                t = (edge - values[i - 1]) / (y - values[i - 1])
                crossing = layers[i - 1] + t * (x - layers[i - 1])
                xs.append(crossing)
                ys.append(edge)
                if prev_inside and first is None:
                    first = (crossing, edge)
        elif i == 0 and np.isfinite(y) and not inside:
            first = (x, high if y > high else low)
        xs.append(x)
        ys.append(y if inside else np.nan)
    return np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64), first


# ------------------------------------------------------------------ 1, 2: variance against layer


def _spans(summary, theory, column):
    """Per curve, the (min, max) of its finite measured and predicted values."""
    spans = {}
    for init, curve in summary.groupby("init", sort=False):
        values = curve["mean"].to_numpy()
        if theory is not None:
            values = np.concatenate([values, theory.loc[theory["init"] == init, column].to_numpy(np.float64)])
        finite = values[np.isfinite(values)]
        if np.isfinite(curve["mean"].to_numpy()).any() and finite.size:
            spans[init] = (float(finite.min()), float(finite.max()))
    return spans


def variance_curves(ax, rows: pd.DataFrame, *, direction: str = "forward", theory: pd.DataFrame | None = None,
                    styles: dict | None = None, noted=(), note: bool = True):
    """Mean over seeds of log10 variance against layer, a line per initializer, theory in black.

    The y window holds the curves that stay near Var = 1 (:func:`_window`); a curve that
    leaves it is drawn to the edge and labelled there with its value at the last layer
    reached.  A curve that leaves the float range ends in a black triangle at its last
    finite layer (up: overflow, down: underflow), numbered.  Curves with no finite layer
    are listed in a note ("not drawn: ..."), except those in ``noted`` (the figure says
    it once).  Initializers whose variance is equal (normal and uniform variants) overlap
    as lines; their markers sit at staggered layers so both show.

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
    noted : collection of str, optional
        Initializers not to list in the panel's note.
    note : bool, default True
        Write the "not drawn" note in the panel (a figure may gather them instead).

    Returns
    -------
    matplotlib.axes.Axes
    """
    column = _DIRECTION_COLUMN[direction]
    inits = _order(rows["init"])
    styles = styles or style_map(inits)
    summary = curve_summary(rows.drop(columns="activation", errors="ignore"), direction)
    ends = curve_ends(summary, direction).set_index("init")
    low, high = _window(list(_spans(summary, theory, column).values()))
    depth = int(summary["layer"].max())
    step = max(1, depth // 6)
    backward = direction == "backward"
    undrawn, theory_label, labels = [], "theory", []
    for init in inits:
        curve = summary[summary["init"] == init].sort_values("layer", ascending=not backward)
        layers = curve["layer"].to_numpy(dtype=np.float64)
        mean = curve["mean"].to_numpy(dtype=np.float64)
        end = ends.loc[init]
        if not np.isfinite(mean).any():
            if init not in noted:
                undrawn.append(f"{init} ({end.end or 'not finite'})")
            continue
        style = styles[init]
        x, y, crossing = _inside(layers, mean, low, high)
        # Golden-ratio phases spread the markers of curves that coincide (normal and uniform variants).
        offset = int(step * ((list(styles).index(init) * 0.618034) % 1.0))
        every = (offset, step) if np.isfinite(y).sum() > step else None
        ax.plot(x, y, color=style["color"], linestyle=style["linestyle"], marker=style["marker"],
                markevery=every, ms=2.6, lw=1.0, label=init, zorder=3)
        shown = np.isfinite(mean) & (mean >= low) & (mean <= high)
        ax.fill_between(layers, np.clip(curve["min"], low, high), np.clip(curve["max"], low, high), where=shown,
                        color=style["color"], alpha=0.15, lw=0, zorder=1)
        if theory is not None:
            predicted = theory[theory["init"] == init].sort_values("layer", ascending=not backward)
            tx, ty, _ = _inside(predicted["layer"].to_numpy(np.float64), predicted[column].to_numpy(np.float64),
                                low, high)
            if np.isfinite(ty).any():
                ax.plot(tx, ty, **_THEORY_STYLE, zorder=2, label=theory_label)
                theory_label = "_nolegend_"
        if crossing is not None:
            after = f" {_ARROWS[end.end]}{int(end.last_layer)}" if (
                end.end in _ARROWS and np.isfinite(end.last_layer)) else ""
            labels.append((crossing, f"$10^{{{end.final:.0f}}}$" + after, style["color"]))
        if end.end in _END_MARKERS and np.isfinite(end.last_layer) and low <= end.final <= high:
            ax.plot([end.last_layer], [end.final], linestyle="", marker=_END_MARKERS[end.end], color="k", ms=4,
                    zorder=6, clip_on=False, label=_END_LABELS[end.end])
            ax.annotate(f"{int(end.last_layer)}", (end.last_layer, end.final), textcoords="offset points",
                        xytext=(0, 4 if end.end == "overflow" else -4), ha="center",
                        va="bottom" if end.end == "overflow" else "top", fontsize=5)
    _edge_labels(ax, labels, depth, low, high)
    if note:
        _note(ax, ["not drawn: " + ", ".join(undrawn)] if undrawn else [])
    ax.set_ylim(low, high)
    ax.set_xlim(0, depth + 1)
    ax.set_xlabel("layer $l$")
    ax.set_ylabel(_DIRECTION_LABEL[direction])
    return ax


def _edge_labels(ax, labels, depth: int, low: float, high: float) -> None:
    """Label where curves leave the window with their last value, spread so labels on one edge don't overlap."""
    def width(text):  # a 5 pt character is about 4 % of a panel's 1.1-inch data area
        return 0.04 * depth * len(text.translate(str.maketrans("", "", "${}^")))

    for edge in (low, high):
        on_edge = sorted((item for item in labels if item[0][1] == edge), key=lambda i: i[0][0])
        # Labels grow away from the nearer side: rightwards from the left half, leftwards from the right.
        left = [item for item in on_edge if item[0][0] < depth / 2]
        right = [item for item in on_edge if item[0][0] >= depth / 2][::-1]
        for side, items in (("left", left), ("right", right)):
            bound = 0.03 * depth if side == "left" else 0.97 * depth
            for (x, _), text, color in items:
                if side == "left":
                    x = max(x, bound)
                    bound = x + width(text)
                else:
                    x = min(x, bound)
                    bound = x - width(text)
                ax.annotate(text, (x, edge), textcoords="offset points", xytext=(0, 1.5 if edge == low else -1.5),
                            color=color, fontsize=5, ha=side, va="bottom" if edge == low else "top", zorder=4,
                            bbox={"boxstyle": "square,pad=0.05", "fc": "white", "ec": "none", "alpha": 0.7})


def _legend_entries(axes, order) -> dict:
    """Legend handles of the drawn artists of ``axes``, one per label, in ``order`` first."""
    found = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            found.setdefault(label, handle)
    ranked = [label for label in order if label in found] + [label for label in found if label not in order]
    return {label: found[label] for label in ranked}


def _panels(count: int, columns: int, width: float, height: float, key_height: float = 0.5):
    """A grid of ``count`` panels, the grid's spare slot (or ``None``) and a key row spanning the bottom."""
    columns = min(columns, count)
    lines = math.ceil(count / columns)
    figure = plt.figure(figsize=(width, height * lines + key_height), constrained_layout=True)
    grid = figure.add_gridspec(lines + 1, columns, height_ratios=[height] * lines + [key_height])
    panels = [figure.add_subplot(grid[i // columns, i % columns]) for i in range(count)]
    spare = figure.add_subplot(grid[lines - 1, count % columns:]) if count % columns else None
    key = figure.add_subplot(grid[lines, :])
    for ax in (spare, key):
        if ax is not None:
            ax.axis("off")
    return figure, panels, spare, key


def variance_figure(rows: pd.DataFrame, *, direction: str = "forward", theory: pd.DataFrame | None = None,
                    columns: int = 4):
    """A panel per activation of :func:`variance_curves`, at double-column width, with one key.

    The key (legend of the drawn artists and notes) takes the grid's free slot; an
    initializer with no finite layer in any panel (zeros) is named there once.

    Returns
    -------
    matplotlib.figure.Figure
    """
    activations = _order(rows["activation"])
    inits = _order(rows["init"])
    styles = style_map(inits)
    ends = curve_ends(curve_summary(rows, direction), direction)
    never = ends.groupby("init", sort=False)["last_layer"].apply(lambda v: v.isna().all())
    reasons = ends.groupby("init", sort=False)["end"].agg(lambda v: "/".join(_order(v)))
    noted = [init for init in inits if never.get(init, False)]
    figure, panels, spare, key = _panels(len(activations), columns, DOUBLE_COLUMN, 1.5)
    per_line = min(columns, len(activations))
    for i, (ax, activation) in enumerate(zip(panels, activations)):
        mine = rows[rows["activation"] == activation]
        predicted = theory[theory["activation"] == activation] if theory is not None else None
        variance_curves(ax, mine, direction=direction, theory=predicted, styles=styles, noted=noted, note=False)
        ax.set_title(activation)
        if i % per_line:
            ax.set_ylabel("")
        if i + per_line < len(activations):
            ax.set_xlabel("")
    entries = _legend_entries(panels, [*inits, "theory", *_END_LABELS.values()])
    seeds = int(rows["seed"].nunique()) if "seed" in rows.columns else 1
    notes = [f"{init}: {reasons[init]} at every layer of every panel, not drawn." for init in noted]
    absent = ends[ends["last_layer"].isna() & ~ends["init"].isin(noted)]
    for (init, end), frame in absent.groupby(["init", "end"], sort=False):
        notes.append(f"{init} not drawn ({end or 'not finite'} at every layer): {', '.join(frame['activation'])}.")
    notes += [f"Bands: min-max over {seeds} seeds. Black: mean-field theory.",
              r"Coloured $10^{k}$ at an edge: where a curve leaves its panel, with its last value (arrow: last "
              r"finite layer before overflow/underflow)."]
    key.legend(list(entries.values()), list(entries.keys()), loc="upper center", frameon=False, ncols=6,
               borderaxespad=0.0, handlelength=3.2, columnspacing=1.2)
    if spare is not None:
        _note(spare, notes, y=0.98, va="top", width=30)
    else:
        _note(key, notes, y=0.0, va="bottom", width=_chars_across(figure.get_figwidth()))
    return figure


# ------------------------------------------------------------------ 3: fitted gain against theory


def drawable_gains(compared: pd.DataFrame) -> np.ndarray:
    """Rows of :func:`analysis.fit.compare` that figure 3 draws: a finite estimate, interval and theory.

    A row whose status is not "ok" but which has all three (fitted on its finite layers) is drawn.
    """
    ok = (np.isfinite(compared["log10_gain"]) & np.isfinite(compared["log10_gain_low"])
          & np.isfinite(compared["log10_gain_high"]) & np.isfinite(compared["theory"]) & (compared["theory"] > 0))
    return ok.to_numpy()


def gain_forest(ax, compared: pd.DataFrame, *, direction: str = "forward", styles: dict | None = None):
    """Fitted per-layer gain over theory's, minus 1 in percent, with its 95 % interval.

    A row per activation, the initializers dodged within it (distinct colour and marker),
    so every estimate shows even where two initializers have the same theory.  The x
    limits contain every interval.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    compared : pandas.DataFrame
        Output of :func:`analysis.fit.compare` (``init``, ``activation``, ``direction``,
        ``gain``, ``gain_low``/``_high``, ``log10_gain*``, ``theory``, optionally ``status``).
    direction : {"forward", "backward"}

    Returns
    -------
    matplotlib.axes.Axes
    """
    activations = _order(compared["activation"])
    styles = styles or style_map(_order(compared["init"]))
    data = compared[(compared["direction"] == direction).to_numpy() & drawable_gains(compared)]
    slots = np.linspace(-0.36, 0.36, len(styles)) if len(styles) > 1 else np.zeros(1)
    extent = [0.0]
    for init, frame in data.groupby("init", sort=False):
        style = styles[init]
        ratio = 100.0 * (frame["gain"].to_numpy() / frame["theory"].to_numpy() - 1.0)
        low = 100.0 * (frame["gain_low"].to_numpy() / frame["theory"].to_numpy() - 1.0)
        high = 100.0 * (frame["gain_high"].to_numpy() / frame["theory"].to_numpy() - 1.0)
        y = np.array([activations.index(a) for a in frame["activation"]]) + slots[list(styles).index(init)]
        ax.errorbar(ratio, y, xerr=np.vstack([ratio - low, high - ratio]), fmt=style["marker"], color=style["color"],
                    ms=2.8, capsize=1.2, lw=0.7, elinewidth=0.7, label=init, clip_on=False)
        extent += [low.min(), high.max()]
    span = max(extent) - min(extent) or 1.0
    ax.set_xlim(min(extent) - 0.06 * span, max(extent) + 0.06 * span)
    ax.set_ylim(len(activations) - 0.5, -0.5)
    ax.axvline(0.0, color="0.4", lw=0.7, linestyle="--", zorder=0)
    for boundary in range(1, len(activations)):
        ax.axhline(boundary - 0.5, color="0.88", lw=0.5, zorder=0)
    ax.set_yticks(range(len(activations)), activations)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel("fitted / theory - 1 (%)")
    ax.set_title(f"{direction} gain per layer", fontsize=8)
    return ax


def gain_figure(compared: pd.DataFrame, *, inits=None, activations=None):
    """Forward and backward :func:`gain_forest` side by side at double-column width, one key.

    Estimates without an interval or a theory (exactly zero, overflow, a status other
    than ok) are listed under the key, not drawn.

    Parameters
    ----------
    compared : pandas.DataFrame
        Output of :func:`analysis.fit.compare`.
    inits, activations : list, optional
        Order of the legend and of the rows (default: as they first appear).

    Returns
    -------
    matplotlib.figure.Figure
    """
    inits = list(inits) if inits is not None else _order(compared["init"])
    activations = list(activations) if activations is not None else _order(compared["activation"])
    rank = {a: i for i, a in enumerate(activations)}
    compared = compared.sort_values("activation", key=lambda c: c.map(rank), kind="stable")
    styles = style_map(inits)
    missing = compared[~drawable_gains(compared)].assign(why=lambda f: _gain_reason(f))
    notes = []
    for init, frame in missing.groupby("init", sort=False):
        reasons = "/".join(_order(frame["why"]))
        if len(frame) == (compared["init"] == init).sum():
            notes.append(f"{init}: every cell ({reasons})")
        else:
            notes.append(f"{init}: " + ", ".join(f"{r.activation} {r.direction} ({r.why})"
                                                 for r in frame.itertuples(index=False)))
    note = ["Not drawn: " + "; ".join(notes) + "."] if notes else []
    note_width = _chars_across(DOUBLE_COLUMN)
    # The key's row: the legend's lines (6 pt entries, ~0.15 inch each) and, below them, the note's (5.5 pt,
    # ~0.1 inch each).
    columns = _legend_columns(inits, DOUBLE_COLUMN)
    key_height = 0.15 + 0.15 * -(-len(inits) // columns) + 0.1 * sum(len(textwrap.wrap(line, note_width))
                                                                      for line in note)
    figure = plt.figure(figsize=(DOUBLE_COLUMN, 0.36 * len(activations) + 0.6 + key_height), constrained_layout=True)
    grid = figure.add_gridspec(2, 2, height_ratios=[0.36 * len(activations) + 0.6, key_height])
    axes = [figure.add_subplot(grid[0, 0])]
    axes.append(figure.add_subplot(grid[0, 1], sharey=axes[0]))
    for ax, direction in zip(axes, ("forward", "backward")):
        gain_forest(ax, compared, direction=direction, styles=styles)
    axes[1].tick_params(axis="y", labelleft=False)
    key = figure.add_subplot(grid[1, :])
    key.axis("off")
    entries = _legend_entries(axes, inits)
    key.legend(list(entries.values()), list(entries.keys()), loc="upper center",
               ncols=columns, frameon=False, borderaxespad=0.0)
    _note(key, note, y=0.0, width=note_width)
    return figure


def _gain_reason(frame: pd.DataFrame) -> pd.Series:
    """Why a gain row is not drawn: its status where recorded (:mod:`analysis.fit`), else what is missing."""
    if "status" in frame.columns:
        return frame["status"].astype(str).where(frame["status"].astype(str) != "ok", "no interval or theory")
    reason = np.where(frame["gain"].to_numpy() == 0, "gain 0: no finite signal",
                      np.where(~np.isfinite(frame["theory"].to_numpy()) | (frame["theory"].to_numpy() <= 0),
                               "no theory", "no interval"))
    return pd.Series(reason, index=frame.index)


# ------------------------------------------------------------------ 4: finite-width spread


def spread_plot(ax, measured: pd.DataFrame, predicted: pd.DataFrame | None = None,
                pooled: pd.DataFrame | None = None):
    """Spread of ln variance against depth/width, with intervals, and the finite-width prediction.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    measured : pandas.DataFrame
        :func:`analysis.fit.spread` rows (``init``, ``width``, ``depth_over_width``,
        ``var_ln``, ``seeds``) with ``var_ln_low``/``var_ln_high``: its confidence interval.
    predicted : pandas.DataFrame, optional
        Columns ``depth_over_width`` and ``var_ln`` (docs/theory.md section 4).
    pooled : pandas.DataFrame, optional
        A second estimate per ``init``: ``depth_over_width``, ``var_ln``, ``var_ln_low``,
        ``var_ln_high`` (drawn as a line with its band).

    Returns
    -------
    matplotlib.axes.Axes
    """
    labels = measured["init"].astype(str)
    styles = style_map(_order(labels))
    values = []
    for label, frame in measured.groupby(labels, sort=False):
        frame = frame[frame["var_ln"] > 0]
        seeds = int(frame["seeds"].iloc[0])
        style = styles[label]
        ax.fill_between(frame["depth_over_width"], frame["var_ln_low"], frame["var_ln_high"], color=style["color"],
                        alpha=0.07, lw=0)
        ax.plot(frame["depth_over_width"], frame["var_ln"], linestyle="", marker=style["marker"], ms=2.0,
                color=style["color"], alpha=0.8, label=f"{label}: across {seeds} seeds")
        values += [frame["var_ln_low"], frame["var_ln_high"]]
        if pooled is not None:
            line = pooled[pooled["init"] == label]
            ax.fill_between(line["depth_over_width"], line["var_ln_low"], line["var_ln_high"], color=style["color"],
                            alpha=0.25, lw=0)
            ax.plot(line["depth_over_width"], line["var_ln"], color=style["color"], linestyle=style["linestyle"],
                    lw=1.1, label=f"{label}: sum of per-layer steps")
            values += [line["var_ln_low"], line["var_ln_high"]]
    if predicted is not None:
        ax.plot(predicted["depth_over_width"], predicted["var_ln"], **{**_THEORY_STYLE, "lw": 1.0},
                label="theory, one input")
        values.append(predicted["var_ln"])
    shown = np.concatenate([np.asarray(v, dtype=np.float64) for v in values])
    shown = shown[np.isfinite(shown) & (shown > 0)]
    ax.set_xscale("log")
    ax.set_yscale("log")
    if shown.size:
        ax.set_ylim(shown.min() / 1.5, shown.max() * 1.5)
    ax.set_xlabel(r"depth / width, $\beta_l = \sum_{k \leq l} 1/n_k$")
    ax.set_ylabel(r"Var of $\ln\,\mathrm{Var}(z_l)$")
    ax.legend(frameon=False, loc="upper left", fontsize=5.5)
    return ax


def spread_figure(measured: pd.DataFrame, predicted: pd.DataFrame | None = None, *, pooled=None, title: str = ""):
    """One panel of :func:`spread_plot` at single-column width.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, ax = plt.subplots(figsize=(SINGLE_COLUMN, 2.7), constrained_layout=True)
    spread_plot(ax, measured, predicted, pooled)
    ax.set_title(title, fontsize=8)
    return figure


# ------------------------------------------------------------------ 5: phase diagram


def _centred_norm(values: np.ndarray, centre: float = 0.0):
    """A diverging norm with ``centre`` in the middle of the colour map (white)."""
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (centre - 1.0, centre + 1.0)
    if low < centre < high:
        return mpl.colors.TwoSlopeNorm(vcenter=centre, vmin=low, vmax=high)
    return mpl.colors.CenteredNorm(vcenter=centre, halfrange=max(abs(low - centre), abs(high - centre), 1e-12))


def phase_diagram(ax, sigma_w2: np.ndarray, sigma_b2: np.ndarray, chi1: np.ndarray, critical: np.ndarray,
                  studied: pd.DataFrame | None = None):
    """chi1 over the (sigma_w^2, sigma_b^2) plane, the critical line, and studied initializers.

    Colour is log10 chi1 on a diverging scale centred (white) on chi1 = 1, each side
    stretched to its own extreme; initializers at the same point share one marker.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    sigma_w2, sigma_b2 : numpy.ndarray
        Grid axes (1-D); sigma_w2 is drawn on a log axis.
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
    mesh = ax.pcolormesh(sigma_w2, sigma_b2, log_chi, cmap="RdBu_r", norm=_centred_norm(log_chi), shading="auto",
                         rasterized=True)
    bar = ax.figure.colorbar(mesh, ax=ax, label=r"$\chi_1$ (log scale)")
    ticks = [t for t in (0.01, 0.03, 0.1, 0.3, 1.0, 2.0, 4.0, 10.0)
             if mesh.norm.vmin <= math.log10(t) <= mesh.norm.vmax]
    bar.set_ticks([math.log10(t) for t in ticks], labels=[f"{t:g}" for t in ticks])
    ax.plot(critical, sigma_b2, color="k", lw=1.2, label=r"critical line $\chi_1 = 1$")
    ax.text(0.03, 0.95, "ordered\n(gradients vanish)", transform=ax.transAxes, va="top", fontsize=6)
    ax.text(0.97, 0.95, "chaotic\n(gradients explode)", transform=ax.transAxes, ha="right", va="top", fontsize=6)
    ax.set_xscale("log")
    notes = []
    if studied is not None and not studied.empty:
        styles = style_map(_order(studied["init"]))
        for (w2, b2), frame in studied.groupby(["sigma_w2", "sigma_b2"], sort=False):
            names = list(frame["init"])
            if not sigma_w2.min() <= w2 <= sigma_w2.max() or not sigma_b2.min() <= b2 <= sigma_b2.max():
                notes.append(f"{' = '.join(names)} ($\\sigma_w^2$ = {w2:.3g}) off the axes")
                continue
            style = styles[names[0]]
            ax.plot(w2, b2, marker=style["marker"], color="k", ms=5, mfc=style["color"], mew=0.8, linestyle="",
                    label=" = ".join(names), clip_on=False, zorder=5)
    ax.set_xlim(sigma_w2.min(), sigma_w2.max())
    margin = 0.03 * (sigma_b2.max() - sigma_b2.min())  # markers on sigma_b^2 = 0 stay whole
    ax.set_ylim(sigma_b2.min() - margin, sigma_b2.max())
    ax.set_xlabel(r"$\sigma_w^2$ (fan_in $\cdot$ Var W)")
    ax.set_ylabel(r"$\sigma_b^2$")
    ax.legend(frameon=True, fontsize=5, loc="center left", framealpha=0.9, borderpad=0.3)
    _note(ax, notes, y=0.1)
    return ax


def phase_figure(*args, title: str = "tanh", **kwargs):
    """One panel of :func:`phase_diagram` at single-column width.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, ax = plt.subplots(figsize=(SINGLE_COLUMN, 2.6), constrained_layout=True)
    phase_diagram(ax, *args, **kwargs)
    ax.set_title(title, fontsize=8)
    return figure


# ------------------------------------------------------------------ 6: gradient heatmap

# How a cell with no number reads: text and hatch differ for every reason.
_MISSING = {"exactly zero": ("= 0", ""), "overflow": ("over-\nflow", "xxxx"), "underflow": ("under-\nflow", "...."),
            "": ("n/a", "")}


def gradient_heatmap(ax, table: pd.DataFrame, status: pd.DataFrame | None = None):
    """log10 gradient variance at the input layer, initializer x activation.

    A diverging colour scale centred (white) on 0, i.e. on a gradient that reaches layer
    1 as large as it left the output; cells without a number say why, each reason with
    its own text and hatch: "= 0" (exactly zero), "overflow", "underflow".

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    table : pandas.DataFrame
        Index initializers, columns activations, values log10 Var(dL/dz_1) (mean over
        seeds; non-finite where not known).
    status : pandas.DataFrame, optional
        Same shape: "" where the value is known, else "exactly zero", "overflow" or
        "underflow" (:func:`curve_ends`).  Without it a -inf reads as exactly zero and
        any other non-finite value as an overflow.

    Returns
    -------
    matplotlib.axes.Axes
    """
    shown = table.replace([-np.inf, np.inf], np.nan).astype(float)
    if status is None:
        status = table.map(lambda v: "" if np.isfinite(v) else ("exactly zero" if v == -np.inf else "overflow"))
    norm = _centred_norm(shown.to_numpy())
    norm = mpl.colors.CenteredNorm(vcenter=0.0, halfrange=max(abs(norm.vmin), abs(norm.vmax), 1.0))
    annotations = shown.map(lambda v: "" if np.isnan(v) else f"{round(v) + 0:d}")
    # vmin/vmax given: seaborn would take them from the data, which may be all NaN (a zeros-only study).
    sns.heatmap(shown, ax=ax, cmap="RdBu_r", norm=norm, vmin=norm.vmin, vmax=norm.vmax, annot=annotations, fmt="",
                annot_kws={"fontsize": 5},
                linewidths=0.5, linecolor="white",
                cbar_kws={"label": r"$\log_{10}\,\mathrm{Var}(\partial L/\partial z_1)$"})
    ax.set_facecolor("white")
    for i, init in enumerate(table.index):
        for j, activation in enumerate(table.columns):
            if np.isfinite(table.loc[init, activation]):
                continue
            reason = status.loc[init, activation] if status.loc[init, activation] in _MISSING else ""
            text, hatch = _MISSING[reason]
            ax.add_patch(mpl.patches.Rectangle((j + 0.03, i + 0.03), 0.94, 0.94, facecolor="0.9", edgecolor="0.6",
                                               hatch=hatch, lw=0, zorder=2))
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=4.5, color="0.1", zorder=3,
                    bbox={"boxstyle": "square,pad=0.1", "fc": "0.9", "ec": "none"} if hatch else None)
    ax.set_xlabel("activation")
    ax.set_ylabel("initializer")
    ax.tick_params(axis="both", labelsize=6, length=0)
    ax.set_xticklabels(ax.get_xticklabels(), rotation=35, ha="right")
    return ax


def heatmap_figure(table: pd.DataFrame, *, status: pd.DataFrame | None = None, title: str = ""):
    """One panel of :func:`gradient_heatmap` at single-column width.

    Returns
    -------
    matplotlib.figure.Figure
    """
    figure, ax = plt.subplots(figsize=(SINGLE_COLUMN, 0.9 + 0.22 * table.shape[0]), constrained_layout=True)
    gradient_heatmap(ax, table, status)
    ax.set_title(title, fontsize=7)
    return figure


# ------------------------------------------------------------------ Jacobian spectra


def spectrum_plot(ax, measured: pd.DataFrame, predicted: pd.DataFrame):
    """Histogram of squared singular values per weight ensemble (log x), with theory's variance in the legend.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    measured : pandas.DataFrame
        One case of :func:`analysis.spectra.critical_spectra`'s measured frame (``weights``, ``lambda``).
    predicted : pandas.DataFrame
        The same case's rows of its predicted frame (``weights``, ``variance``, ``sample_variance``).

    Returns
    -------
    matplotlib.axes.Axes
    """
    values = measured["lambda"].to_numpy()
    # The spectrum's bulk, 1e-4 to its top; rank-deficient products (ReLU) put singular values
    # far below it, which are counted in the legend rather than stretching the axis to 1e-300.
    low = _SPECTRUM_FLOOR
    bins = np.geomspace(low, max(10.0, float(values.max()) * 1.5), 45)
    styles = style_map(["gaussian", "orthogonal"])
    for ensemble, part in measured.groupby("weights", sort=False):
        row = predicted.set_index("weights").loc[ensemble]
        lam = part["lambda"].to_numpy()
        below = int(np.count_nonzero(lam < low))
        shown = lam[lam >= low]
        ax.hist(shown, bins=bins, histtype="step", weights=np.full(shown.size, 1.0 / lam.size),
                color=styles[ensemble]["color"], lw=1.0,
                label=f"{ensemble}: variance {row.sample_variance:.3g} (theory {row.variance:.3g})"
                      + (f"; {below} of {lam.size} below {low:g}" if below else ""))
    ax.axvline(1.0, **_THEORY_STYLE)
    ax.set_xscale("log")
    ax.set_xlabel(r"squared singular value $\lambda$ of $\partial h_L / \partial h_0$")
    ax.set_ylabel("fraction of singular values")
    ax.legend(fontsize=5.5, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    return ax


def spectra_figure(measured: pd.DataFrame, predicted: pd.DataFrame, *, title: str = ""):
    """A panel of :func:`spectrum_plot` per case, side by side.

    Returns
    -------
    matplotlib.figure.Figure
    """
    cases = _order(measured["case"])
    figure, axes = plt.subplots(1, len(cases), figsize=(DOUBLE_COLUMN, 2.8), squeeze=False, constrained_layout=True)
    for ax, case in zip(axes.flat, cases):
        spectrum_plot(ax, measured[measured.case == case], predicted[predicted.case == case])
        ax.set_title(case, fontsize=7)
    figure.suptitle(title)
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
    figure, axes = plt.subplots(lines, columns, figsize=(DOUBLE_COLUMN if columns > 1 else SINGLE_COLUMN,
                                                      1.8 * lines + 0.6), squeeze=False,
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


def epochs_plot(ax, table: pd.DataFrame, *, styles: dict | None = None, ylabel: str = "epochs to target loss",
                by: str = "activation"):
    """Epochs to a target (the loss's by default) with intervals, a marker per initializer, grouped by ``by``.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    table : pandas.DataFrame
        :func:`analysis.fit.epochs_to_target` rows (``init``, ``activation``, ``epochs``,
        ``epochs_low``, ``epochs_high``, ``reached``, ``seeds``).
    styles : dict, optional
        Per initializer, as :func:`style_map` makes them.
    ylabel : str, default "epochs to target loss"
    by : str, default "activation"
        The column whose values are the categories along x.

    Returns
    -------
    matplotlib.axes.Axes
    """
    categories = _order(table[by])
    inits = _order(table["init"])
    styles = styles or style_map(inits)
    offsets = np.linspace(-0.3, 0.3, len(inits)) if len(inits) > 1 else np.zeros(1)
    for offset, init in zip(offsets, inits):
        mine = table[(table["init"] == init) & (table["reached"] > 0)]
        x = np.array([categories.index(a) for a in mine[by]]) + offset
        y = mine["epochs"].to_numpy()
        low = np.nan_to_num(y - mine["epochs_low"].to_numpy())
        high = np.nan_to_num(mine["epochs_high"].to_numpy() - y)
        ax.errorbar(x, y, yerr=np.vstack([low, high]), fmt=styles[init]["marker"], color=styles[init]["color"],
                    ms=4, capsize=2, lw=0.8, label=init)
        for xi, yi, reached, seeds in zip(x, y, mine["reached"], mine["seeds"]):
            if reached < seeds:
                ax.annotate(f"{reached}/{seeds}", (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=5)
    ax.set_xticks(range(len(categories)), categories)
    ax.set_ylabel(ylabel)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, fontsize=6)
    else:
        ax.text(0.5, 0.5, "no run reached the target", transform=ax.transAxes, ha="center", fontsize=7)
    return ax


def distinct_units_plot(ax, rows: pd.DataFrame, *, styles: dict | None = None):
    """Distinct units against hidden layer, a line per initializer (median over seeds, band min-max).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    rows : pandas.DataFrame
        Hidden-layer rows of one net at one epoch (``layer``, ``init``, ``distinct_units``, ``fan_out``).
    styles : dict, optional
        Per initializer, as :func:`style_map` makes them.

    Returns
    -------
    matplotlib.axes.Axes
    """
    inits = _order(rows["init"])
    styles = styles or style_map(inits)
    summary = rows.groupby(["init", "layer"], sort=False)["distinct_units"].agg(["median", "min", "max"]).reset_index()
    for init in inits:
        curve = summary[summary["init"] == init]
        style = styles[init]
        ax.plot(curve["layer"], curve["median"], color=style["color"], linestyle=style["linestyle"],
                marker=style["marker"], ms=2.5, lw=1.0, label=init)
        ax.fill_between(curve["layer"], curve["min"], curve["max"], color=style["color"], alpha=0.15, lw=0)
    ax.set_yscale("log")
    ax.axhline(rows["fan_out"].max(), color="0.6", lw=0.6, ls=":")  # every unit distinct
    ax.set_xlabel("hidden layer")
    ax.set_ylabel("distinct units")
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


# ------------------------------------------------------------------ 10: a traced torch model against the engine


_SOURCE_STYLES = {"traced": {"linestyle": "-", "marker": "o", "markersize": 2.5},
                  "engine": {"linestyle": (0, (4, 1.5)), "marker": None},
                  "theory": {"linestyle": (0, (1, 1.2)), "marker": None, "linewidth": 1.0}}


def trace_comparison(ax, curves: pd.DataFrame, *, column: str, colors: dict):
    """Per-layer ``column`` of each initializer as traced, as the engine ran it and as theory predicts it.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    curves : pandas.DataFrame
        Columns ``init``, ``source`` ("traced", "engine" or "theory"), ``layer`` and ``column``
        (already aggregated over seeds: the mean of log10 variance).
    column : str
        ``"log10_fwd_var"`` or ``"log10_grad_var"``.
    colors : dict
        A colour per ``init``.

    Returns
    -------
    matplotlib.axes.Axes
    """
    for (init, source), curve in curves.groupby(["init", "source"], sort=False):
        finite = curve[np.isfinite(curve[column])]
        ax.plot(finite["layer"], finite[column], color=colors[init], label=f"{init}, {source}",
                **_SOURCE_STYLES[source])
    ax.set_xlabel("layer $l$")
    ax.set_ylabel(r"$\log_{10}$ Var($z_l$)" if column == "log10_fwd_var" else r"$\log_{10}$ Var($\partial L/\partial z_l$)")
    return ax


def trace_figure(curves: pd.DataFrame, *, title: str = ""):
    """Forward and backward panels of :func:`trace_comparison`, at double-column width, with one key.

    Returns
    -------
    matplotlib.figure.Figure
    """
    colors = {init: style["color"] for init, style in style_map(_order(curves["init"])).items()}
    figure, axes = plt.subplots(1, 2, figsize=(DOUBLE_COLUMN, 2.6), constrained_layout=True)
    for ax, column, name in zip(axes, ("log10_fwd_var", "log10_grad_var"), ("forward", "backward")):
        trace_comparison(ax, curves, column=column, colors=colors)
        ax.set_title(name)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=3, frameon=False)
    if title:
        figure.suptitle(title)
    return figure

