"""From a judge config to a judge: the one place that knows which class runs each member of the JudgeConfig union,
and where a caller asks for the kind of judge it needs (a pairwise judge or a score judge, judges/base.py).

Each backend is imported inside `judge_class`, when it is chosen, so loading a judge pulls in only its own packages
(a test imports every backend, so a broken one still fails CI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..config.judge import (
    JudgeBase,
    JudgeConfig,
    JuryJudgeConfig,
    OpenAIJudgeConfig,
    PolicyJudgeConfig,
    PythonJudgeConfig,
    TransformersJudgeConfig,
    VLLMJudgeConfig,
    load_judge_config,
)
from .base import ANSWERS, KINDS, Judge, PairwiseJudge, ScoreJudge, kind_of


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
        case JuryJudgeConfig():
            from .jury import JuryJudge

            return JuryJudge
    raise TypeError(f"no judge backend runs a {type(config).__name__}")


def build_judge(config: JudgeConfig) -> Judge:
    """The judge `config` makes, its model loaded; a jury's members are built here too, one after another (those
    built are closed again when a later one cannot be)."""
    if not isinstance(config, JuryJudgeConfig):
        return judge_class(config)(config)
    from .jury import JuryJudge, close_all

    members: list = []
    try:
        for name, member in config.seated():
            members.append((name, build_judge(member)))
    except BaseException:
        close_all(judge for _, judge in members)
        raise
    return JuryJudge(config, members)


def refusal(
    judge, kind: Optional[type] = None, user: str = "this caller", source: str = "the judge", hint: str = ""
) -> Optional[str]:
    """Why `judge` — a loaded judge, or a config (nothing loads) — cannot serve `user`, which asks for a `kind`
    judge (PairwiseJudge or ScoreJudge; None: either), in one line naming `source`, the judge's file or "the
    judge"; None when it can. A judge is the kind its mode says, provided its backend answers that kind's queries;
    `hint` says what to do instead (by default: set the mode)."""
    config, backend = (judge, judge_class(judge)) if isinstance(judge, JudgeBase) else (judge.config, type(judge))
    have = config.mode
    if kind is not None and kind_of(config) is not kind:
        want = next(mode for mode, k in KINDS.items() if k is kind)
        return (
            f"{source} is a {have} judge (mode: {have}): {user} needs a {want} judge. "
            f"{hint or f'Set `mode: {want}` in the judge config'}"
        )
    if isinstance(config, JuryJudgeConfig):  # a jury answers pairs through its members, each as its mode says
        return next(
            (
                f"{source}: member {name}: {problem}"
                for name, member in config.seated()
                if (problem := refusal(member, None, f"a jury for {user}", "it"))
            ),
            None,
        )
    answer = ANSWERS[kind_of(config)]
    if not callable(getattr(backend, answer, None)):
        return (
            f"{source} is a {have} judge (mode: {have}), but its backend ({backend.__name__}) has no `{answer}` "
            f"method to answer as one: {user} cannot use it"
        )
    return None


def load_judge(
    config: str | Path | JudgeBase, kind: Optional[type] = None, user: str = "this caller", hint: str = ""
) -> PairwiseJudge | ScoreJudge:
    """Load a judge from a `judges/*.yaml` file (or a config object): a pairwise judge or a score judge, as its
    `mode` says. With `kind` (PairwiseJudge or ScoreJudge), a judge of the other kind is refused before its model
    loads: a ValueError, one line naming the file, saying that `user` needs a `kind` judge (and `hint`)."""
    source = "the judge" if isinstance(config, JudgeBase) else str(config)
    if not isinstance(config, JudgeBase):
        config = load_judge_config(config)
    problem = refusal(config, kind, user, source, hint)
    if problem:
        raise ValueError(problem)
    return build_judge(config)
