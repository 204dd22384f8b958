"""Markdown tables of every config field, generated from the pydantic models' own descriptions, so the docs site,
`--help` and error messages share one text. `python -m rlaif.docs` prints them, `--sync` writes them into the
field reference page (docs/reference/config.md), and a test keeps that page in sync."""

from __future__ import annotations

import re

from pydantic import BaseModel

from .config import dpo, loop, ppo, reward, run, sampling, sft
from .config.feedback import source_classes, source_name
from .config.judge import BACKENDS, CoTConfig, ScoreConfig
from .constitution import Constitution, FewShotExample, Principle, RevisionExample


def _type(field) -> str:
    text = str(field.annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    text = re.sub(r"rlaif\.(config\.)?\w+\.", "", text)  # rlaif.config.ppo.KLConfig → KLConfig
    return text.replace("|", "\\|")


def table(model: type[BaseModel], title: str, skip: frozenset[str] = frozenset()) -> str:
    lines = [f"### {title}", "", "| field | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        if len(default) > 30:
            default = "(see meaning)"
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | `{_type(field)}` | `{default}` | {desc} |")
    return "\n".join(lines)


def render() -> str:
    parts = [
        "## Constitutions and judges",
        table(Constitution, "Constitution"),
        table(Principle, "Principle (`principles[]`)"),
        table(FewShotExample, "Few-shot example (`few_shot[]`)"),
        table(RevisionExample, "Critique-revision example (`revision_examples[]`, rlaif revise)"),
    ]
    for backend, cls in BACKENDS.items():
        parts.append(table(cls, f"Judge, `backend: {backend}`"))
    parts.append(table(CoTConfig, "Chain of thought (`cot:`)"))
    parts.append(table(ScoreConfig, "Rating scale of a score judge (`score:`, with `mode: score`)"))
    parts.extend(training_tables())
    return "\n\n".join(parts) + "\n"


def training_tables() -> list[str]:
    """The training configs: the fields every method shares, each method's own, then the sections."""

    shared = frozenset(run.RunConfig.model_fields)
    parts = [
        "## Training",
        table(run.RunConfig, "Training, every method (`rlaif train reward|dpo|ppo|sft`, `rlaif loop`)"),
    ]
    for cls, name in (
        (reward.RewardTrainConfig, "reward"),
        (dpo.DPOTrainConfig, "dpo"),
        (ppo.PPOTrainConfig, "ppo"),
        (loop.LoopConfig, "loop"),
        (sft.SFTTrainConfig, "sft"),
    ):
        parts.append(table(cls, f"Training, `method: {name}` (besides the shared fields)", skip=shared))
    for cls, title in (
        (run.TinyModelConfig, "`model:` with `type: tiny`"),
        (run.PretrainedModelConfig, "`model:` with `type: pretrained`"),
        (run.OptimConfig, "`optim:`"),
        (run.LoraConfig, "`lora:`"),
        *((cls, f"`feedback:` with `source: {source_name(cls)}` (reward, dpo)") for cls in source_classes()),
        (run.PairsConfig, "`pairs:` (reward, dpo)"),
        (reward.RewardLossConfig, "`loss:` (reward)"),
        (dpo.SigmoidDPOLoss, "`loss:` with `type: sigmoid` (dpo, loop)"),
        (dpo.IPOLoss, "`loss:` with `type: ipo` (dpo, loop)"),
        (sampling.SamplingConfig, "`sampling:` (loop); the `--config` file of rlaif generate and rlaif revise"),
        (ppo.RolloutSamplingConfig, "`sampling:` (ppo)"),
        (ppo.PromptsConfig, "`prompts:` (ppo)"),
        (ppo.ModelRewardConfig, "`reward:` with `type: model` (ppo)"),
        (ppo.JudgeRewardConfig, "`reward:` with `type: judge` (ppo)"),
        (ppo.JudgeScoreRewardConfig, "`reward:` with `type: judge_score` (ppo)"),
        (ppo.FixedKLConfig, "`kl:` with `type: fixed` (ppo)"),
        (ppo.AdaptiveKLConfig, "`kl:` with `type: adaptive` (ppo)"),
        (ppo.PPOLossConfig, "`loss:` (ppo)"),
        *(
            (cls, f"`feedback:` with `source: {source_name(cls)}` (loop; `source` may be left out: ai)")
            for cls in source_classes(loop.LoopFeedbackSource)
        ),
        (loop.LoopAnnotate, "`feedback.annotate:` (loop, with `source: mixed`)"),
        (sft.SFTDataConfig, "`data:` (sft)"),
    ):
        parts.append(table(cls, title))
    return parts


REFERENCE = "docs/reference/config.md"


def sync_reference(path: str = REFERENCE, check: bool = False) -> bool:
    """Rewrite the field reference page's tables (between `<!-- fields -->` markers); with check, only compare."""
    from pathlib import Path

    text = Path(path).read_text(encoding="utf-8")
    start, end = "<!-- fields -->\n", "<!-- /fields -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = head + start + render() + end + tail
    if check:
        return new == text
    Path(path).write_text(new, encoding="utf-8")
    return True


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--sync"]:
        sync_reference()
    else:
        print(render(), end="")
