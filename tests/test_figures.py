"""Figure-level properties a referee checks: every legend entry drawn and distinct, curves that leave the float
range end in a marker, limits that hold the data, reasons that differ, colour scales centred on a gain of 1,
column widths with nothing outside the figure.  Built from constructed tables: no kernels run."""

from __future__ import annotations

import io
import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis import figures
from analysis.fit import variance_interval as _chi2_interval
from analysis.report import _estimate_text, _gain_reading, _range_note

DEPTH = 40
OVERFLOW_AT = 25  # first layer whose statistic is not finite in the overflowing cell


def _cell(init, activation, slope, *, seeds=3, start=0.0, after=None, nonfinite=0, noise=0.01):
    """Per-layer rows of one cell: log10 variance ``start + slope * layer`` (forward and backward alike)."""
    rng = np.random.default_rng(abs(hash((init, activation))) % 2**32)
    frames = []
    for seed in range(seeds):
        layer = np.arange(1, DEPTH + 1)
        value = start + slope * layer + noise * rng.standard_normal(DEPTH)
        count = np.zeros(DEPTH, dtype=np.int64)
        if after is not None:
            value[layer >= OVERFLOW_AT] = after
            count[layer >= OVERFLOW_AT] = nonfinite
        frames.append(pd.DataFrame({"init": init, "activation": activation, "seed": seed, "layer": layer,
                                    "log10_fwd_var": value, "log10_grad_var": value[::-1].copy(),
                                    "fwd_nonfinite": count, "grad_nonfinite": count[::-1].copy()}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(autouse=True)
def _style():
    figures.apply_style()
    yield
    plt.close("all")


@pytest.fixture
def rows():
    """He (flat, normal = uniform exactly), Xavier (halving), a runaway, zeros, and cells that leave the float range."""
    cells = []
    for activation in ("relu", "gelu"):
        cells += [_cell("he_normal", activation, 0.0, noise=0.0), _cell("he_uniform", activation, 0.0, noise=0.0),
                  _cell("xavier_normal", activation, -0.3), _cell("normal:std=0.5", activation, 5.0),
                  _cell("zeros", activation, 0.0, after=-np.inf) .assign(log10_fwd_var=-np.inf, log10_grad_var=-np.inf)]
    # gelu: new engine overflow (NaN with a count), old engine overflow (0 stored: -inf with a count), underflow.
    cells += [_cell("lecun_normal", "gelu", 0.5, after=np.nan, nonfinite=100),
              _cell("orthogonal", "gelu", 0.5, after=-np.inf, nonfinite=100),
              _cell("uniform", "gelu", -1.2, after=-np.inf, nonfinite=0)]
    cells += [_cell(i, "relu", 0.2) for i in ("lecun_normal", "orthogonal", "uniform")]
    # A third activation, so the 2-column grid has a spare slot that holds the notes.
    cells += [_cell(i, "tanh", s) for i, s in (("he_normal", 0.0), ("xavier_normal", -0.3))]
    return pd.concat(cells, ignore_index=True)


def _theory(rows):
    curves = rows[rows.seed == 0][["init", "activation", "layer"]].copy()
    slopes = {"he_normal": 0.0, "he_uniform": 0.0, "xavier_normal": -0.3, "normal:std=0.5": 5.0, "zeros": -np.inf,
              "lecun_normal": 0.5, "orthogonal": 0.5, "uniform": -1.2}
    slope = curves.init.map(slopes).to_numpy()
    with np.errstate(invalid="ignore"):
        curves["log10_fwd_var"] = slope * curves.layer
    curves["log10_grad_var"] = curves["log10_fwd_var"]
    return curves


def _legend(figure):
    return [legend for ax in figure.axes for legend in [ax.get_legend()] if legend is not None]


def _panels(figure):
    return [ax for ax in figure.axes if ax.axison and ax.get_title()]


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_every_legend_entry_is_drawn_and_distinct(rows, direction):
    figure = figures.variance_figure(rows, direction=direction, theory=_theory(rows))
    (legend,) = _legend(figure)
    labels = [t.get_text() for t in legend.get_texts()]
    drawn = {}
    for ax in _panels(figure):
        for line in ax.get_lines():
            if np.isfinite(np.asarray(line.get_ydata(), dtype=float)).any():
                drawn.setdefault(line.get_label(), line)
    for label in labels:
        assert label in drawn, f"legend entry {label!r} has no drawn artist"
    styles = [(matplotlib.colors.to_hex(drawn[label].get_color()), repr(drawn[label].get_linestyle()),
               repr(drawn[label]._dash_pattern), drawn[label].get_marker()) for label in labels]
    assert len(set(styles)) == len(styles), "two legend entries share colour, line style and marker"
    # zeros is never finite: named in a note, not in the legend.
    assert "zeros" not in labels
    notes = " ".join(t.get_text() for ax in figure.axes for t in ax.texts)
    assert "zeros" in notes and "exactly zero" in notes


def test_style_map_is_unique_per_label():
    styles = figures.style_map([f"init{i}" for i in range(40)])
    triples = {(s["color"], str(s["linestyle"]), s["marker"]) for s in styles.values()}
    assert len(triples) == 40
    assert len({str(s["linestyle"]) for s in list(styles.values())[:8]}) == 8  # one dotted style, not three


@pytest.mark.parametrize("init, end", [("lecun_normal", "overflow"), ("orthogonal", "overflow"),
                                       ("uniform", "underflow")])
def test_curve_that_leaves_the_float_range_ends_in_a_marker(rows, init, end):
    ends = figures.curve_ends(figures.curve_summary(rows, "forward"), "forward").set_index(["activation", "init"])
    assert ends.loc[("gelu", init), "end"] == end
    assert ends.loc[("gelu", init), "last_layer"] == OVERFLOW_AT - 1
    assert ends.loc[("relu", init), "end"] == ""  # the same initializer stays finite on relu
    assert ends.loc[("gelu", "zeros"), "end"] == "exactly zero"
    assert math.isnan(ends.loc[("gelu", "zeros"), "last_layer"])
    figure, ax = plt.subplots()
    mine = rows[(rows.activation == "gelu") & (rows.init == init)]
    figures.variance_curves(ax, mine, direction="forward")
    marker = figures._END_MARKERS[end]
    ends_drawn = [line for line in ax.get_lines() if line.get_marker() == marker and line.get_color() == "k"]
    assert len(ends_drawn) == 1
    assert ends_drawn[0].get_xdata()[0] == OVERFLOW_AT - 1
    curve = next(line for line in ax.get_lines() if line.get_label() == init)
    x = np.asarray(curve.get_xdata(), dtype=float)
    y = np.asarray(curve.get_ydata(), dtype=float)
    assert x[np.isfinite(y)].max() == OVERFLOW_AT - 1  # no made-up point after the last finite layer


def test_reading_says_where_curves_leave_the_float_range(rows):
    text = _range_note(rows, "forward")
    assert f"lecun_normal overflows after layer {OVERFLOW_AT - 1} (gelu)" in text
    assert f"uniform underflows after layer {OVERFLOW_AT - 1} (gelu)" in text
    assert "zeros (exactly zero: relu, gelu)" in text  # not studied on tanh


def test_backward_curves_end_in_their_own_direction(rows):
    """The gradient runs from the last layer down: its last finite layer is above the overflow."""
    ends = figures.curve_ends(figures.curve_summary(rows, "backward"), "backward").set_index(["activation", "init"])
    # log10_grad_var is the forward curve reversed: non-finite at layers 1 .. DEPTH - OVERFLOW_AT + 1.
    assert ends.loc[("gelu", "lecun_normal"), "last_layer"] == DEPTH - OVERFLOW_AT + 2
    assert ends.loc[("gelu", "lecun_normal"), "end"] == "overflow"


def test_a_seed_that_overflows_is_not_averaged_away(rows):
    one = rows[(rows.activation == "relu") & (rows.init == "xavier_normal")].copy()
    one.loc[(one.seed == 1) & (one.layer == 10), "log10_fwd_var"] = np.nan
    summary = figures.curve_summary(one, "forward").set_index("layer")
    assert np.isnan(summary.loc[10, "mean"]) and np.isfinite(summary.loc[9, "mean"])


@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_limits_hold_the_plotted_data_and_resolve_he_against_xavier(rows, direction):
    figure = figures.variance_figure(rows, direction=direction, theory=_theory(rows))
    for ax in _panels(figure):
        low, high = ax.get_ylim()
        for line in ax.get_lines():
            y = np.asarray(line.get_ydata(), dtype=float)
            assert np.all((y[np.isfinite(y)] >= low) & (y[np.isfinite(y)] <= high)), line.get_label()
        # He (0) and Xavier (-0.3 per layer, 12 decades at layer 40) apart by at least a third of the axis,
        # although normal:std=0.5 runs to 200 decades.
        assert 0.3 * DEPTH / (high - low) > 1 / 3


def test_gain_forest_shows_every_estimate_inside_its_limits():
    records = []
    for activation in ("relu", "tanh"):
        for init, gain, half in (("he_normal", 1.0, 0.02), ("he_uniform", 1.0, 0.02), ("uniform", 0.33, 0.4)):
            for direction in ("forward", "backward"):
                records.append({"init": init, "activation": activation, "direction": direction, "gain": gain,
                                "gain_low": gain * (1 - half), "gain_high": gain * (1 + half), "theory": gain,
                                "log10_gain": math.log10(gain), "log10_gain_low": math.log10(gain * (1 - half)),
                                "log10_gain_high": math.log10(gain * (1 + half))})
    records.append({**records[0], "init": "zeros", "gain": 0.0, "gain_low": 0.0, "gain_high": 0.0,
                    "log10_gain": -np.inf, "log10_gain_low": -np.inf, "log10_gain_high": -np.inf})
    figure = figures.gain_figure(pd.DataFrame.from_records(records))
    panels = [ax for ax in figure.axes if ax.axison]
    assert len(panels) == 2
    for ax in panels:
        low, high = ax.get_xlim()
        positions = {}
        for container in ax.containers:
            line, _, (bars,) = container
            for segment in bars.get_segments():
                assert low <= segment[:, 0].min() and segment[:, 0].max() <= high  # the whole interval shows
            positions[container.get_label()] = tuple(np.asarray(line.get_ydata(), dtype=float))
        assert positions["he_normal"] != positions["he_uniform"]  # dodged, not hidden under each other
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["relu", "tanh"]  # the activation is encoded
    notes = " ".join(t.get_text() for ax in figure.axes for t in ax.texts)
    assert "zeros" in notes


def test_heatmap_tells_exact_zero_from_overflow():
    table = pd.DataFrame({"relu": [-3.0, -np.inf, np.nan], "tanh": [1.0, -np.inf, 4.0]},
                         index=["he_normal", "zeros", "normal:std=0.5"])
    status = pd.DataFrame({"relu": ["", "exactly zero", "overflow"], "tanh": ["", "exactly zero", ""]},
                          index=table.index)
    figure, ax = plt.subplots()
    figures.gradient_heatmap(ax, table, status)
    texts = {(round(t.get_position()[0] - 0.5), round(t.get_position()[1] - 0.5)): t.get_text() for t in ax.texts}
    zero, overflow = texts[(0, 1)], texts[(0, 2)]
    assert zero != overflow and "over" in overflow
    hatches = {(round(p.get_x()), round(p.get_y())): p.get_hatch() for p in ax.patches
               if isinstance(p, matplotlib.patches.Rectangle) and p.get_width() < 1}  # the cells' own patches
    assert hatches.get((0, 1)) != hatches.get((0, 2))
    mesh = next(c for c in ax.collections if isinstance(c, matplotlib.collections.QuadMesh))
    assert mesh.norm(0.0) == pytest.approx(0.5)  # white = Var(dL/dz_1) = 1: gain 1 over the depth


def test_phase_diagram_colour_scale_centred_on_chi1_one():
    sigma_w2 = np.geomspace(0.1, 10.0, 30)
    sigma_b2 = np.linspace(0.0, 0.2, 10)
    chi1 = np.broadcast_to(sigma_w2[None, :] ** 0.5, (10, 30))  # log10 chi1 from -0.5 to 0.5... asymmetric below
    chi1 = np.where(chi1 < 1, chi1**3, chi1)
    studied = pd.DataFrame({"init": ["a", "b", "c"], "sigma_w2": [1.0, 1.0, 2.0], "sigma_b2": [0.0, 0.0, 0.0]})
    figure, ax = plt.subplots()
    figures.phase_diagram(ax, sigma_w2, sigma_b2, chi1, np.ones(10), studied)
    mesh = ax.collections[0]
    assert mesh.norm(0.0) == pytest.approx(0.5)
    assert mesh.norm(mesh.norm.vmin) == pytest.approx(0.0) and mesh.norm(mesh.norm.vmax) == pytest.approx(1.0)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "a = b" in labels and "c" in labels  # coinciding initializers share one marker


def _spread_tables():
    layer = np.arange(1, DEPTH + 1)
    measured = pd.concat([pd.DataFrame({"init": init, "width": 64, "layer": layer, "depth_over_width": layer / 64,
                                        "var_ln": 5 * layer / 64 * f, "seeds": 3})
                          for init, f in (("a", 1.0), ("b", 2.0))])
    measured["var_ln_low"], measured["var_ln_high"] = _chi2_interval(measured.var_ln, measured.seeds - 1)
    pooled = measured.assign(var_ln_low=measured.var_ln * 0.8, var_ln_high=measured.var_ln * 1.25)
    predicted = pd.DataFrame({"depth_over_width": layer / 64, "var_ln": 5 * layer / 64})
    return measured, predicted, pooled


def _gains_with_a_long_note():
    """Gains of 7 activations, of which 7 initializers' forward gains are exact zeros but for relu's (listed under the key)."""
    records = []
    for activation in ("relu", "tanh", "gelu", "silu", "sigmoid", "elu", "selu"):
        for k in range(8):
            zero = k > 0 and activation != "relu"
            gain = 0.0 if zero else 1.0
            records.append({"init": f"normal:std={k + 1}", "activation": activation,
                            "direction": "forward", "gain": gain, "gain_low": 0.9 * gain, "gain_high": 1.1 * gain,
                            "theory": 1.0, "log10_gain": math.log10(gain) if gain else -np.inf,
                            "log10_gain_low": math.log10(0.9 * gain) if gain else -np.inf,
                            "log10_gain_high": math.log10(1.1 * gain) if gain else -np.inf})
    return pd.DataFrame.from_records(records)


@pytest.mark.parametrize("build", ["variance", "gain", "gain_with_note", "spread", "phase", "heatmap"])
def test_figures_are_column_wide_and_nothing_falls_outside(rows, build):
    if build == "variance":
        # Seven activations in four columns, as the default study: the one spare slot holds the notes.
        more = [_cell(i, a, s) for a in ("linear", "sigmoid", "silu", "elu") for i, s in (("he_normal", 0.0),
                                                                                          ("zeros", 0.0))]
        rows = pd.concat([rows, *more], ignore_index=True)
        rows.loc[rows.init == "zeros", ["log10_fwd_var", "log10_grad_var"]] = -np.inf
        figure = figures.variance_figure(rows, theory=_theory(rows))
    elif build == "gain":
        figure = figures.gain_figure(pd.DataFrame({
            "init": ["a", "b"], "activation": "relu", "direction": "forward", "gain": 1.0, "gain_low": 0.9,
            "gain_high": 1.1, "theory": 1.0, "log10_gain": 0.0, "log10_gain_low": -0.05, "log10_gain_high": 0.04}))
    elif build == "gain_with_note":
        figure = figures.gain_figure(_gains_with_a_long_note())
        note = " ".join(t.get_text() for ax in figure.axes for t in ax.texts)
        assert note.startswith("Not drawn") and len(note) > 3 * figures._chars_across(figures.DOUBLE_COLUMN)
    elif build == "spread":
        measured, predicted, pooled = _spread_tables()
        figure = figures.spread_figure(measured, predicted, pooled=pooled)
    elif build == "phase":
        w2 = np.geomspace(0.1, 10, 20)
        figure = figures.phase_figure(w2, np.linspace(0, 0.2, 5), np.broadcast_to(w2, (5, 20)), np.ones(5))
    else:
        figure = figures.heatmap_figure(pd.DataFrame({"relu": [0.0, np.nan]}, index=["a", "b"]))
    width = figure.get_figwidth()
    assert width in (figures.SINGLE_COLUMN, figures.DOUBLE_COLUMN)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    box = figure.bbox
    for ax in figure.axes:
        for text in ax.texts:
            if text.get_text().strip():
                extent = text.get_window_extent(renderer)
                assert extent.x0 >= box.x0 - 1 and extent.x1 <= box.x1 + 1, f"text {text.get_text()[:30]!r} clipped"
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=50)
    saved = plt.imread(io.BytesIO(buffer.getvalue()))
    assert saved.shape[1] / 50 <= width + 0.1  # tight bbox: nothing sticks out beyond the column


def test_chi2_interval_covers_at_its_level():
    """Three normal draws (2 degrees of freedom): the interval holds the true variance 95 % of the time."""
    rng = np.random.default_rng(12)
    draws = 4000
    samples = rng.normal(0.0, 1.7, size=(draws, 3))
    low, high = _chi2_interval(samples.var(axis=1, ddof=1), 2)
    coverage = np.mean((low <= 1.7**2) & (1.7**2 <= high))
    assert abs(coverage - 0.95) < 5 * math.sqrt(0.95 * 0.05 / draws)


def test_caption_prints_the_digits_that_carry_the_claim():
    text = _estimate_text(0.332621, 0.332494, 0.332748, 1 / 3)
    numbers = [float(v) for v in text.replace("[", " ").replace("]", " ").replace(",", " ").split()
               if v[0].isdigit()]
    gain, low, high, theory = numbers
    assert len({gain, low, high, theory}) == 4  # the miss is visible in the printed numbers
    half = 0.332748 - 0.332621
    assert abs(gain - 0.332621) < half / 10 and abs(theory - 1 / 3) < half / 10
    compared = pd.DataFrame({"init": ["uniform", "he_normal"], "activation": "tanh", "direction": "backward",
                             "gain": [0.332621, 1.0], "gain_low": [0.332494, 0.9], "gain_high": [0.332748, 1.1],
                             "theory": [1 / 3, 1.0], "log10_gain": [math.log10(0.332621), 0.0],
                             "log10_gain_low": [math.log10(0.332494), -0.05],
                             "log10_gain_high": [math.log10(0.332748), 0.04], "deviation": [-5.6, 0.0]})
    reading = _gain_reading(compared)
    assert "1 of 2" in reading and "uniform + tanh backward" in reading and f"{gain}" in reading
