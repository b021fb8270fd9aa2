"""The README's sweep examples run one after another as printed (scaled down), without colliding."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

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
    # tests/user_activations.py registers another "mish"; the README's is a new user's first.
    monkeypatch.setitem(USER_ACTIVATIONS, "mish", None)  # restored (or removed) after the test
    del USER_ACTIVATIONS["mish"]
    namespace = {"__name__": "readme_example"}
    exec(compile("import fastinit\n" + snippet, "README.md", "exec"), namespace)  # noqa: S102
    assert USER_ACTIVATIONS["mish"].module == "readme_example"
