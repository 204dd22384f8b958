"""Reward sources: what rewards a response sampled in an RL rollout (PPO here), chosen by the config's `reward.type`
— a trained reward model, or the judge itself (d-RLAIF). Each is `source(samples, references) -> list[float]`
over `rlaif.policy.sampling.Sample`s, says whether it needs a reference-policy response per sample, and counts the
verdicts that failed. A judge that cannot give its reward is refused at the start of the run (`check_reward_source`).
"""

from __future__ import annotations

from typing import Optional, Sequence

from ..config.judge import load_judge_config
from ..config.ppo import JudgeRewardConfig, JudgeScoreRewardConfig, ModelRewardConfig
from ..policy.chat import encode
from .judge_reward import judge_reward, reward_refusal
from .reward_model import load_reward_model, score_sequences


class ModelRewardSource:
    """A reward model's score of each response. The response is decoded and re-tokenised (prompt and response
    through `rlaif.policy.chat.encode`, as `rlaif train reward` encoded its pairs) with the reward model's own
    tokenizer; inputs longer than `max_length` keep their end."""

    needs_reference = False
    failed = 0  # a reward model always gives a score

    def __init__(self, config: ModelRewardConfig, device=None, dtype=None):

        self.config = config
        self.model, self.tokenizer = load_reward_model(config.path, dtype, device)

    def __call__(self, samples: Sequence, references: Optional[Sequence] = None) -> list[float]:

        seqs = []
        for s in samples:
            prompt, response = encode(self.tokenizer, s.prompt, s.text)
            seqs.append((prompt + response)[-self.config.max_length :])  # the head reads the end: keep it
        return score_sequences(self.model, seqs, self.tokenizer.pad_token_id, self.config.batch_size)


class JudgeRewardSource:
    """The judge as the reward (d-RLAIF, Lee et al. 2023, sec. 2.3) through `rlaif.rewards.JudgeReward`: a pairwise
    judge against the reference policy's response to the same prompt (mode reference) or the prompt's other
    responses (group); a score judge (`type: judge_score`) rating each response alone."""

    def __init__(self, config: JudgeRewardConfig | JudgeScoreRewardConfig, seed: int = 0):

        mode = _mode(config)
        self.reward = judge_reward(config.judge, config.constitution, mode=mode, seed=seed)
        self.needs_reference = mode == "reference"

    def __call__(self, samples: Sequence, references: Optional[Sequence] = None) -> list[float]:
        kwargs = {"reference": [r.text for r in references]} if self.needs_reference else {}
        return self.reward([s.prompt for s in samples], [s.text for s in samples], **kwargs)

    @property
    def failed(self) -> int:
        """Verdicts that failed so far (each gave reward 0)."""
        return self.reward.failed


def _mode(config: JudgeRewardConfig | JudgeScoreRewardConfig) -> str:
    """The JudgeReward mode of a judge reward: `reward.mode` (reference, group), or score for `type: judge_score`."""
    return config.mode if isinstance(config, JudgeRewardConfig) else "score"


def check_reward_source(config) -> None:
    """Refuse (ValueError, one line naming the judge file) a judge reward whose judge cannot give it: one of the
    other kind for its reward type, or one that cannot judge on its own (the policy judge)."""
    if isinstance(config, ModelRewardConfig):
        return
    judge = load_judge_config(config.judge)
    problem = reward_refusal(judge, _mode(config), config.judge, f"reward type {config.type}")
    if problem:
        raise ValueError(problem)


def make_reward_source(config, device=None, dtype=None, seed: int = 0):
    """The source named by `reward.type`: a reward model on `device` in `dtype`, or the judge (seeded)."""
    match config:
        case ModelRewardConfig():
            return ModelRewardSource(config, device, dtype)
        case JudgeRewardConfig() | JudgeScoreRewardConfig():
            return JudgeRewardSource(config, seed)
    raise TypeError(f"no reward source for {type(config).__name__}")
