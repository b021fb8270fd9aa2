"""The report's training sections (``fastinit.train`` cells): 7, 8, 9, 11 and 13.

A study may ask several questions at once (``[[grids]]`` in its file, :mod:`fastinit.sweep.spec`):
each grid is one *question* here, and figures 8, 9, 11 and 13 get one figure per question
(suffix ``_1``, ``_2``, ... when there are several), so that a panel compares only what its grid
varies.  A study of one grid is one question, with the unsuffixed names.

7. training loss against epoch, one figure per configuration, a panel per activation;
8. epochs to the target loss with 95 % intervals over seeds, a category per configuration;
9. the fraction of diverged runs over (initializer, learning rate), a panel per value of the
   other axes the question varies (optimizer, clipping, ...), for questions that vary the rate;
11. with a held-out set, epochs to :data:`HELD_OUT_TARGET` held-out accuracy, as figure 8;
13. for questions with an initializer that starts with identical units (zeros, constants): the
    distinct units of every layer after training, against the layer (symmetry never broken is 1).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis import figures, fit
from analysis._tables import markdown, matching
from fastinit.sweep.spec import AXES, PROPAGATION_AXES, TRAINING_SHAPE
from fastinit.sweep.summary import run_diverged

__all__ = ["HELD_OUT_TARGET", "training_report", "questions", "config_label"]

# The held-out accuracy a configuration must reach (issue 15: "epochs to 90 % held-out accuracy").
HELD_OUT_TARGET = 0.9
_CONFIG = list(TRAINING_SHAPE)
# Axes a question's grid can name that are columns of the training rows.
_GRID_COLUMNS = [axis for axis in AXES if axis not in PROPAGATION_AXES]


# ------------------------------------------------------------------ questions and labels


def questions(rows: pd.DataFrame) -> list[pd.DataFrame]:
    """The rows of each grid of the study (its manifest's ``grids``), or all rows for a study of one grid.

    A grid's rows are those whose every axis value is one the grid lists, and whose seed is one
    of its replicates; a cell two grids share is in both.  Grids without a training cell are left out.

    Parameters
    ----------
    rows : pandas.DataFrame
        Training rows, ``attrs["manifest"]`` as :func:`fastinit.sweep.load` sets it.

    Returns
    -------
    list of pandas.DataFrame
    """
    grids = rows.attrs.get("manifest", {}).get("study", {}).get("grids") or []
    selected = []
    for grid in grids:
        mask = np.logical_and.reduce([rows[axis].isin(values) for axis, values in grid["axes"].items()
                                      if axis in _GRID_COLUMNS and axis in rows.columns]
                                     + [rows["seed"] < grid["seeds"]])
        if mask.any():
            selected.append(rows[mask])
    return selected or [rows]


def _parts(config: dict) -> list[tuple[tuple, str]]:
    """A configuration's label, part by part, each with the axes it shows."""
    return [
        (("task",), config["task"]),
        (("activation",), config.get("activation", "")),
        (("depth", "width"), f"{config['depth']}x{config['width']}"),
        (("batch",), f"batch {config['batch']}"),
        (("optimizer", "momentum", "beta1", "beta2", "eps"), config.get("optimizer", "sgd")),
        (("lr",), f"lr {config['lr']:g}"),
        (("weight_decay",), f"wd {config['weight_decay']:g}" if config.get("weight_decay") else ""),
        (("clip_norm",), f"clip {config['clip_norm']:g}" if config["clip_norm"] else "no clipping"),
        (("batchnorm",), "batchnorm" if config["batchnorm"] else ""),
        (("norm", "norm_at"), f"{config['norm']} norm at {config.get('norm_at', 'preact')}"
         if config.get("norm", "none") != "none" else ""),
        (("residual",), f"residual {config['residual']:g}" if config["residual"] else ""),
        (("dtype",), config["dtype"] if config["dtype"] != "float32" else ""),
    ]


def config_label(config: dict, shown=None, hidden=()) -> str:
    """A configuration in words; with ``shown``, only the parts naming one of those axes ("plain" if none is set).

    Parameters
    ----------
    config : dict
        Values of :data:`fastinit.sweep.spec.TRAINING_SHAPE` (and optionally ``activation``).
    shown : iterable of str, optional
        Axes to show (default: every part but the activation).
    hidden : iterable of str, optional
        Axes whose parts are left out even if they name a shown axis (a title leaves out what
        its panels vary: the optimizer's part also names its fixed momentum).

    Returns
    -------
    str
    """
    hidden = set(hidden)
    shown = set(shown) if shown is not None else {axis for axes, _ in _parts(config) for axis in axes} - {"activation"}
    parts = [text for axes, text in _parts(config) if shown.intersection(axes) and not hidden.intersection(axes)]
    return ", ".join(part for part in parts if part) or "plain"


def _varying(frame: pd.DataFrame, columns) -> list[str]:
    return [column for column in columns if frame[column].nunique() > 1]


def _suffix(number: int, count: int) -> str:
    return f"_{number}" if count > 1 else ""


# ------------------------------------------------------------------ the sections


def training_report(rows, out, writer):
    """Figures 7, 8, 9, 11 and 13 with their readings, and the epochs tables.

    Parameters
    ----------
    rows : pandas.DataFrame
        The study's training rows (every layer, every epoch).
    out : pathlib.Path
        The report directory (tables are written there).
    writer : analysis._figure_writer.FigureWriter

    Returns
    -------
    sections : list of (name, files, reading)
    tables : list of str
    """
    per_epoch = rows[rows["layer"] == 1]  # pandas carries rows.attrs (the manifest) over
    asked = questions(per_epoch)
    styles = figures.style_map(list(dict.fromkeys(per_epoch["init"])))  # one colour per initializer, in study order
    sections = []
    configs = per_epoch[_CONFIG].drop_duplicates().to_dict("records")
    for number, config in enumerate(configs, start=1):
        mask = matching(per_epoch, config)
        name = f"fig7_training_loss_{number}"
        figure = figures.training_figure(per_epoch[mask])
        figure.suptitle(f"Training loss, {config_label(config)}")
        sections.append((name, writer.save(figure, name), _loss_reading(per_epoch[mask])))

    target = fit.default_target(per_epoch)
    table = fit.epochs_to_target(per_epoch, target)
    for number, question in enumerate(asked, start=1):
        name = f"fig8_epochs_to_target{_suffix(number, len(asked))}"
        figure = _epochs_figure(table, question, "epochs to target loss", styles)
        figure.suptitle(f"Epochs until the training loss reaches {target:.3g} "
                        f"({fit.TARGET_FRACTION:g} of its median initial value)")
        sections.append((name, writer.save(figure, name),
                         _epochs_reading(table, question, f"the target loss {target:.3g}")))
    table.to_csv(out / "epochs_to_target.csv", index=False, float_format="%.6g")
    (out / "epochs_to_target.md").write_text(markdown(table))
    tables = ["epochs_to_target.csv", "epochs_to_target.md"]

    rated = [question for question in asked if question["lr"].nunique() > 1] or [per_epoch]
    for number, question in enumerate(rated, start=1):
        sections.append(_divergence_section(question, writer, f"fig9_divergence{_suffix(number, len(rated))}"))

    held_out = _held_out_sections(per_epoch, asked, out, writer, styles)
    if held_out is not None:
        more, table_files = held_out
        sections += more
        tables += table_files

    symmetric = [question for question in asked if _symmetric_inits(rows, question)]
    for number, question in enumerate(symmetric, start=1):
        name = f"fig13_distinct_units{_suffix(number, len(symmetric))}"
        sections.append(_symmetry_section(rows, question, writer, name, styles))
    return sections, tables


def _categories(table: pd.DataFrame, question: pd.DataFrame) -> pd.DataFrame:
    """The epochs table's rows of one question, with ``category``: the net in the words the question varies.

    In the table ``epochs`` is the result (mean epochs to the target), which shadows the epochs
    axis: rows are matched on every other axis.
    """
    shown = _varying(question, [*_CONFIG, "activation"]) or ["activation"]
    nets = question[[*_CONFIG, "activation", "init"]].drop_duplicates()
    keys = [column for column in [*_CONFIG, "activation", "init"] if column != "epochs"]
    picked = table.merge(nets.drop(columns="epochs"), on=keys, how="inner")
    picked["category"] = [config_label(record, shown) for record in picked[[*_CONFIG, "activation"]].to_dict("records")] \
        if not picked.empty else []
    return picked


def _epochs_figure(table, question, ylabel, styles=None):
    picked = _categories(table, question)
    count = max(1, picked["category"].nunique())
    figure, ax = plt.subplots(figsize=(max(3.4, 0.9 * count + 1.6), 3.0), constrained_layout=True)
    figures.epochs_plot(ax, picked, ylabel=ylabel, by="category", styles=styles)
    ax.tick_params(axis="x", labelsize=6, labelrotation=30 if count > 4 else 0)
    fixed = [column for column in _CONFIG if question[column].nunique() == 1]
    title = config_label(question[_CONFIG].iloc[0].to_dict(), fixed, hidden=_varying(question, _CONFIG))
    epochs = question["epochs"].iloc[0] if "epochs" in fixed else None
    ax.set_title(title + (f", {epochs} epochs" if epochs is not None else ""), fontsize=7)
    return figure


def _held_out_sections(per_epoch, asked, out, writer, styles):
    """Epochs to :data:`HELD_OUT_TARGET` held-out accuracy, for the classification runs that have a held-out set
    (None when no run measured one: regression, ``n_test=0``, or results written before held-out sets)."""
    if "test_accuracy" not in per_epoch.columns:
        return None
    measured = per_epoch.groupby("key")["test_accuracy"].transform(lambda column: column.notna().any())
    if not measured.any():
        return None
    rows = per_epoch[measured]
    table = fit.epochs_to_target(rows, HELD_OUT_TARGET, measure="test_accuracy")
    keys = set(rows["key"])
    mine = [question for question in asked if question["key"].isin(keys).any()]
    sections = []
    for number, question in enumerate(mine, start=1):
        question = question[question["key"].isin(keys)]
        name = f"fig11_epochs_to_held_out_accuracy{_suffix(number, len(mine))}"
        figure = _epochs_figure(table, question, f"epochs to {HELD_OUT_TARGET:.0%} held-out accuracy", styles)
        figure.suptitle(f"Epochs until the held-out accuracy reaches {HELD_OUT_TARGET:.0%}")
        sections.append((name, writer.save(figure, name),
                         _epochs_reading(table, question, f"{HELD_OUT_TARGET:.0%} held-out accuracy")))
    table.to_csv(out / "epochs_to_held_out_accuracy.csv", index=False, float_format="%.6g")
    (out / "epochs_to_held_out_accuracy.md").write_text(markdown(table))
    return sections, ["epochs_to_held_out_accuracy.csv", "epochs_to_held_out_accuracy.md"]


# ------------------------------------------------------------------ readings


def _loss_reading(per_epoch) -> str:
    last = per_epoch[per_epoch["epoch"] == per_epoch["epoch"].max()]
    parts = []
    for activation, frame in last.groupby("activation", sort=False):
        medians = frame.groupby("init", sort=False)["loss"].median()
        finite = medians[np.isfinite(medians)]
        if finite.empty:
            parts.append(f"{activation}: every run diverged")
            continue
        parts.append(f"{activation}: lowest {finite.idxmin()} ({finite.min():.3g}), highest {finite.idxmax()} "
                     f"({finite.max():.3g})" + (f", diverged: {', '.join(medians.index[~np.isfinite(medians)])}"
                                                if (~np.isfinite(medians)).any() else ""))
    return "Final training loss, median over seeds — " + "; ".join(parts) + "."


def _epochs_reading(table, question, what: str) -> str:
    """Per category, every initializer's mean epochs to the target ± the interval's half-width, or "never"."""
    picked = _categories(table, question)
    if not (picked["reached"] > 0).any():
        return f"No run reached {what}."
    parts = []
    for category, frame in picked.groupby("category", sort=False):
        entries = []
        for row in frame.sort_values("epochs", na_position="last").itertuples():
            if row.reached == 0:
                entries.append(f"{row.init} never")
                continue
            half = (row.epochs_high - row.epochs_low) / 2
            spread = f" ± {half:.1f}" if np.isfinite(half) else ""
            count = f" ({row.reached}/{row.seeds} runs)" if row.reached < row.seeds else ""
            entries.append(f"{row.init} {row.epochs:.1f}{spread}{count}")
        parts.append(f"{category}: " + ", ".join(entries))
    return f"Mean epochs to {what} (95 % interval over the runs that reached it) — " + "; ".join(parts) + "."


def _divergence_section(per_epoch, writer, name):
    panel_axes = [axis for axis in _varying(per_epoch, _CONFIG) if axis not in ("lr", "epochs")]
    runs = pd.DataFrame.from_records(  # one record per cell: each is one training run
        {"init": run["init"].iloc[0], "lr": run["lr"].iloc[0], "diverged": run_diverged(run),
         "panel": config_label(run[_CONFIG].iloc[0].to_dict(), panel_axes) if panel_axes else ""}
        for _, run in per_epoch.groupby("key", sort=False))
    panels = list(dict.fromkeys(runs["panel"]))
    columns = min(2, len(panels))
    lines = math.ceil(len(panels) / columns)
    # Room per panel for the initializer labels and the colour bar, plus a column per rate.
    figure, axes = plt.subplots(lines, columns, figsize=((3.2 + 0.8 * runs["lr"].nunique()) * columns,
                                                         (1.4 + 0.35 * runs["init"].nunique()) * lines),
                                squeeze=False, constrained_layout=True)
    readings = []
    for ax, panel in zip(axes.flat, panels):
        mine = runs[runs["panel"] == panel]
        table = mine.pivot_table(index="init", columns="lr", values="diverged", aggfunc="mean", sort=False)
        figures.divergence_map(ax, table.astype(float))
        ax.set_title(panel or "all runs", fontsize=7)
        readings.append(f"{panel or 'all runs'}: {int(mine.diverged.sum())} of {len(mine)} runs diverged"
                        + _worst(mine))
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    return name, writer.save(figure, name), "Diverged runs (loss became NaN or inf) — " + "; ".join(readings) + "."


def _worst(runs) -> str:
    diverged = runs[runs.diverged.astype(bool)]
    if diverged.empty:
        return ""
    where = diverged.groupby(["init", "lr"], sort=False).size()
    return " (" + ", ".join(f"{init} at lr {lr:g}" for init, lr in where.index) + ")"


# ------------------------------------------------------------------ 13: symmetry


def _final_layers(rows, question) -> pd.DataFrame:
    """The question's hidden-layer rows at each run's last epoch."""
    mine = rows[rows["key"].isin(set(question["key"])) & (rows["kind"] == "hidden")]
    return mine[mine["epoch"] == mine.groupby("key")["epoch"].transform("max")]


def _symmetric_inits(rows, question) -> list[str]:
    """Initializers of the question whose every hidden layer starts with one distinct unit."""
    mine = rows[rows["key"].isin(set(question["key"])) & (rows["kind"] == "hidden") & (rows["epoch"] == 0)]
    if "distinct_units" not in mine.columns or mine.empty:
        return []
    start = mine.groupby("init", sort=False)["distinct_units"].max()
    return list(start.index[start == 1])


def _symmetry_section(rows, question, writer, name, styles):
    final = _final_layers(rows, question)
    nets = _varying(question, _CONFIG + ["activation"])
    final = final.assign(panel=[config_label(r, nets) if nets else r["activation"]
                                for r in final[[*_CONFIG, "activation"]].to_dict("records")])
    panels = list(dict.fromkeys(final["panel"]))
    figure, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels) + 0.8, 2.8), squeeze=False,
                                constrained_layout=True, sharey=True)
    for ax, panel in zip(axes.flat, panels):
        figures.distinct_units_plot(ax, final[final["panel"] == panel], styles=styles)
        ax.set_title(panel, fontsize=7)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5), frameon=False, fontsize=6)
    figure.suptitle("Distinct units per hidden layer after training (median over seeds)")
    return name, writer.save(figure, name), _symmetry_reading(rows, question, final)


def _symmetry_reading(rows, question, final) -> str:
    last = question[question["epoch"] == question.groupby("key")["epoch"].transform("max")]
    classes = rows.loc[rows["key"].isin(set(question["key"])) & (rows["kind"] == "readout"), "fan_out"].max()
    parts = []
    symmetric = _symmetric_inits(rows, question)
    for init in symmetric:
        units = final.loc[final["init"] == init, "distinct_units"]
        accuracy = last.loc[last["init"] == init, "test_accuracy"]
        parts.append(f"{init}: at most {units.max():.0f} distinct unit{'s' if units.max() != 1 else ''} in any "
                     f"hidden layer of {final.loc[final['init'] == init, 'key'].nunique()} runs, held-out accuracy "
                     f"{accuracy.median():.3f} (median; chance {1 / classes:.3f})")
    broken = final[~final["init"].isin(symmetric)]
    if not broken.empty:
        parts.append(f"the other initializers keep {broken['distinct_units'].min():.0f}–"
                     f"{broken['distinct_units'].max():.0f} distinct units")
    return "Symmetry after training — " + "; ".join(parts) + "."
