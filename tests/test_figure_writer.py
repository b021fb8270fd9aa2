"""analysis._figure_writer: forked children write the same bytes as the parent, and failures surface."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from analysis._figure_writer import FigureWriter  # noqa: E402


def _figure():
    figure, ax = plt.subplots(figsize=(2, 1.5), constrained_layout=True)
    ax.plot([0, 1, 2], [1, 0, 2], label="a line")
    ax.set_xlabel(r"layer $l$")
    ax.legend()
    return figure


@pytest.mark.parametrize("processes", [2, 3])
def test_forked_files_equal_inline_files(tmp_path, processes, monkeypatch):
    monkeypatch.setitem(matplotlib.rcParams, "svg.hashsalt", "fixed")  # else SVG ids are salted at random (the report fixes it too)
    inline, forked = tmp_path / "inline", tmp_path / "forked"
    inline.mkdir()
    forked.mkdir()
    with FigureWriter(inline, ("pdf", "svg", "png"), processes=1) as writer:
        assert writer.save(_figure(), "f") == ["f.pdf", "f.svg", "f.png"]
    with FigureWriter(forked, ("pdf", "svg", "png"), processes=processes) as writer:
        for k in range(4):  # more figures than children: the writer must wait for a free slot
            assert writer.save(_figure(), f"f{k}") == [f"f{k}.pdf", f"f{k}.svg", f"f{k}.png"]
    for extension in ("pdf", "svg", "png"):
        expected = (inline / f"f.{extension}").read_bytes()
        for k in range(4):
            assert (forked / f"f{k}.{extension}").read_bytes() == expected, (k, extension)
    assert plt.get_fignums() == []


def test_a_failed_child_is_an_error_naming_the_figure(tmp_path, capfd):
    missing = tmp_path / "no such directory"
    writer = FigureWriter(missing, ("png",), processes=2)
    if not writer._forking():
        pytest.skip("fork is not available here")
    writer.save(_figure(), "broken")
    with pytest.raises(RuntimeError, match="broken"):
        writer.close()
    assert "FileNotFoundError" in capfd.readouterr().err


def test_processes_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="processes must be >= 1, got 0"):
        FigureWriter(tmp_path, ("png",), processes=0)
