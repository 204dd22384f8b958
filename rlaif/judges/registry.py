"""From a judge config to a judge: the one place that knows which class runs each member of the JudgeConfig union.

Each backend is imported inside `judge_class`, when it is chosen, so loading a judge pulls in only its own packages
(a test imports every backend, so a broken one still fails CI).
"""

from __future__ import annotations

from pathlib import Path

from ..config.judge import (
    JudgeBase,
    JudgeConfig,
    OpenAIJudgeConfig,
    PolicyJudgeConfig,
    PythonJudgeConfig,
    TransformersJudgeConfig,
    VLLMJudgeConfig,
    load_judge_config,
)
from .base import Judge


def judge_class(config: JudgeConfig) -> type[Judge]:
    """The Judge subclass that runs `config`; importing it loads no model and no heavy package."""
    # lazy: each backend is imported when it is chosen, so a judge pulls in only its own packages (torch, httpx…)
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
