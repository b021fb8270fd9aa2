"""The version is written once, as ``fastinit.__version__``; the package metadata reads it."""

from __future__ import annotations

import email.parser
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import fastinit

ROOT = Path(fastinit.__file__).resolve().parents[1]


def test_installed_metadata_version_is_the_package_s():
    try:
        installed = importlib.metadata.version("fastinit")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("fastinit is not installed (a plain checkout on sys.path)")
    assert installed == fastinit.__version__


def test_built_metadata_version_is_the_package_s(tmp_path):
    # The PEP 517 hook that `pip install .` and `pip install -e .` call, on the tree imported here.
    pytest.importorskip("setuptools", minversion="77")
    code = f"from setuptools import build_meta; print(build_meta.prepare_metadata_for_build_wheel({str(tmp_path)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    dist_info = done.stdout.strip().splitlines()[-1]
    metadata = email.parser.Parser().parsestr((tmp_path / dist_info / "METADATA").read_text(encoding="utf-8"))
    assert metadata["Version"] == fastinit.__version__
