"""Timing helpers shared by every row: synchronised wall-clock time and summaries."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any


def timed(fn: Callable[[], Any], synchronize: Callable[[], None] = lambda: None) -> float:
    """Seconds that ``fn()`` takes, with the device synchronised before and after."""
    synchronize()
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Median, minimum and spread (max / min) of repeated timings."""
    values = [float(s) for s in seconds]
    return {
        "median_seconds": statistics.median(values),
        "min_seconds": min(values),
        "spread": max(values) / min(values) if min(values) > 0 else float("nan"),
    }
