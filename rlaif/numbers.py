"""The numbers guard: one rule per kind of number that rlaif stores or trains on, and the checks of the
stored record kinds (labels, scores, revisions, samples) built from them.

Every boundary where a number enters (a judge's output, a constitution's weights, a record read back from a
folder someone may have edited, feedback before training, a merge) asks these functions, so a number is `ok` by
one definition everywhere: a real number (an int or a float; never a bool, a string or null) that is finite and
in its range. Each `*_problem` function returns None for a good value, else one plain sentence naming the field.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

# Probabilities summed from a distribution may miss 1 by rounding; beyond this a distribution is refused.
SUM_TOLERANCE = 1e-6
# An expected score may pass its scale's end by rounding.
SCALE_TOLERANCE = 1e-9


class TrainingDiverged(ArithmeticError):
    """A training run met a non-finite loss or gradient norm: it stops (exit 5) before the step is applied, and its
    last finite checkpoint stays the one a rerun resumes from."""


def real(x: Any) -> Optional[float]:
    """`x` as a float when it is a finite real number (an int or a float, numpy's included; not a bool, a string
    or null), else None."""
    if isinstance(x, (bool, str, bytes)) or not hasattr(type(x), "__float__") or isinstance(x, complex):
        return None
    try:
        value = float(x)
    except (OverflowError, TypeError, ValueError):  # an int too large for a float; a many-valued array
        return None
    return value if math.isfinite(value) else None


def range_problem(x: Any, name: str, low: float, high: float, tolerance: float = 0.0) -> Optional[str]:
    """Why `x` is not a finite real number in [low, high] (with `tolerance` at either end), or None."""
    value = real(x)
    if value is None:
        return f"{name} is {_shown(x)}, not a finite number"
    if not (low - tolerance <= value <= high + tolerance):
        return f"{name} = {value!r} is outside [{_g(low)}, {_g(high)}]"
    return None


def probability_problem(x: Any, name: str = "p_a") -> Optional[str]:
    """Why `x` is no probability (a finite number in [0, 1]), or None."""
    return range_problem(x, name, 0.0, 1.0)


def reward_problem(x: Any, name: str = "reward") -> Optional[str]:
    """Why `x` is no d-RLAIF reward (a finite number in [-1, 1]), or None."""
    return range_problem(x, name, -1.0, 1.0, SCALE_TOLERANCE)


def score_problem(x: Any, low: float, high: float, name: str = "score") -> Optional[str]:
    """Why `x` is no score on the scale low..high, or None."""
    return range_problem(x, name, low, high, SCALE_TOLERANCE)


def positive_problem(x: Any, name: str) -> Optional[str]:
    """Why `x` is not a finite number above 0, or None."""
    value = real(x)
    if value is None or value <= 0:
        return f"{name} is {_shown(x)}, not a finite number above 0"
    return None


def distribution_problem(probs: Any, name: str = "distribution") -> Optional[str]:
    """Why `probs` (a sequence, or a mapping's values) is no probability distribution: each value a probability,
    together summing to 1; or None."""
    values = list(probs.values()) if isinstance(probs, dict) else probs
    if not isinstance(values, (list, tuple)) or not values:
        return f"{name} is {_shown(probs)}, not a list of probabilities"
    for k, p in enumerate(values):
        if real(p) is None or not 0.0 <= p <= 1.0:
            return f"{name} holds {_shown(p)} (item {k + 1}), not a probability in [0, 1]"
    total = math.fsum(values)
    if abs(total - 1.0) > SUM_TOLERANCE:
        return f"{name} sums to {total!r}, not 1"
    return None


def relative_weights(weights: Sequence[float]) -> list[float]:
    """Weights scaled by the power of two just above their largest: each in (0, 1), so their sum is below their
    count and never overflows, however large each one is (1e308 three times sums to inf). Scaling by a power of two
    is exact, so a weighted draw or mean over them equals the one over the weights as written wherever that did not
    overflow. Raises ValueError on a weight that is not a finite number above 0."""
    for k, w in enumerate(weights):
        if (problem := positive_problem(w, f"weight {k + 1}")) is not None:
            raise ValueError(problem)
    exponent = math.frexp(max(weights))[1]
    return [math.ldexp(w, -exponent) for w in weights]


def weighted_mean(values: Sequence[float], weights: Sequence[float]) -> float:
    """Σ wᵢ·vᵢ / Σ wᵢ over relative weights (see `relative_weights`): no overflow for any finite positive weights."""
    rel = relative_weights(weights)
    return float(sum(v * w for v, w in zip(values, rel)) / sum(rel))


# -- stored records --------------------------------------------------------------------------------------------
# Each check takes one record as read from a file (a dict) and returns why it cannot be trusted, or None. The
# fields every record needs are checked whatever its status; the numbers only on `ok` records, which are the ones
# that are exported and trained on.
def label_problem(r: dict) -> Optional[str]:
    """Why a label record (the labels.jsonl form, AI or human) cannot be read, or None."""
    problem = (
        _required(r, ("id", "status")) or _conversation(r) or _texts(r, ("response_a", "response_b")) or _status(r)
    )
    if problem or r["status"] != "ok":
        return problem
    if r.get("source", "ai") not in ("ai", "human"):
        return f"source is {_shown(r.get('source'))}, not ai or human"
    label = r.get("label")
    if label not in ("a", "b", "tie"):
        return f"label is {_shown(label)}, not a, b or tie"
    if r.get("p_a") is None and r.get("source") == "human":
        return None  # a person's hard choice, written by hand without a probability: p_a is the label's (HUMAN_P)
    if (problem := probability_problem(r.get("p_a"))) is not None:
        return problem
    p_a = r["p_a"]
    if (label == "a" and not p_a > 0.5) or (label == "b" and not p_a < 0.5):
        return f"label '{label}' contradicts p_a = {p_a!r}"
    orders = r.get("p_a_orders")
    if orders is not None:
        if not isinstance(orders, list) or len(orders) != 2:
            return f"p_a_orders is {_shown(orders)}, not a list of two probabilities"
        for k, p in enumerate(orders):
            if p is not None and (problem := probability_problem(p, f"p_a_orders[{k}]")) is not None:
                return problem
    if r.get("p_a_raw") is not None and (problem := probability_problem(r["p_a_raw"], "p_a_raw")) is not None:
        return problem
    if (problem := _per_principle(r, probability_problem, "probabilities")) is not None:
        return problem
    if (problem := _per_member(r)) is not None:
        return problem
    scores = r.get("scores")
    if scores is not None:
        if not isinstance(scores, list) or len(scores) != 2 or any(real(s) is None for s in scores):
            return f"scores is {_shown(scores)}, not the two finite expected scores"
    mass = r.get("label_mass")
    if mass is not None and (real(mass) is None or mass < 0):
        return f"label_mass is {_shown(mass)}, not a finite number >= 0"
    return None


def score_record_problem(r: dict, scale: tuple[int, int]) -> Optional[str]:
    """Why a score record (the scores.jsonl form) cannot be read on the scale low..high, or None. An ok record's
    reward must also be its score rescaled to [-1, 1] (negated under an inverted principle), except under
    `sampling: all`, where it is the mean of the principles' rewards."""
    problem = _required(r, ("id", "prompt_id", "status")) or _conversation(r) or _texts(r, ("response",)) or _status(r)
    if problem or r["status"] != "ok":
        return problem
    low, high = scale
    if (problem := score_problem(r.get("score"), low, high) or reward_problem(r.get("reward"))) is not None:
        return problem
    if r.get("principle_id") != "all":
        r_expected = 2.0 * (r["score"] - low) / (high - low) - 1.0
        if r.get("invert"):
            r_expected = -r_expected
        if abs(r_expected - r["reward"]) > 1e-6:
            return f"reward = {r['reward']!r} does not match score = {r['score']!r} (expected {r_expected!r})"
    dist = r.get("distribution")
    if dist is not None:
        if not isinstance(dist, dict):
            return f"distribution is {_shown(dist)}, not a mapping of scores to probabilities"
        off = [k for k in dist if k not in {str(s) for s in range(low, high + 1)}]
        if off:
            return f"distribution has scores off the scale {low}..{high}: {', '.join(map(repr, off))}"
        if (problem := distribution_problem(dist)) is not None:
            return problem
    return _per_principle(r, reward_problem, "rewards", allow_null=False)


def revision_problem(r: dict) -> Optional[str]:
    """Why a revision record (the revisions.jsonl form) cannot be read, or None: an ok chain needs a final revision
    with text in it, and rounds that each carry a revision."""
    problem = _required(r, ("id", "status")) or _conversation(r) or _status(r)
    if problem or r["status"] != "ok":
        return problem
    final = r.get("final")
    if not isinstance(final, str) or not final.strip():
        return f"final is {_shown(final)}: an ok chain ends in a revision with text"
    rounds = r.get("rounds")
    if not isinstance(rounds, list) or not all(
        isinstance(x, dict) and isinstance(x.get("revision"), str) for x in rounds
    ):
        return f"rounds is {_shown(rounds)}, not a list of critique-revision rounds"
    if r.get("initial") is not None and not isinstance(r["initial"], str):
        return f"initial is {_shown(r['initial'])}, not text"
    return None


def sample_problem(r: dict) -> Optional[str]:
    """Why a sample record (`rlaif generate`'s samples.jsonl) cannot be read, or None: an ok record holds its
    samples as text, and as many `finished` flags."""
    problem = _required(r, ("id", "status")) or _conversation(r) or _status(r)
    if problem or r["status"] != "ok":
        return problem
    samples, finished = r.get("samples"), r.get("finished")
    if not isinstance(samples, list) or not all(isinstance(x, str) for x in samples):
        return f"samples is {_shown(samples)}, not a list of texts"
    if (
        not isinstance(finished, list)
        or len(finished) != len(samples)
        or not all(isinstance(x, bool) for x in finished)
    ):
        return f"finished is {_shown(finished)}, not one true/false per sample"
    return None


def _per_principle(r: dict, rule, what: str, allow_null: bool = True) -> Optional[str]:
    """Why the record's `per_principle` (principle id -> number, checked by `rule`) cannot be read, or None."""
    per = r.get("per_principle")
    if per is None:
        return None
    if not isinstance(per, dict):
        return f"per_principle is {_shown(per)}, not a mapping of principle ids to {what}"
    for pid, v in per.items():
        if (v is not None or not allow_null) and (problem := rule(v, f"per_principle '{pid}'")) is not None:
            return problem
    return None


def _per_member(r: dict) -> Optional[str]:
    """Why an ok jury record's `per_member` (each member's name, status and p_a) cannot be read, or None: a member
    that answered has a probability, one that failed has none, and at least one answered."""
    members = r.get("per_member")
    if members is None:
        return None
    if not isinstance(members, list) or not members:
        return f"per_member is {_shown(members)}, not a list of the jury members' verdicts"
    for k, m in enumerate(members):
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or m.get("status") not in ("ok", "failed"):
            return f"per_member[{k}] is {_shown(m)}, not a member's name, status (ok or failed) and p_a"
        if m["status"] == "ok" and (problem := probability_problem(m.get("p_a"), f"per_member[{k}].p_a")):
            return f"{problem} (member {m['name']})"
        if m["status"] == "failed" and m.get("p_a") is not None:
            return f"per_member[{k}] (member {m['name']}) failed, yet has p_a = {_shown(m['p_a'])}"
    if all(m["status"] == "failed" for m in members):
        return "every member in per_member failed, yet the jury's label is ok"
    return None


def _required(r: dict, names: Sequence[str]) -> Optional[str]:
    for name in names:
        if not isinstance(r.get(name), str) or not r[name]:
            return f"{name} is {'missing' if name not in r else _shown(r[name])}; it must be a non-empty string"
    return None


def _status(r: dict) -> Optional[str]:
    return None if r["status"] in ("ok", "failed") else f"status is {_shown(r['status'])}, not ok or failed"


def _texts(r: dict, names: Sequence[str]) -> Optional[str]:
    for name in names:
        if not isinstance(r.get(name), str):
            return f"{name} is {'missing' if name not in r else _shown(r[name])}, not text"
    return None


def _conversation(r: dict) -> Optional[str]:
    prompt = r.get("prompt")
    if isinstance(prompt, str):
        return None
    if (
        isinstance(prompt, list)
        and prompt
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt
        )
    ):
        return None
    return f"prompt is {'missing' if 'prompt' not in r else _shown(prompt)}, not text or a list of chat messages"


def _shown(x: Any) -> str:
    """A value as a message shows it: short, and named by its JSON type where that is the problem."""
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, str):
        return f"the string {x[:40]!r}"
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def _g(x: float) -> str:
    return f"{x:g}"
