"""The model that answers, critiques and revises in `rlaif revise`, built from the same model configs as the judges
(`judges/*.yaml`): the `Generator` interface here, one subclass per backend in its own file (importing its heavy
packages only when chosen), built by registry.py (the one dispatch over the JudgeConfig union).

A generator turns a batch of `Request`s (a conversation that ends with a user turn) into one `Reply` each. The
chain asks through a `Session`, which sees the same conversations grow step by step: the transformers backend
keeps their KV caches there, so a round re-encodes only what is new (hf.py); the others are stateless.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal, Mapping, Optional

from ..config.judge import JudgeBase
from ..config.sampling import SamplingConfig
from ..records import JudgeInfo, Message, Spend, sha256_json
from ..text import valid_text

Step = Literal["initial", "critique", "revision"]
Finish = Literal["eos", "length"]
TOO_LONG = "conversation too long for the model"


@dataclass(frozen=True)
class Request:
    """One generation: the conversation so far (ending with the user's turn), which step of the chain it is, the
    principle of its round, and the seed of this one draw."""

    messages: list[Message]
    step: Step
    principle_id: Optional[str]
    seed: int


@dataclass
class Reply:
    """The model's reply to one request. `text` is None when it failed, and `error` then says why; `finish` says
    whether generation stopped at an end-of-turn token ("eos") or at max_new_tokens ("length").

    Every backend's reply is built here, so this is where a reviser's text enters: it is made valid Unicode on
    construction, and `repaired` says whether it had to be (rlaif/text.py)."""

    text: Optional[str]
    finish: Optional[Finish] = None
    error: Optional[str] = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    repaired: bool = False

    def __post_init__(self) -> None:
        for name in ("text", "error"):  # an error may quote the model, or a python reviser's exception
            value = getattr(self, name)
            if value is not None:
                value, repaired = valid_text(value)
                setattr(self, name, value)
                self.repaired = self.repaired or repaired


def too_long(n_tokens: int, limit: int) -> Reply:
    return Reply(
        None,
        error=f"{TOO_LONG}: {n_tokens} tokens with max_new_tokens, over max_length={limit}",
        prompt_tokens=n_tokens,
    )


def generation_settings(sampling: SamplingConfig) -> dict:
    """What of the sampling config changes a reply, for records and the content key (batch size and backend are
    plumbing)."""
    return {k: getattr(sampling, k) for k in ("temperature", "top_p", "top_k", "max_new_tokens")}


class Session:
    """The conversations of one batch of chains, asked step by step: `step({chain: request})` → `{chain: reply}`,
    where a chain's request extends its previous conversation. A reply is None when a spending cap stopped it."""

    def __init__(self, generator: "Generator"):
        self.generator = generator

    def step(self, requests: Mapping[int, Request]) -> dict[int, Optional[Reply]]:
        keys = list(requests)
        return dict(zip(keys, self.generator.generate([requests[k] for k in keys])))


class Generator(ABC):
    """A model that replies to conversations under one sampling config."""

    def __init__(self, config: JudgeBase, sampling: SamplingConfig):
        self.config, self.sampling = config, sampling
        self._spent_before = Spend()

    @abstractmethod
    def generate(self, requests: list[Request]) -> list[Optional[Reply]]:
        """One reply per request, in order; None where a spending cap stopped the request before it was sent."""

    def session(self) -> Session:
        return Session(self)

    @property
    def info(self) -> JudgeInfo:
        return model_info(self.config)

    def stopped(self) -> Optional[str]:
        """Why requests went unanswered (a spending cap), or None."""
        return None

    def carry_spend(self, before: Spend) -> None:
        """Count on from what the job spent in its earlier runs (a backend with caps overrides this pair)."""
        self._spent_before = before

    def spent(self) -> Spend:
        return self._spent_before

    def close(self) -> None:
        """Free the model or connections."""


def model_info(config: JudgeBase) -> JudgeInfo:
    """The provenance a revision record carries of its model (known from the config: no model loaded)."""
    return JudgeInfo(backend=config.backend, model=config.model, settings_sha256=config.settings_sha256())


def generation_sha256(sampling: SamplingConfig) -> str:
    return sha256_json(generation_settings(sampling))
