"""The report's index links and names only files that exist, for propagation and training studies."""

from __future__ import annotations

import re

import pytest

from analysis.report import build_report
from fastinit.sweep import build_study, run_study

# A file name in the text (``gains.csv``, ``fig3_gain_vs_theory.png``) or a family of them (``gains.*``).
FILE_NAME = re.compile(r"[\w-]+(?:\.[\w-]+)*\.(?:\*|png|pdf|svg|csv|md|tex|html|json|parquet)\b|[\w-]+\.\*")
LINK = re.compile(r"\]\(([^)]+)\)|(?:src|href)='([^']+)'")

STUDIES = {
    "propagation": {"init": ["he_normal", "xavier_normal"], "activation": ["relu", "tanh"], "depth": [6],
                    "width": [8], "batch": [8], "seeds": 2},
    "training": {"init": ["he_normal", "xavier_normal"], "activation": ["relu"], "depth": [3], "width": [8],
                 "batch": [16], "task": ["spirals"], "epochs": [3], "lr": [0.05], "seeds": 2},
}


@pytest.fixture(scope="module", params=list(STUDIES))
def report(request, tmp_path_factory):
    results = tmp_path_factory.mktemp(request.param) / "results"
    run_study(build_study({"name": request.param}, STUDIES[request.param]), results, executor="serial",
              progress=False)
    out = results / "report"
    build_report(results, out, formats=["png", "svg"])
    return out


@pytest.mark.parametrize("index", ["index.md", "index.html"])
def test_every_link_and_file_name_in_the_index_exists(report, index):
    text = (report / index).read_text()
    links = {a or b for a, b in LINK.findall(text)}
    names = set(FILE_NAME.findall(text))
    assert links, "the index links its figures and tables"
    for link in links:
        assert (report / link).is_file(), f"{index} links {link!r}, which does not exist"
    for name in names:
        found = list(report.glob(name)) if "*" in name else [report / name] if (report / name).is_file() else []
        assert found, f"{index} names {name!r}, which does not exist in {report}"
    # Every table written is linked (the index is the way in).
    for table in [p.name for p in report.iterdir() if p.suffix in (".csv", ".md", ".tex") and p.stem != "index"]:
        assert table in links, f"{table} is not linked from {index}"


def test_a_propagation_study_names_no_training_table_and_the_other_way_round(report):
    text = (report / "index.md").read_text()
    training = any(report.glob("epochs_to_target.*"))
    assert ("epochs_to_target" in text) == training
    assert ("gains." in text) == any(report.glob("gains.*"))
