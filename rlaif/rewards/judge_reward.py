"""The judge as a scalar reward, for RL on one response at a time (PPO here; TRL's GRPO/RLOO, OpenRLHF and verl
elsewhere). A pairwise judge cannot score a lone response, so each response is compared — in both orders, under
the constitution, debiased like any label — with something to beat:

- `reference`: a reference response for the same prompt (a dataset column, or a sample from a reference policy);
  reward = 2·P(response ≻ reference) − 1, in [−1, 1]. This is d-RLAIF's idea (Lee et al. 2023, sec. 2.3: the
  LLM's probability-weighted judgement used directly as the reward, normalised to [−1, 1]) with a pairwise judge.
- `group`: the other responses to the same prompt in the batch (GRPO samples several per prompt); reward =
  2·mean_j P(response ≻ response_j) − 1, a round-robin tournament.

A score judge (`mode: score` in its YAML) needs nothing to beat: each response is rated alone on the judge's
scale and the reward is the expected score rescaled to [−1, 1] — d-RLAIF as Lee et al. define it, one call per
response (mode `score`, which follows from the judge config and is the only mode a score judge takes).

`JudgeReward` has TRL's reward-function signature `(prompts, completions, **kwargs) -> list[float]`; `rewards` is
the same computation with per-response failure counts, for the HTTP reward server (rlaif/rewards/server.py).
A failed verdict gives reward 0 (no preference) in `reference` mode and counts as a tie in a `group`
tournament; either way it is counted in `failed`, never hidden.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal, Optional, Sequence, get_args

from ..config.judge import JudgeBase
from ..constitution import GENERIC, load_constitution
from ..judges.base import PairwiseJudge, ScoreJudge, kind_of
from ..judges.registry import load_judge, refusal
from ..labeling.pairwise import judge_pairs
from ..records import Pair, sha256_json
from ..scoring.rate import rate_groups

Mode = Literal["reference", "group", "score"]
# what the refusal of a judge of the other kind suggests, by the kind the reward mode asked for
OTHER_KIND = {
    ScoreJudge: "Set `mode: score` in the judge config; a pairwise judge takes reward mode reference or group",
    PairwiseJudge: "A score judge rates each response alone: its reward mode is score (leave the mode out; in a "
    "PPO config, reward type judge_score)",
}


def reward_kind(mode: Optional[str]) -> Optional[type]:
    """The kind of judge a reward mode asks for: a score judge for `score`, a pairwise judge for `reference` and
    `group`; None when no mode is given (the judge's kind then decides it)."""
    if mode is not None and mode not in get_args(Mode):
        raise ValueError(f"mode must be reference or group (score: for a score judge), got {mode!r}")
    return None if mode is None else ScoreJudge if mode == "score" else PairwiseJudge


def reward_refusal(judge, mode: Optional[str], source: str = "the judge", user: Optional[str] = None) -> Optional[str]:
    """Why `judge` (a loaded judge or its config, read from `source`) cannot reward in `mode` (for `user`, by
    default "reward mode MODE"): one line, or None."""
    kind = reward_kind(mode)
    return refusal(judge, kind, user or f"reward mode {mode}", source, OTHER_KIND.get(kind, ""))


def _text(x) -> str:
    """A completion as text: TRL passes strings, or lists of chat messages in conversational datasets."""
    if isinstance(x, str):
        return x
    if isinstance(x, list) and x and isinstance(x[-1], dict):
        return str(x[-1].get("content", ""))
    raise ValueError(f"a completion must be text or a list of chat messages, got {type(x).__name__}")


def _prompt(x):
    if isinstance(x, str):
        return x
    if isinstance(x, list) and all(isinstance(m, dict) for m in x):
        return [dict(m) for m in x]
    raise ValueError(f"a prompt must be text or a list of chat messages, got {type(x).__name__}")


def prompt_key(prompt) -> str:
    """A prompt (text or chat messages) as a dict key: responses to the same prompt share it."""
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


@dataclass
class RewardBatch:
    """Rewards for a batch, and how many judge verdicts behind each one failed (0: all were read)."""

    rewards: list[float]
    failed: list[int]


class JudgeReward:
    """A judge and a constitution as a reward function: `reward(prompts, completions, reference=[...])`.

    mode `reference` reads the reference responses from the `reference` keyword (TRL passes dataset columns as
    keywords; name another column with `reference_column`) or from `reference_fn(prompts) -> list[str]`.
    Under TRL, the failures of each batch are also logged as the metric `<__name__>/failed` (through the
    `log_metric` keyword GRPOTrainer passes).
    """

    def __init__(
        self,
        judge,
        constitution=None,
        *,
        mode: Optional[Mode] = None,
        reference_column: str = "reference",
        reference_fn=None,
        seed: int = 0,
    ):
        problem = reward_refusal(judge, mode)
        if problem:
            raise ValueError(problem)
        mode = mode or ("score" if kind_of(judge.config) is ScoreJudge else "reference")
        self.judge, self.constitution, self.mode = judge, constitution, mode
        self.reference_column, self.reference_fn, self.seed = reference_column, reference_fn, seed
        self.failed = 0  # pairs whose verdict failed (reference: a response; group: a game)
        self.position_consistent = 0  # pairs whose two orders agreed
        self.judged = 0  # pairs judged
        self._lock = threading.Lock()  # counters only; callers that share a judge across threads serialise it
        self.__name__ = f"rlaif_judge_{mode}"  # TRL logs each reward function under its __name__

    def _p_first(self, pairs: list[Pair]) -> list[Optional[float]]:
        """P(response_a ≻ response_b) per pair, debiased over both orders; None where the judge failed."""

        if not pairs:
            return []
        records = judge_pairs(self.judge, pairs, self.constitution, seed=self.seed)
        out = [None if r.status != "ok" or r.p_a is None else float(r.p_a) for r in records]
        with self._lock:
            self.judged += len(records)
            self.failed += sum(p is None for p in out)
            self.position_consistent += sum(bool(r.position_consistent) for r in records if r.status == "ok")
        return out

    def rewards(self, prompts: Sequence, completions: Sequence, references: Optional[Sequence] = None) -> RewardBatch:
        """Rewards for `completions` to `prompts` (text or chat messages); `references` are needed in mode
        reference (one per completion) and ignored in mode group."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        texts = [_text(c) for c in completions]
        ps = [_prompt(p) for p in prompts]
        if self.mode == "score":
            return self._rated(ps, texts)
        if self.mode == "reference":
            if references is None:
                raise ValueError(f"mode reference: no '{self.reference_column}' column and no reference_fn")
            if len(references) != len(texts):
                raise ValueError(f"{len(references)} references for {len(texts)} completions")
            # a pair's id, which seeds its principle draw, is its content: the same reward whatever else shares
            # the batch (the reward server joins concurrent requests into one)
            refs = [_text(r) for r in references]
            pairs = [
                Pair(p, t, r, id=sha256_json([p, t, r])[:16], conversational=isinstance(p, list))
                for p, t, r in zip(ps, texts, refs)
            ]
            probs = self._p_first(pairs)
            return RewardBatch([0.0 if p is None else 2.0 * p - 1.0 for p in probs], [int(p is None) for p in probs])
        return self._tournament(ps, texts)

    def score(self, prompts: Sequence, completions: Sequence, references: Optional[Sequence] = None) -> RewardBatch:
        """Deprecated: the old name of `rewards` (kept for one release; "score" now means a rating)."""
        warnings.warn(
            "JudgeReward.score is deprecated and will be removed in the next release: use "
            "JudgeReward.rewards (same arguments)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.rewards(prompts, completions, references)

    def _rated(self, ps: list, texts: list[str]) -> RewardBatch:
        """Each response rated alone (one principle drawn per prompt): reward = the rescaled expected score; a
        failed rating gives 0 and is counted."""

        groups = rate_groups(self.judge, ps, [[t] for t in texts], self.constitution or GENERIC, self.seed)
        records = [group[0] for group in groups]
        rewards = [r.reward if r.status == "ok" else None for r in records]
        with self._lock:
            self.judged += len(records)
            self.failed += sum(x is None for x in rewards)
        return RewardBatch([0.0 if x is None else float(x) for x in rewards], [int(x is None) for x in rewards])

    def _tournament(self, ps: list, texts: list[str]) -> RewardBatch:
        groups: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(ps):
            groups[prompt_key(p)].append(i)
        pairs, owners = [], []
        for members in groups.values():
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    i, j = members[x], members[y]
                    pairs.append(
                        Pair(ps[i], texts[i], texts[j], id=f"g{i}-{j}", conversational=isinstance(ps[i], list))
                    )
                    owners.append((i, j))
        wins = [0.0] * len(texts)
        games = [0] * len(texts)
        failed = [0] * len(texts)
        for (i, j), p in zip(owners, self._p_first(pairs)):
            if p is None:  # no verdict: a tie, so it moves neither reward; counted below
                failed[i] += 1
                failed[j] += 1
                p = 0.5
            wins[i] += p
            wins[j] += 1.0 - p
            games[i] += 1
            games[j] += 1
        # a response alone with its prompt has no one to beat: reward 0
        return RewardBatch([2.0 * w / g - 1.0 if g else 0.0 for w, g in zip(wins, games)], failed)

    def __call__(self, prompts: Sequence, completions: Sequence, **kwargs) -> list[float]:
        refs = None
        if self.mode == "reference":
            refs = kwargs.get(self.reference_column)
            if refs is None and self.reference_fn is not None:
                refs = self.reference_fn([_prompt(p) for p in prompts])
        batch = self.rewards(prompts, completions, refs)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            log_metric(f"{self.__name__}/failed", float(sum(1 for f in batch.failed if f)))
        return batch.rewards


def judge_reward(
    judge: str | JudgeBase, constitution: Optional[str] = None, mode: Optional[str] = None, **kwargs
) -> JudgeReward:
    """A `JudgeReward` from a judge YAML file (or its config) and a constitution YAML file (a path). A judge of the
    kind `mode` does not take is refused before its model loads, in one line naming the file."""

    kind = reward_kind(mode)
    judge = load_judge(judge, kind, f"reward mode {mode}", OTHER_KIND.get(kind, ""))
    return JudgeReward(judge, load_constitution(constitution) if constitution else None, mode=mode, **kwargs)
