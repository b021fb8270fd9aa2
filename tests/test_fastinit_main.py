"""``python -m fastinit``: the table names the second moment E[W^2] for what it prints, and it is one."""

from __future__ import annotations

import math

import pytest

from conftest import Z_TOL
from fastinit.__main__ import main, variance_table

FAN_IN, FAN_OUT = 64, 32


def test_the_column_is_the_second_moment_of_the_sampled_weights():
    rows = {row["init"]: row for row in variance_table(FAN_IN, FAN_OUT, seed=3)}
    # he_normal: W ~ N(0, 2/fan_in), so E[W^2] = 2/fan_in with standard error
    # sqrt(Var(W^2) / n) = sqrt(2) * sigma^2 / sqrt(n) (the fourth moment of a normal is 3 sigma^4).
    sigma2, n = 2.0 / FAN_IN, FAN_IN * FAN_OUT
    assert rows["he_normal"]["second_moment"] == pytest.approx(sigma2, abs=Z_TOL * math.sqrt(2.0 / n) * sigma2)
    # constant: variance 0 but second moment value^2 (the table's example value 0.01): not a "measured variance".
    assert rows["constant"]["rule"] == 0.0
    assert rows["constant"]["second_moment"] == pytest.approx(0.01**2, rel=1e-12)
    assert rows["constant"]["ci95"] <= 1e-12 * rows["constant"]["second_moment"]  # identical squares, up to rounding


def test_the_printed_table_and_help_say_second_moment(capsys):
    assert main(["--fan-in", str(FAN_IN), "--fan-out", str(FAN_OUT)]) == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("init"))
    assert "E[W^2]" in header and "measured" not in text
    assert "E[W^2]: second moment of the sampled weights" in text
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and "second moment E[W^2]" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("flags", [["--fan-in", "0"], ["--seed", "-1"], ["--fan-out", "x"]])
def test_bad_input_exits_2_naming_the_flag(flags, capsys):
    with pytest.raises(SystemExit) as done:
        main(flags)
    err = capsys.readouterr().err
    assert done.value.code == 2 and flags[0] in err and "Traceback" not in err
