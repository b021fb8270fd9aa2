"""Row selection and Markdown tables shared by the report's sections."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["NOT_MEASURED", "matching", "markdown"]

# What a table shows for a statistic that was not measured (NaN): never a number.
NOT_MEASURED = {"md": "—", "tex": "--"}


def matching(frame: pd.DataFrame, values: dict) -> np.ndarray:
    """Rows of ``frame`` whose columns equal every ``values[column]``.

    Parameters
    ----------
    frame : pandas.DataFrame
    values : dict
        Column -> value.

    Returns
    -------
    numpy.ndarray of bool
    """
    return np.logical_and.reduce([frame[column] == value for column, value in values.items()])


def markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (pandas' ``to_markdown`` needs the optional tabulate).

    Parameters
    ----------
    table : pandas.DataFrame

    Returns
    -------
    str
        The table, NaN shown as :data:`NOT_MEASURED` ``["md"]``.
    """
    cells = [[(NOT_MEASURED["md"] if math.isnan(v) else f"{v:.4g}") if isinstance(v, float) else str(v) for v in row]
             for row in table.itertuples(index=False)]
    header = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(table[c]) else "---" for c in table.columns) + "|"
    return "\n".join([header, rule, *("| " + " | ".join(row) + " |" for row in cells)]) + "\n"
