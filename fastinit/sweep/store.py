"""Results on disk: one Parquet file per finished cell, written atomically, and a manifest.

Layout of a results directory::

    manifest.json        format, study, root seed, versions, machine, threading
    cells/<key>.parquet  one per finished cell (the rows of fastinit.propagate + parameters)
    rows.parquet         compacted cells (written at the end of a sweep)
    failed/<key>.json    a cell that raised, with its traceback (removed once it succeeds)

Every file is written under a dot-prefixed temporary name and ``os.replace``d into
place, so a sweep killed at any moment leaves only whole files; readers ignore
dot-files and a rerun deletes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fastinit.sweep.spec import AXES

__all__ = ["FORMAT", "ResultsError", "check_directory", "write_manifest", "read_manifest", "write_cell",
           "write_failure", "clear_failure", "clear_stale_failures", "finished_keys", "failures", "remove_temporaries",
           "compact", "load"]

FORMAT = "fastinit-sweep/1"
MANIFEST = "manifest.json"
CELLS = "cells"
FAILED = "failed"
COMPACTED = "rows.parquet"
# Propagation columns added after format 1 was first written, with the value that rows
# written before them get on load: not known.
_LATER_COLUMNS = {"fwd_nonfinite": float("nan"), "grad_nonfinite": float("nan"), "first_overflow_pass": None,
                  "first_underflow_pass": None}
# Axes added later, with the value every cell written before them had.
_LATER_AXES = {"norm": "none", "norm_at": "preact"}
# Training columns added later: the optimizer's, with the values earlier cells ran with
# (SGD, no weight decay; torch's betas and eps, never read by SGD), and the held-out
# measures, not known.
_LATER_TRAINING_COLUMNS = {"optimizer": "sgd", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
                           "test_loss": float("nan"), "test_accuracy": float("nan"), "test_r2": float("nan")}
# Sort order of loaded rows: the study's axes, replicate, then layer.
_ORDER = ["task", *(axis for axis in AXES if axis != "task"), "seed", "key", "epoch", "layer"]


class ResultsError(ValueError):
    """A directory that is not (or not this study's) fastinit sweep results."""


# ------------------------------------------------------------------ atomic writes


def _atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a dot-prefixed temporary beside ``path``, then rename it into place.

    The temporary's name is unique (``mkstemp``), so two writers of one cell (a Dask
    retry racing a slow original) never share a file; the last rename wins whole.
    """
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()


def _write_json(path: Path, data: dict) -> None:
    _atomic_write(path, lambda handle: handle.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode()))


# ------------------------------------------------------------------ manifest


def read_manifest(directory) -> dict:
    """The manifest of a results directory.

    Raises
    ------
    ResultsError
        If the directory does not exist, holds no manifest, or one of another format.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultsError(f"results directory {str(directory)!r} does not exist (run python -m fastinit.sweep first)")
    path = directory / MANIFEST
    if not path.is_file():
        raise ResultsError(f"results directory {str(directory)!r} holds no {MANIFEST}: it is not a fastinit sweep "
                           "(point to the --out directory of a sweep)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ResultsError(f"{str(path)!r} is not valid JSON ({error}); it is not a fastinit sweep manifest") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ResultsError(f"results directory {str(directory)!r} holds format {found!r}, this fastinit reads "
                           f"{FORMAT!r} (use another --out directory)")
    return manifest


def check_directory(directory, study_json: dict) -> None:
    """Check that ``directory`` is new, empty, or holds this study's results.

    Parameters
    ----------
    directory : path-like
    study_json : dict
        ``Study.to_json()`` of the study about to run.

    Raises
    ------
    ResultsError
        If the directory holds other files, another format, or another study (a
        different name or root seed): nothing in it is touched.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ResultsError(f"out {str(directory)!r} is a file, not a directory (choose another --out)")
    if not directory.exists():
        parent = next(p for p in directory.absolute().parents if p.exists())
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise ResultsError(f"out {str(directory)!r} cannot be created: {str(parent)!r} is not a writable "
                               "directory (choose another --out)")
        return
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ResultsError(f"out {str(directory)!r} is not writable (choose another --out)")
    if not any(directory.iterdir()):
        return
    manifest = read_manifest(directory)
    held = manifest.get("study", {})
    for key in ("name", "root_seed"):
        if held.get(key) != study_json[key]:
            raise ResultsError(f"out {str(directory)!r} holds study {held.get('name')!r} with root seed "
                               f"{held.get('root_seed')}, not {study_json['name']!r} with root seed "
                               f"{study_json['root_seed']} (choose another --out or the same study)")


def write_manifest(directory, study_json: dict, threading: dict) -> None:
    """Create or update the manifest (the study, versions, machine and threading of this run).

    Parameters
    ----------
    directory : path-like
    study_json : dict
        The study description; an extended study replaces the stored one.
    threading : dict
        Executor, workers and threads per worker.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    previous = {}
    with contextlib.suppress(ResultsError):
        previous = read_manifest(directory)
    import numba
    import numpy

    from fastinit import __version__

    # The manifest first, then the folders: a kill in between leaves a directory that
    # a rerun recognises as this study's.
    _write_json(directory / MANIFEST, {
        "format": FORMAT,
        "study": _merged_study(previous.get("study"), study_json),
        "created": previous.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": {"fastinit": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
                     "numba": numba.__version__, "pandas": pd.__version__, "pyarrow": pa.__version__},
        "machine": {"platform": platform.platform(), "processor": platform.machine(), "cpus": os.cpu_count(),
                    "python": sys.executable},
        "threading": threading,
    })
    for sub in (CELLS, FAILED):
        (directory / sub).mkdir(exist_ok=True)


def _merged_study(held: dict | None, study_json: dict) -> dict:
    """The union of the stored and the new study's axes: the manifest describes every row on disk."""
    if not held or (held.get("name"), held.get("root_seed")) != (study_json["name"], study_json["root_seed"]):
        return study_json
    axes = {key: list(dict.fromkeys([*held.get("axes", {}).get(key, []), *values]))
            for key, values in study_json["axes"].items()}
    return {**study_json, "axes": axes, "seeds": max(held.get("seeds", 0), study_json["seeds"])}


# ------------------------------------------------------------------ cells


def write_cell(directory, key: str, frame: pd.DataFrame) -> Path:
    """Write one finished cell's rows atomically; returns the file's path."""
    path = Path(directory) / CELLS / f"{key}.parquet"
    _atomic_write(path, lambda handle: frame.to_parquet(handle, index=False))
    return path


def write_failure(directory, key: str, record: dict) -> None:
    """Record a failed cell (its parameters, error and traceback)."""
    _write_json(Path(directory) / FAILED / f"{key}.json", record)


def clear_failure(directory, key: str) -> None:
    """Forget an earlier failure of a cell that has now finished."""
    with contextlib.suppress(FileNotFoundError):
        (Path(directory) / FAILED / f"{key}.json").unlink()


def _cell_files(directory: Path) -> list[Path]:
    return sorted(p for p in (directory / CELLS).glob("*.parquet") if not p.name.startswith("."))


def finished_keys(directory) -> set[str]:
    """Keys of every cell with rows on disk (in cell files or the compacted file)."""
    directory = Path(directory)
    keys = {path.stem for path in _cell_files(directory)} if (directory / CELLS).is_dir() else set()
    if (directory / COMPACTED).is_file():
        keys.update(pq.read_table(directory / COMPACTED, columns=["key"]).column("key").unique().to_pylist())
    return keys


def failures(directory) -> list[dict]:
    """The recorded failures of a results directory (empty when every cell finished)."""
    folder = Path(directory) / FAILED
    if not folder.is_dir():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json")) if not p.name.startswith(".")]


def clear_stale_failures(directory) -> int:
    """Drop failure records of cells that have rows (a kill between writing and clearing); returns how many."""
    finished = finished_keys(directory)
    stale = [p for p in (Path(directory) / FAILED).glob("*.json") if p.stem in finished]
    for path in stale:
        path.unlink()
    return len(stale)


def remove_temporaries(directory) -> int:
    """Delete the dot-prefixed leftovers of a killed run; returns how many."""
    directory = Path(directory)
    leftovers = [p for folder in (directory, directory / CELLS, directory / FAILED) if folder.is_dir()
                 for p in folder.glob(".*.tmp")]
    for path in leftovers:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return len(leftovers)


def _read_tables(directory: Path) -> list[pa.Table]:
    """Cell files first: a cell recomputed after compaction (``--no-resume``) wins over its old rows."""
    paths = _cell_files(directory) + ([directory / COMPACTED] if (directory / COMPACTED).is_file() else [])
    return [pq.read_table(path) for path in paths]


def compact(directory) -> int:
    """Merge every cell file into ``rows.parquet`` and remove the cell files.

    Crash-safe: the merged file replaces the old one atomically before any cell file
    is removed, and readers drop duplicate rows, so a kill at any point loses nothing.

    Returns
    -------
    int
        The number of cells in the compacted file.
    """
    directory = Path(directory)
    merged_files = _cell_files(directory)
    if not merged_files:
        return len(finished_keys(directory))
    frame = _deduplicated(_read_tables(directory))
    _atomic_write(directory / COMPACTED, lambda handle: frame.to_parquet(handle, index=False))
    for path in merged_files:
        path.unlink()
    return frame["key"].nunique()


def _deduplicated(tables: list[pa.Table]) -> pd.DataFrame:
    """One frame of all rows; a cell present twice (a kill during compaction) keeps its first copy."""
    # "permissive": pandas 2 writes strings as string, pandas 3 as large_string.
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    row_id = ["key", "epoch", "layer"] if "epoch" in frame.columns else ["key", "layer"]
    return frame.drop_duplicates(subset=row_id, keep="first").reset_index(drop=True)


class _SharedManifest(dict):
    """The manifest in a frame's ``attrs``, shared rather than copied by every derived frame.

    pandas deep-copies ``attrs`` into each frame an operation derives (``__finalize__``); a
    report makes thousands of them, and copying the nested manifest each time was ~5 % of its
    time.  Read it as the dict it is; it is not meant to be changed.
    """

    def __deepcopy__(self, memo):
        return self


def load(directory) -> pd.DataFrame:
    """All per-layer rows of a sweep: one column per cell parameter beside the statistics.

    Parameters
    ----------
    directory : str or path-like
        The ``--out`` directory of ``python -m fastinit.sweep``.

    Returns
    -------
    pandas.DataFrame
        One row per (cell, layer).  Parameter columns: ``key`` (the cell's stable key),
        ``init`` and ``activation`` (labels such as ``normal:std=0.01``), ``init_name``,
        ``init_params``, ``activation_name``, ``activation_params`` (JSON),
        ``depth, width, batch, bias_std, dtype, numerics, residual, batchnorm`` and
        ``seed`` (the replicate index; the root seed is in ``attrs["manifest"]``), then
        the statistics columns of :func:`fastinit.propagate` and the per-cell
        ``forward_rescaled``, ``first_overflow_layer``, ``first_underflow_layer`` (-1: none),
        ``first_overflow_pass``, ``first_underflow_pass`` ("forward", "backward" or None).
        Rows written by a fastinit that had no ``fwd_nonfinite``, ``grad_nonfinite`` or
        ``*_pass`` columns get them as NaN / None (not known); training rows written before
        the optimizer axes get ``optimizer`` "sgd", ``weight_decay`` 0 and torch's betas and
        eps (what they ran with), and ``test_*`` as NaN (not measured).
        Sorted by the parameter values (labels alphabetically), replicate and layer.

    Raises
    ------
    ResultsError
        If ``directory`` is missing, not a sweep, of another format, or holds no finished cell.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    tables = _read_tables(directory)
    if not tables:
        raise ResultsError(f"results directory {str(directory)!r} holds no finished cell yet "
                           "(run or resume the sweep first)")
    frame = _deduplicated(tables)
    if "nonfinite" in frame.columns:  # propagation rows: fill the columns older files lack
        for column, missing in _LATER_COLUMNS.items():
            if column not in frame.columns:
                frame[column] = missing
    for column, value in _LATER_AXES.items():  # every kind of row, older files among newer ones too
        frame[column] = frame[column].fillna(value) if column in frame.columns else value
    if "epoch" in frame.columns:  # training rows: the same, for cells of older files among newer ones too
        for column, missing in _LATER_TRAINING_COLUMNS.items():
            frame[column] = frame[column].fillna(missing) if column in frame.columns else missing
    frame = frame.sort_values([c for c in _ORDER if c in frame.columns], kind="stable").reset_index(drop=True)
    frame.attrs["manifest"] = _SharedManifest(manifest)
    return frame
