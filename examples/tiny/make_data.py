"""Make the tiny examples' preference labels: random word-salad replies to short prompts, labelled by the
rule-based `python` judge (`rlaif.rules:prefer_keyword`) through the ordinary labelling job, so the preferred
property is known: a reply that says "please". Writes examples/tiny/data/labels.jsonl (committed; rerun to
regenerate: `python examples/tiny/make_data.py [--out DIR] [--pairs N] [--keyword WORD]`).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The words of the tiny examples' tokenizer (examples/tiny/*.yaml list the same ones): one token per word.
WORDS = [
    "please",
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
    "how",
    "what",
    "why",
    "do",
    "i",
    "my",
    "fix",
    "make",
    "tea",
    "bread",
    "code",
    "car",
    "door",
]
PROMPT_WORDS = ["how", "what", "why", "do", "i", "my", "fix", "make", "tea", "bread", "code", "car", "door"]


def make_pairs(n: int, keyword: str, seed: int = 0) -> list[dict]:
    """Pairs where (80% of the time) exactly one reply contains `keyword`, at a random place; otherwise both or
    neither do, and the judge calls a tie."""
    rng = random.Random(seed)
    filler = [w for w in WORDS if w != keyword]

    def reply(with_keyword: bool) -> str:
        words = [rng.choice(filler) for _ in range(rng.randint(3, 6))]
        if with_keyword:
            words.insert(rng.randrange(len(words) + 1), keyword)
        return " ".join(words)

    pairs = []
    for i in range(n):
        if rng.random() < 0.8:
            has_a = rng.random() < 0.5
            has_b = not has_a
        else:
            has_a = has_b = rng.random() < 0.5
        prompt = " ".join(rng.choice(PROMPT_WORDS) for _ in range(rng.randint(2, 4)))
        pairs.append({"id": f"tiny-{i:04d}", "prompt": prompt, "response_a": reply(has_a), "response_b": reply(has_b)})
    return pairs


def make_labels(out: Path, n: int = 320, keyword: str = "please", seed: int = 0) -> Path:
    """Write `n` pairs labelled by the keyword judge to out/labels.jsonl; returns that file."""
    from rlaif.config.judge import PythonJudgeConfig
    from rlaif.constitution import GENERIC
    from rlaif.judges.registry import load_judge
    from rlaif.labeling.job import label

    judge = load_judge(
        PythonJudgeConfig(function="rlaif.rules:prefer_keyword", kwargs={"keyword": keyword, "confidence": 0.9})
    )
    with tempfile.TemporaryDirectory() as tmp:
        pairs = Path(tmp) / "pairs.jsonl"
        pairs.write_text("".join(json.dumps(p) + "\n" for p in make_pairs(n, keyword, seed)))
        label(pairs, GENERIC, judge, out, progress=False)
    for extra in ("manifest.json", "stats.json"):  # keep the committed example to the labels themselves
        (out / extra).unlink(missing_ok=True)
    return out / "labels.jsonl"


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=HERE / "data")
    ap.add_argument("--pairs", type=int, default=320)
    ap.add_argument("--keyword", default="please")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(make_labels(a.out, a.pairs, a.keyword, a.seed))
