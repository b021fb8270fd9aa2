"""A real study with an overflowing cell, run by the CLI and reported: no table shows an unmeasured gain,
and the terminal summary and the report's readings give the same verdict."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pandas as pd
import pytest

from analysis.verdict import criticality
from fastinit.sweep import load
from fastinit.sweep.__main__ import main

ACTIVATIONS = ["relu", "tanh", "gelu"]
DEPTH, WIDTH = 40, 256
# normal:std=1.0 at width 256 is sigma_w^2 = 256: gelu (relu-like at large q) multiplies the variance by
# about 128 per layer, so float32 z_l (max 3.4e38, variance ~1e76) overflows near layer 36 < DEPTH.
OVERFLOWING = "normal"  # the sweep's label: std=1.0 is normal's default
INITS = ["he_normal", "xavier_normal", "zeros", "constant:value=0.05", "normal:std=1.0"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The study run through ``python -m fastinit.sweep`` in-process, with its printed summary and report."""
    out = tmp_path_factory.mktemp("results") / "overflow"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # module scope: capsys is per test
        code = main(["--init", *INITS, "--activation", *ACTIVATIONS, "--depth", str(DEPTH), "--width", str(WIDTH),
                     "--batch", "32", "--seeds", "2", "--executor", "serial", "--out", str(out)])
    assert code == 0
    return out, printed.getvalue()


def gains_csv(out):
    return pd.read_csv(out / "report" / "gains.csv", keep_default_na=True)


def test_no_table_shows_a_gain_that_was_not_measured(study):
    out, _ = study
    gains = gains_csv(out)
    assert "status" in gains.columns and gains.status.notna().all()
    assert not (gains.gain == 0).any(), gains[gains.gain == 0]  # the fabricated 0 [0, 0] of issue 12
    unmeasured = gains.gain.isna()
    assert (gains.loc[unmeasured, ["gain_low", "gain_high"]].isna().all(axis=None))
    assert (gains.loc[unmeasured, "status"] != "ok").all()  # every missing number says why
    overflow = gains[(gains.init == OVERFLOWING) & (gains.activation == "gelu")].set_index("direction")
    assert overflow.loc["forward", "status"].startswith("overflow at layer ")
    layer = int(overflow.loc["forward", "status"].split()[3])
    assert 2 < layer <= DEPTH
    # Forward: fitted on the layers before the overflow, and there it agrees with theory.
    assert abs(math.log10(overflow.loc["forward", "gain"] / overflow.loc["forward", "theory"])) < 0.1
    # Backward: the gradient ran through the overflowed layers: not measured, and says so.
    assert np.isnan(overflow.loc["backward", "gain"])
    assert overflow.loc["backward", "status"] == f"overflow at layer {layer} in the forward pass (2/2 seeds)"


def test_exact_zero_and_overflow_are_different_statuses(study):
    out, _ = study
    gains = gains_csv(out)
    zeros = gains[gains.init == "zeros"]
    assert zeros.gain.isna().all()
    assert zeros[zeros.direction == "forward"].status.eq("exact zero at layer 1 (2/2 seeds)").all()
    assert not zeros.status.str.contains("overflow").any()
    constant = gains[gains.init == "constant:value=0.05"]
    assert constant.status.str.contains("symmetric init").all()


def test_markdown_and_latex_tables_show_the_same_statuses_and_no_made_up_digits(study):
    out, _ = study
    gains = gains_csv(out)
    md = [line.split("|")[1:-1] for line in (out / "report" / "gains.md").read_text().splitlines()]
    header = [cell.strip() for cell in md[0]]
    body = pd.DataFrame([[cell.strip() for cell in row] for row in md[2:]], columns=header)
    assert header[-1] == "status" and list(body.status) == list(gains.status)
    assert (body.gain[gains.gain.isna().to_numpy()] == "—").all()
    assert not body.gain.isin(["0", "0.0"]).any()
    tex = (out / "report" / "gains.tex").read_text()
    assert "status" in tex
    for line in tex.splitlines():
        if line.startswith(f"{OVERFLOWING} & gelu & backward &"):
            assert "overflow at layer" in line and " -- " in line  # a dash where the gain would be
            break
    else:
        pytest.fail("the overflowing gelu backward row is missing from gains.tex")


def test_terminal_summary_and_report_readings_give_the_same_verdict(study):
    out, printed = study
    index = (out / "report" / "index.md").read_text()
    readings = {name: index.split(f"## {name}", 1)[1].split("## ", 1)[0]
                for name in (f"fig1_forward_d{DEPTH}_w{WIDTH}_b32", f"fig2_backward_d{DEPTH}_w{WIDTH}_b32")}
    for activation in ACTIVATIONS:
        lines = [line.strip() for line in printed.splitlines() if line.startswith(f"  {activation}: ")]
        assert len(lines) == 1, printed
        for name, reading in readings.items():
            assert lines[0] in reading, (activation, name)
    table = criticality(load(out)).set_index("activation")
    # relu: chi1 = sigma_w^2 / 2 (docs/theory.md section 2): He (2) is critical, Xavier (1 at equal widths) halves per
    # layer, ten decades over 40 layers.
    assert table.loc["relu", "verdict"] == "near-critical" and table.loc["relu", "best"] == "he_normal"
    assert "xavier_normal" not in table.loc["relu", "near"]
    assert "he_normal" in next(line for line in printed.splitlines() if line.startswith("  relu: "))
