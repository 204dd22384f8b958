"""Confidence intervals: the percentile bootstrap every report of rlaif gives its figures with (calibration,
agreement with people, win rates, a jury's weights). On the ground floor, so a win rate and a calibration report
share one method.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np


def bootstrap_intervals(
    stat: Callable[..., Sequence[float]],
    arrays: Sequence[np.ndarray],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Optional[list[list[float]]]:
    """Percentile bootstrap intervals (Efron & Tibshirani 1993) of a statistic with several values (a fit's
    weights): resample rows with replacement `n_boot` times with a seeded generator and take the middle `level` of
    each value. None with no data; resamples where any value is undefined (nan) are dropped."""
    n = len(arrays[0]) if arrays else 0
    if n == 0 or n_boot <= 0:
        return None
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = np.asarray(stat(*(a[idx] for a in arrays)), dtype=float)
        if not np.isnan(v).any():
            values.append(v)
    if not values:
        return None
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(np.array(values), [tail, 100 - tail], axis=0)
    return [[float(a), float(b)] for a, b in zip(lo, hi)]


def bootstrap_ci(
    stat: Callable[..., float], arrays: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> Optional[list[float]]:
    """Percentile bootstrap interval of one number: resample pairs with replacement `n_boot` times with a seeded
    generator and take the middle `level` of the statistic (`bootstrap_intervals`). None with no data; resamples
    where the statistic is undefined are dropped."""
    intervals = bootstrap_intervals(lambda *a: [stat(*a)], arrays, n_boot, seed, level)
    return None if intervals is None else intervals[0]
