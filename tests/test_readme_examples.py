"""The README's sweep examples run one after another as printed (scaled down), without colliding."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from fastinit.sweep import load, store
from fastinit.sweep.__main__ import main

README = Path(__file__).resolve().parents[1] / "README.md"
# Appended to every command: argparse keeps the last value of a flag, so these shrink the
# shapes and skip the figures while the README's names, studies and directories stay.
SCALED_DOWN = ["--depth", "3", "--width", "8", "--batch", "4", "--seeds", "1", "--executor", "serial", "--no-report",
               "-q"]


def sweeps_section() -> str:
    text = README.read_text()
    start = text.index("## Sweeps")
    return text[start:text.index("\n## ", start + 1)]


def code_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def commands(block: str) -> list[list[str]]:
    """The ``python -m fastinit.sweep`` commands of a shell block, continuation lines joined, comments dropped."""
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line, comments=True)[3:] for line in lines if line.startswith("python -m fastinit.sweep")]


def test_the_readme_sweep_examples_run_in_sequence_as_printed(tmp_path, monkeypatch):
    section = sweeps_section()
    examples = commands(code_blocks(section, "bash")[0])
    (study_toml,) = code_blocks(section, "toml")
    assert len(examples) >= 4 and any("my_study.toml" in example for example in examples)
    monkeypatch.chdir(tmp_path)
    Path("my_study.toml").write_text(study_toml)  # "A study is a TOML file": the file the commands name
    for example in examples:
        assert main([*example, *SCALED_DOWN]) == 0, f"python -m fastinit.sweep {shlex.join(example)}"
    for python in code_blocks(section, "python"):
        exec(compile(python, "README.md", "exec"), {})  # noqa: S102 -- the README's own snippet
    assert load("results/default").init.nunique() > 1
    mine = load("results/mine")
    assert store.read_manifest("results/mine")["study"]["name"] == "mine"
    # Both "mine" commands landed in one study: the CLI's initializers and the file's extra one.
    assert {"he_normal", "xavier_normal", "normal:std=0.01", "he_normal:mode=fan_out"} <= set(mine.init)


@pytest.mark.parametrize("flags", [["--name", "other"], ["--root-seed", "7"]])
def test_another_study_in_the_readme_s_directory_still_exits_2(tmp_path, monkeypatch, flags, capsys):
    monkeypatch.chdir(tmp_path)
    cli = next(example for example in commands(code_blocks(sweeps_section(), "bash")[0]) if "--out" in example)
    assert main([*cli, *SCALED_DOWN]) == 0
    assert main([*cli, *SCALED_DOWN, *flags]) == 2
    assert "choose another --out" in capsys.readouterr().err


def test_the_readme_register_example_runs_as_printed(monkeypatch):
    from fastinit.activations import USER_ACTIVATIONS

    text = README.read_text()
    start = text.index("## Your own activations and initializers")
    (snippet,) = code_blocks(text[start:text.index("\n## ", start + 1)], "python")
    # fastinit.example_activations may have registered "mish" (the jit-policy test imports every module);
    # the README's is a new user's first.
    monkeypatch.setitem(USER_ACTIVATIONS, "mish", None)  # restored (or removed) after the test
    del USER_ACTIVATIONS["mish"]
    namespace = {"__name__": "readme_example"}
    exec(compile("import fastinit\n" + snippet, "README.md", "exec"), namespace)  # noqa: S102
    assert USER_ACTIVATIONS["mish"].module == "readme_example"


def test_the_readme_pytorch_example_runs_as_printed_and_measures_what_it_says(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from analysis.report import main as report

    text = README.read_text()
    start = text.index("## Your own PyTorch model")
    section = text[start:text.index("\n## ", start + 1)]
    (python,) = code_blocks(section, "python")
    (bash,) = code_blocks(section, "bash")
    monkeypatch.chdir(tmp_path)
    exec(compile(python, "README.md", "exec"), {})  # noqa: S102 -- the README's own example
    printed = capsys.readouterr().out
    results = shlex.split(bash, comments=True)[3]
    assert report([results, "--format", "png"]) == 0
    rows = load(results)
    # Theory: Var(W) fan_in times E[relu(z)^2] = q/2 per layer; finite width (-2.5/width per layer,
    # about 1 % at width 256) and sampling keep the measured factor within 3 % of it.
    for init, theory_factor in (("torch_default", 1 / 6), ("he_normal", 1.0), ("flax_default", 0.5)):
        traced = rows[rows.init == f"{init} [traced]"]
        factor = 10 ** np.polyfit(traced.layer, traced.log10_fwd_var, 1)[0]
        assert abs(factor / theory_factor - 1) < 0.03, init
        assert f"{init:14s}" in printed
    # The biases of the net as built: q* = (1/768) / (1 - 1/6) = 1/640, within sampling of a 50-layer net.
    built = float(printed.split("Var(z_50) = ")[1].split()[0])
    assert 0.5 / 640 < built < 2 / 640
    assert (Path(results) / "report" / "fig10_trace_vs_engine.png").is_file()
