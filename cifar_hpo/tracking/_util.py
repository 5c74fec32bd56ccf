"""Small value helpers shared by the tracking modules (MLflow's text limits, timestamps)."""

from __future__ import annotations

import json
import time
from typing import Any


def param_value(value: Any) -> str:
    """``value`` as an MLflow param: lists and dicts as JSON, cut to MLflow's 6,000 characters."""
    text = json.dumps(value) if isinstance(value, (list, dict, tuple)) else str(value)
    return text[:6000]


def strings(tags: dict[str, Any], *only: str) -> dict[str, str]:
    """``tags`` with values stringified; with ``only``, just those keys."""
    return {k: str(v) for k, v in tags.items() if not only or k in only}


def now_ms() -> int:
    """The current time in milliseconds since the epoch (MLflow's metric timestamps)."""
    return int(time.time() * 1000)
