"""The report: every figure renders from a small study without warnings, byte-stable, with readings."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis import figures
from analysis.report import build_report, main, theory_curves
from fastinit.sweep import build_study, load, run_study, store

FIGURES = ["fig1_forward", "fig2_backward", "fig3_gain_vs_theory", "fig4_finite_width_spread",
           "fig5_tanh_phase_diagram", "fig6_gradient_heatmap", "fig12_jacobian_spectra"]  # 12: the study has relu


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A small study: the canonical pairs, a failure (zeros) and an overflow (too large + gelu)."""
    out = tmp_path_factory.mktemp("results") / "small"
    study = build_study({"name": "small", "root_seed": 3},
                        {"init": ["he_normal", "xavier_normal", "lecun_normal", "zeros", "normal:std=1.0"],
                         "activation": ["linear", "relu", "tanh", "gelu"], "depth": [30], "width": [64],
                         "batch": [32], "seeds": 3})
    run_study(study, out, executor="serial", progress=False)
    return out


@pytest.fixture(scope="module")
def report(study_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    build_report(study_dir, out)
    return out


def test_every_figure_in_every_format(report):
    for name in FIGURES:
        for extension in ("pdf", "svg", "png"):
            assert list(report.glob(f"{name}*.{extension}")), f"{name}.{extension} missing"
    assert {"gains.csv", "gains.md", "gains.tex", "index.md", "index.html"} <= {p.name for p in report.iterdir()}


def test_pdf_fonts_are_embedded_truetype(report):
    pdf = next(report.glob("fig1_forward*.pdf")).read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # fonttype 42: TrueType embedded, no Type 3


def test_output_is_byte_stable(study_dir, report, tmp_path):
    """The same results give the same bytes, also from another process with another hash seed."""
    again = tmp_path / "again"
    subprocess.run([sys.executable, "-m", "analysis.report", str(study_dir), "--out", str(again)], check=True,
                   capture_output=True, env={**os.environ, "PYTHONHASHSEED": "12345"}, timeout=600)
    for path in sorted(report.iterdir()):
        assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256((again / path.name).read_bytes()).digest(), \
            path.name


def test_index_gives_a_reading_per_figure(report):
    text = (report / "index.md").read_text()
    for name in FIGURES:
        assert name in text
    assert "relu: he_normal" in text  # He keeps ReLU flattest forward
    assert "theory 1.000" in text and "half-widths" in text
    html = (report / "index.html").read_text()
    assert html.count("<img") == len(FIGURES)


def test_fit_table_agrees_with_theory_for_canonical_pairs(report):
    gains = pd.read_csv(report / "gains.csv")
    forward = gains[gains.direction == "forward"].set_index(["init", "activation"])
    # docs/theory.md section 2: lecun+linear 1, he+relu 1, xavier+relu 1/2 (width 64: finite-width
    # drift exp(-2.5/64) = 0.96 forward, within a few interval half-widths).
    assert forward.loc[("lecun_normal", "linear"), "theory"] == pytest.approx(1.0, abs=1e-9)
    assert forward.loc[("he_normal", "relu"), "theory"] == pytest.approx(1.0, abs=1e-9)
    assert forward.loc[("xavier_normal", "relu"), "theory"] == pytest.approx(0.5, abs=1e-9)
    for pair in [("lecun_normal", "linear"), ("he_normal", "relu"), ("xavier_normal", "relu")]:
        assert abs(np.log(forward.loc[pair, "gain"] / forward.loc[pair, "theory"])) < 0.08


def test_theory_curves_are_shaped_like_rows(study_dir):
    rows = load(study_dir)
    curves = theory_curves(rows)
    assert set(curves.layer) == set(range(1, 31)) and (curves.seed == 0).all()
    flat = curves[(curves.init == "he_normal") & (curves.activation == "relu")]
    # Var z_1 = fan_in * (2 / fan_in) * Var(h_0) = 2, and He keeps ReLU there.
    np.testing.assert_allclose(flat.log10_fwd_var, np.log10(2.0), atol=1e-12)


def test_axes_level_functions_return_their_axes(study_dir):
    figures.apply_style()
    rows = load(study_dir)
    figure, ax = plt.subplots()
    try:
        assert figures.variance_curves(ax, rows[rows.activation == "relu"]) is ax
        assert ax.get_xlabel() == "layer $l$" and "Var" in ax.get_ylabel()
    finally:
        plt.close(figure)


@pytest.mark.parametrize("case", ["missing", "empty", "other format", "no cells"])
def test_bad_results_directory_exits_2_with_one_line(case, tmp_path, capsys):
    target = tmp_path / "results"
    if case != "missing":
        target.mkdir()
    if case == "other format":
        (target / store.MANIFEST).write_text(json.dumps({"format": "csv-dump/2"}))
    if case == "no cells":
        store.write_manifest(target, {"name": "x", "root_seed": 0, "seeds": 1, "axes": {}}, {})
    assert main([str(target), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m analysis.report: error:") and str(target) in err[0]


def test_bad_format_exits_2(study_dir, tmp_path, capsys):
    assert main([str(study_dir), "--out", str(tmp_path / "r"), "--format", "png,jpeg"]) == 2
    assert "'jpeg'" in capsys.readouterr().err


def test_training_study_report(tmp_path):
    out = tmp_path / "training"
    study = build_study({"name": "t", "root_seed": 1},
                        {"init": ["he_normal", "xavier_normal", "normal:std=0.5"], "activation": ["relu"],
                         "depth": [6], "width": [16], "batch": [32], "task": ["spirals"], "epochs": [6],
                         "lr": [0.05], "clip_norm": [0.0, 1.0], "seeds": 2})
    run_study(study, out, executor="serial", progress=False)
    index = build_report(out, tmp_path / "report", formats=["png"])
    text = index.read_text()
    for name in ("fig7_training_loss_1", "fig7_training_loss_2", "fig8_epochs_to_target", "fig9_divergence"):
        assert (tmp_path / "report" / f"{name}.png").is_file() and name in text
    assert "Diverged runs" in text and "no clipping" in text
    table = pd.read_csv(tmp_path / "report" / "epochs_to_target.csv")
    assert set(table.init) == {"he_normal", "xavier_normal", "normal:std=0.5"} and (table.seeds == 2).all()
