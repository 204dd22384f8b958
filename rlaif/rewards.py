"""The judge as a scalar reward, for RL on one response at a time (PPO here; TRL's GRPO/RLOO, OpenRLHF and verl
elsewhere). A pairwise judge cannot score a lone response, so each response is compared — in both orders, under
the constitution, debiased like any label — with something to beat:

- `reference`: a reference response for the same prompt (a dataset column, or a sample from a reference policy);
  reward = 2·P(response ≻ reference) − 1, in [−1, 1]. This is d-RLAIF's idea (Lee et al. 2023, sec. 2.3: the
  LLM's probability-weighted judgement used directly as the reward, normalised to [−1, 1]) with a pairwise judge.
- `group`: the other responses to the same prompt in the batch (GRPO samples several per prompt); reward =
  2·mean_j P(response ≻ response_j) − 1, a round-robin tournament.

`JudgeReward` has TRL's reward-function signature `(prompts, completions, **kwargs) -> list[float]`.
A failed verdict gives reward 0 (no preference), counted in `failed`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Literal, Optional, Sequence

from .records import Pair


def _text(x) -> str:
    """A completion as text: TRL passes strings, or lists of chat messages in conversational datasets."""
    if isinstance(x, str):
        return x
    if isinstance(x, list) and x and isinstance(x[-1], dict):
        return str(x[-1].get("content", ""))
    raise ValueError(f"a completion must be text or a list of chat messages, got {type(x).__name__}")


def _prompt(x):
    return x if isinstance(x, str) else [dict(m) for m in x]


def _key(prompt) -> str:
    import json

    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


class JudgeReward:
    """A judge and a constitution as a reward function: `reward(prompts, completions, reference=[...])`.

    mode `reference` reads the reference responses from the `reference` keyword (TRL passes dataset columns as
    keywords; name another column with `reference_column`) or from `reference_fn(prompts) -> list[str]`.
    """

    def __init__(self, judge, constitution=None, *, mode: Literal["reference", "group"] = "reference",
                 reference_column: str = "reference", reference_fn=None, seed: int = 0):
        if mode not in ("reference", "group"):
            raise ValueError(f"mode must be reference or group, got {mode!r}")
        self.judge, self.constitution, self.mode = judge, constitution, mode
        self.reference_column, self.reference_fn, self.seed = reference_column, reference_fn, seed
        self.failed = 0
        self.position_consistent = 0
        self.judged = 0
        self.__name__ = f"rlaif_judge_{mode}"  # TRL logs each reward function under its __name__

    def _p_first(self, pairs: list[Pair]) -> list[Optional[float]]:
        from .labeling import score_pairs

        if not pairs:
            return []
        records = score_pairs(self.judge, pairs, self.constitution, seed=self.seed)
        out = []
        for r in records:
            self.judged += 1
            if r.status != "ok" or r.p_a is None:
                self.failed += 1
                out.append(None)
            else:
                self.position_consistent += bool(r.position_consistent)
                out.append(float(r.p_a))
        return out

    def __call__(self, prompts: Sequence, completions: Sequence, **kwargs) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        texts = [_text(c) for c in completions]
        ps = [_prompt(p) for p in prompts]
        if self.mode == "reference":
            refs = kwargs.get(self.reference_column)
            if refs is None and self.reference_fn is not None:
                refs = self.reference_fn(ps)
            if refs is None:
                raise ValueError(f"mode reference: no '{self.reference_column}' column and no reference_fn")
            if len(refs) != len(texts):
                raise ValueError(f"{len(refs)} references for {len(texts)} completions")
            pairs = [Pair(p, t, _text(r), id=f"r{i}") for i, (p, t, r) in enumerate(zip(ps, texts, refs))]
            return [0.0 if p is None else 2.0 * p - 1.0 for p in self._p_first(pairs)]
        groups: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(ps):
            groups[_key(p)].append(i)
        pairs, owners = [], []
        for members in groups.values():
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    i, j = members[x], members[y]
                    pairs.append(Pair(ps[i], texts[i], texts[j], id=f"g{i}-{j}"))
                    owners.append((i, j))
        wins = [0.0] * len(texts)
        games = [0] * len(texts)
        for (i, j), p in zip(owners, self._p_first(pairs)):
            p = 0.5 if p is None else p
            wins[i] += p
            wins[j] += 1.0 - p
            games[i] += 1
            games[j] += 1
        return [2.0 * w / g - 1.0 if g else 0.0 for w, g in zip(wins, games)]


def judge_reward(judge: str, constitution: Optional[str] = None, **kwargs) -> JudgeReward:
    """A `JudgeReward` from a judge YAML file and a constitution YAML file (paths)."""
    from .constitution import load_constitution
    from .judges.base import load_judge

    return JudgeReward(load_judge(judge), load_constitution(constitution) if constitution else None, **kwargs)
