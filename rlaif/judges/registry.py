"""From a judge config to a judge: the one place that knows which class runs each member of the JudgeConfig union.

Each backend is imported inside `judge_class`, when it is chosen, so loading a judge pulls in only its own packages
(a test imports every backend, so a broken one still fails CI). `not_ready` is the judges' own check that a judge
can label on its own, asked before a job writes anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..config.judge import (JudgeBase, JudgeConfig, OpenAIJudgeConfig, PolicyJudgeConfig, PythonJudgeConfig,
                            TransformersJudgeConfig, VLLMJudgeConfig, load_judge_config)
from .base import Judge


def judge_class(config: JudgeConfig) -> type[Judge]:
    """The Judge subclass that runs `config`; importing it loads no model and no heavy package."""
    match config:
        case TransformersJudgeConfig():
            from .hf import TransformersJudge
            return TransformersJudge
        case VLLMJudgeConfig():
            from .vllm import VLLMJudge
            return VLLMJudge
        case OpenAIJudgeConfig():
            from .openai import OpenAIJudge
            return OpenAIJudge
        case PythonJudgeConfig():
            from .python import PythonJudge
            return PythonJudge
        case PolicyJudgeConfig():
            from .policy import PolicyJudge
            return PolicyJudge
    raise TypeError(f"no judge backend runs a {type(config).__name__}")


def build_judge(config: JudgeConfig) -> Judge:
    return judge_class(config)(config)


def load_judge(config: str | Path | JudgeBase) -> Judge:
    """Load a judge from a `judges/*.yaml` file (or a config object)."""
    if not isinstance(config, JudgeBase):
        config = load_judge_config(config)
    return build_judge(config)


def not_ready(config: JudgeBase, judge: Optional[Judge] = None) -> Optional[str]:
    """Why this judge cannot label pairs on its own, or None. `judge` is the built judge, when there is one yet.

    The policy judge has no model of its own: it judges only once `rlaif loop` attaches the policy to it.
    """
    if config.backend == "policy" and getattr(judge, "model", None) is None:
        from .policy import NOT_ATTACHED

        return NOT_ATTACHED
    return None
