"""Rule-based judge functions for the `python` backend: verifiable preferences with a known answer.

Each returns P(first preferred) as a smooth function of a measurable property, so labels are soft.
"""

from __future__ import annotations

import math


def prefer_shorter(prompt, first: str, second: str, principle: str, sharpness: float = 0.05) -> float:
    """P(first) = σ(sharpness · (len(second) − len(first))): the shorter response is preferred."""
    return 1.0 / (1.0 + math.exp(-sharpness * (len(second) - len(first))))


def prefer_keyword(prompt, first: str, second: str, principle: str, keyword: str = "please",
                   confidence: float = 0.9) -> float:
    """Prefers the response that contains `keyword` (case-insensitive); 0.5 when both or neither do."""
    a, b = keyword.lower() in first.lower(), keyword.lower() in second.lower()
    if a == b:
        return 0.5
    return confidence if a else 1.0 - confidence
