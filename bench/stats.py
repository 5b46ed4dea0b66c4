"""Small statistics over benchmark samples: medians, nearest-rank percentiles, ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of the samples; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, None when either is missing or the baseline is zero."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def spread(values: Sequence[float]) -> dict[str, float | None]:
    """Median, min and max of per-repetition values (the noise is real: report it)."""
    return {
        "median": median(values),
        "min": min(values) if values else None,
        "max": max(values) if values else None,
    }
