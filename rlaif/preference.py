"""From raw judge verdicts to a debiased preference: both orders, inversion, clamping, principles, ties.

Pure arithmetic, no model: tested on hand-computed numbers.
  P(a | a shown first)  = p_first(a, b)
  P(a | a shown second) = 1 - p_first(b, a)
  p_a = mean of the two (order debiasing, Lee et al. 2023 sec. 3.1 and Zheng et al. 2023 on position bias);
a principle with `invert: true` asks for the worse response, so the judge's pick is flipped first. Under
`sampling: all`, p_a is the weight-normalised mean over principles (rlaif.numbers.weighted_mean, which cannot
overflow). A jury (`backend: jury`) combines its members' p_a per pair (`jury_p_a`).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

AGGREGATES = ("mean", "majority", "fitted")  # how a jury combines its members' p_a
# A member's p_a is clipped to [EPS, 1 - EPS] before its log-odds, here and in the fit of its weights
# (rlaif/feedback/calibration/maps.py imports it): a member that says 0 or 1 has a finite say.
JURY_EPS = 1e-6


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


def jury_p_a(
    ps: Sequence[Optional[float]], aggregate: str, weights: Sequence[float] = (), intercept: float = 0.0
) -> Optional[float]:
    """A jury's p_a from its members' (`ps`, in member order; None for a member that failed on the pair), combined
    over the members that answered:
      mean      the mean of their p_a;
      majority  the share of them whose p_a is above 0.5, a p_a of exactly 0.5 counting half (a member that cannot
                tell splits its vote);
      fitted    σ(b + Σ_i w_i · logit(p_i)), the weights as fitted (`rlaif calibrate fit --method jury`). A failed
                member's term is left out, the others keep their weights: it counts as a member that said 0.5
                (log-odds 0), which is what a member without an opinion adds to the fitted model.
    None when no member answered."""
    answered = [(k, p) for k, p in enumerate(ps) if p is not None]
    if not answered:
        return None
    if aggregate == "mean":
        return math.fsum(p for _, p in answered) / len(answered)
    if aggregate == "majority":
        return sum(1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0 for _, p in answered) / len(answered)
    if aggregate == "fitted":
        z = intercept + math.fsum(weights[k] * _logit(p) for k, p in answered)
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    raise ValueError(f"aggregate must be one of {', '.join(AGGREGATES)}, got {aggregate!r}")


def _logit(p: float) -> float:
    p = min(max(p, JURY_EPS), 1.0 - JURY_EPS)
    return math.log(p) - math.log1p(-p)
