"""From a model config to a generator: the one place that knows which class runs each member of the JudgeConfig
union for `rlaif revise`. Each backend is imported when it is chosen, so building one pulls in only its own
packages."""

from __future__ import annotations

from ..config.judge import (
    JudgeBase,
    OpenAIJudgeConfig,
    PolicyJudgeConfig,
    PythonJudgeConfig,
    TransformersJudgeConfig,
    VLLMJudgeConfig,
)
from ..config.sampling import SamplingConfig
from .generators import Generator


def build_generator(config: JudgeBase, sampling: SamplingConfig) -> Generator:
    """The generator that runs `config` (a member of the JudgeConfig union) under `sampling`."""
    # lazy: each backend is imported when it is chosen, so a generator pulls in only its own packages
    match config:
        case TransformersJudgeConfig():
            from .hf import TransformersGenerator

            return TransformersGenerator(config, sampling)
        case VLLMJudgeConfig():
            from .vllm import VLLMGenerator

            return VLLMGenerator(config, sampling)
        case OpenAIJudgeConfig():
            from .openai import OpenAIGenerator

            return OpenAIGenerator(config, sampling)
        case PythonJudgeConfig():
            from .python import PythonGenerator

            return PythonGenerator(config, sampling)
        case PolicyJudgeConfig():
            raise ValueError(
                "backend: policy has no model of its own (it judges with the policy `rlaif loop` "
                "trains); give rlaif revise a transformers, vllm, openai or python model config"
            )
    raise TypeError(f"no generation backend runs a {type(config).__name__}")
