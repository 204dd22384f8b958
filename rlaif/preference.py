"""From raw judge verdicts to a debiased preference: both orders, inversion, clamping, principles, ties.

Pure arithmetic, no model: tested on hand-computed numbers.
  P(a | a shown first)  = p_first(a, b)
  P(a | a shown second) = 1 - p_first(b, a)
  p_a = mean of the two (order debiasing, Lee et al. 2023 sec. 3.1 and Zheng et al. 2023 on position bias);
a principle with `invert: true` asks for the worse response, so the judge's pick is flipped first. Under
`sampling: all`, p_a is the weight-normalised mean over principles (rlaif.numbers.weighted_mean, which cannot
overflow).
"""

from __future__ import annotations

from typing import Optional, Sequence


def order_probabilities(
    p_first_ab: float, p_first_ba: float, invert: bool = False, clamp: Optional[Sequence[float]] = None
) -> tuple[float, float]:
    """[P(a preferred | a shown first), P(a preferred | a shown second)]."""
    shown_first, shown_second = p_first_ab, 1.0 - p_first_ba
    if invert:
        shown_first, shown_second = 1.0 - shown_first, 1.0 - shown_second
    if clamp is not None:
        lo, hi = clamp
        shown_first = min(max(shown_first, lo), hi)
        shown_second = min(max(shown_second, lo), hi)
    return shown_first, shown_second


def position_consistent(orders: Sequence[float]) -> bool:
    """True when both orders pick the same response (a value of exactly 0.5 picks neither)."""
    return (orders[0] - 0.5) * (orders[1] - 0.5) > 0


def label_for(p_a: float, tie_margin: float) -> str:
    """'tie' means the judge cannot tell: |p_a - 0.5| within the margin."""
    if abs(p_a - 0.5) <= tie_margin + 1e-12:  # 0.55 - 0.5 is 0.05000000000000004 in floats
        return "tie"
    return "a" if p_a > 0.5 else "b"
