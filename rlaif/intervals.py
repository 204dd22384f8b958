"""Confidence intervals: the percentile bootstrap every report of rlaif gives its figures with (calibration,
agreement with people, win rates). On the ground floor, so a win rate and a calibration report share one method.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import numpy as np


def bootstrap_ci(
    stat: Callable[..., float], arrays: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> Optional[list[float]]:
    """Percentile bootstrap interval (Efron & Tibshirani 1993): resample pairs with replacement `n_boot` times
    with a seeded generator and take the middle `level` of the statistic. None with no data; resamples where the
    statistic is undefined are dropped."""
    n = len(arrays[0]) if arrays else 0
    if n == 0 or n_boot <= 0:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = stat(*(a[idx] for a in arrays))
        if not math.isnan(v):
            values.append(v)
    if not values:
        return None
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]
