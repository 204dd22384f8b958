"""Rule-based functions for the `python` backend: judges with a verifiable preference (each returns P(first
preferred) as a smooth function of a measurable property, so labels are soft), and a reviser whose revisions have
a known property, for `rlaif revise`.
"""

from __future__ import annotations

import math
import random

# the words of the tiny examples' tokenizer (examples/tiny/*.yaml) other than "please"
TINY_WORDS = (
    "thanks",
    "sure",
    "here",
    "is",
    "the",
    "answer",
    "a",
    "good",
    "plan",
    "you",
    "can",
    "try",
    "this",
    "now",
    "maybe",
    "ok",
    "yes",
    "no",
    "we",
    "will",
    "help",
    "it",
)


def prefer_shorter(prompt, first: str, second: str, principle: str, sharpness: float = 0.05) -> float:
    """P(first) = σ(sharpness · (len(second) − len(first))): the shorter response is preferred."""
    return 1.0 / (1.0 + math.exp(-sharpness * (len(second) - len(first))))


def prefer_keyword(
    prompt, first: str, second: str, principle: str, keyword: str = "please", confidence: float = 0.9
) -> float:
    """Prefers the response that contains `keyword` (case-insensitive); 0.5 when both or neither do."""
    a, b = keyword.lower() in first.lower(), keyword.lower() in second.lower()
    if a == b:
        return 0.5
    return confidence if a else 1.0 - confidence


def keyword_reviser(
    messages: list[dict], step: str, principle, keyword: str = "please", words: tuple[str, ...] = TINY_WORDS
) -> str:
    """A reviser for the `python` generation backend (`rlaif revise`) whose revisions have a known property: its
    first answer is a few of `words` (seeded by the prompt), its critique says the answer lacks `keyword`, and its
    revision puts `keyword` in front of the answer it critiqued. Fine-tuned on its revisions, a policy should say
    `keyword` more often; a tiny random model would revise into noise."""
    if step == "initial":
        rng = random.Random(messages[-1]["content"])
        return " ".join(rng.choice(words) for _ in range(rng.randint(3, 6)))
    if step == "critique":
        return f"the answer does not say {keyword}"
    answer = messages[-4]["content"]  # the answer critiqued, then its critique, then this revision request
    return answer if keyword in answer.split() else f"{keyword} {answer}"
