"""analysis._figure_writer: forked children write the same bytes as the parent, and failures surface.

Run in a fresh interpreter: the test process has other threads alive (Dask, torch), where the
writer rightly refuses to fork and would save inline, so the forked path would go untested.
"""

import subprocess
import sys
import textwrap

import pytest

from analysis._figure_writer import FigureWriter

_SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import matplotlib
    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "fixed"  # else SVG ids are salted at random (the report fixes it too)
    import matplotlib.pyplot as plt
    from analysis._figure_writer import FigureWriter

    def figure():
        fig, ax = plt.subplots(figsize=(2, 1.5), constrained_layout=True)
        ax.plot([0, 1, 2], [1, 0, 2], label="a line")
        ax.set_xlabel(r"layer $l$")
        ax.legend()
        return fig

    root, processes, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    formats = ("pdf", "svg", "png")
    writer = FigureWriter(root, formats, processes=processes)
    assert writer._forking() == (processes > 1), "fork expected in a fresh single-threaded interpreter"
    if mode == "broken":
        writer.directory = root / "no such directory"
        writer.save(figure(), "broken")
        try:
            writer.close()
        except RuntimeError as error:
            print("RAISED", error)
        sys.exit(0)
    if mode == "broken build":
        def build():
            raise ValueError("no figure")
        later = writer.build_and_save("unbuilt", build)
        try:
            writer.close()
        except RuntimeError as error:
            print("RAISED", error, later.value)
        sys.exit(0)
    with writer:
        later = writer.build_and_save("built", lambda: (figure(), {"reading": "a line"}))
        for k in range(4 if processes > 1 else 1):  # more figures than children: waits for a free slot
            assert writer.save(figure(), f"f{k}") == [f"f{k}.pdf", f"f{k}.svg", f"f{k}.png"]
    assert later.files == ["built.pdf", "built.svg", "built.png"]
    assert later.value == {"reading": "a line"}, later.value
    assert plt.get_fignums() == []
""")


def _run(*args):
    done = subprocess.run([sys.executable, "-c", _SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize("processes", [2, 3])
def test_forked_files_equal_inline_files(tmp_path, processes):
    inline, forked = tmp_path / "inline", tmp_path / "forked"
    inline.mkdir()
    forked.mkdir()
    _run(inline, 1, "ok")
    _run(forked, processes, "ok")
    for extension in ("pdf", "svg", "png"):
        expected = (inline / f"f0.{extension}").read_bytes()
        for k in range(4):
            assert (forked / f"f{k}.{extension}").read_bytes() == expected, (k, extension)
        # built in the child (forked) or in this process (inline): the same figure, the same bytes
        assert (forked / f"built.{extension}").read_bytes() == expected, extension
        assert (inline / f"built.{extension}").read_bytes() == expected, extension


def test_a_failed_child_is_an_error_naming_the_figure(tmp_path):
    done = _run(tmp_path, 2, "broken")
    assert "RAISED writing figure(s) failed: broken (exit code 1)" in done.stdout
    assert "FileNotFoundError" in done.stderr  # the child's traceback


def test_a_failed_build_is_an_error_naming_the_figure(tmp_path):
    done = _run(tmp_path, 2, "broken build")
    assert "RAISED writing figure(s) failed: unbuilt (exit code 1)" in done.stdout
    assert done.stdout.strip().endswith("None")  # nothing came back
    assert "ValueError: no figure" in done.stderr


def test_processes_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="processes must be >= 1, got 0"):
        FigureWriter(tmp_path, ("png",), processes=0)
