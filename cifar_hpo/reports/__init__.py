"""What every report shares: the marked blocks of the README and docs pages, and the formatters
of their cells (percentages, minutes, counts).

The reproduced table (:mod:`cifar_hpo.reproduce.table`), the CLI's tables and the benchmark
scripts (``bench/*.py``) all write through these, so one figure reads the same everywhere. This
package imports only the standard library and :mod:`cifar_hpo.errors`: any layer may use it.
"""

from __future__ import annotations

from cifar_hpo.reports.blocks import MARKER, MarkerError, markers, replace_block, rewrite_readme
from cifar_hpo.reports.format import count, md_cell, minutes, number, pct, points, sig

__all__ = [
    "MARKER",
    "MarkerError",
    "count",
    "markers",
    "md_cell",
    "minutes",
    "number",
    "pct",
    "points",
    "replace_block",
    "rewrite_readme",
    "sig",
]
