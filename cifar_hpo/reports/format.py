"""Cell formatters shared by the CLI's tables, the README table and the benchmark reports.

Every formatter turns a missing value (``None``) into ``-``, so a table never shows ``None``.
"""

from __future__ import annotations

import math

DASH = "-"


def pct(x: float | None, digits: int = 2) -> str:
    """A fraction as a percentage: ``0.81234`` -> ``81.23 %``; None -> ``-``."""
    return DASH if x is None else f"{100 * x:.{digits}f} %"


def points(delta: float | None, digits: int = 2) -> str:
    """A difference of two fractions in percentage points: ``0.0123`` -> ``+1.23 points``."""
    return DASH if delta is None else f"{100 * delta:+.{digits}f} points"


def minutes(seconds: float | None, digits: int = 1) -> str:
    """Seconds as minutes, without the unit (a column header says it): ``750`` -> ``12.5``."""
    return DASH if seconds is None else f"{seconds / 60:.{digits}f}"


def count(x: float | None) -> str:
    """A count rounded to a whole number, thousands separated: ``1234.6`` -> ``1,235``."""
    return DASH if x is None else f"{int(round(x)):,}"


def number(x: float | None, fmt: str = "{:,}") -> str:
    """``fmt.format(x)``, or ``-`` for None and NaN (a value a study did not reach)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return DASH
    return fmt.format(x)


def sig(value: object) -> str:
    """A parameter or metric for a table cell: floats to 4 significant digits, ints thousands
    separated, anything else as ``str`` (``True``, ``"adamw"``)."""
    if value is None:
        return DASH
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def md_cell(text: str) -> str:
    """``text`` safe inside a Markdown table cell (a ``|`` would start a new cell)."""
    return text.replace("|", "\\|")
