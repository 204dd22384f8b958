"""Which preferences train a model: the `feedback:` section of a training config, or the file given to
`rlaif export --feedback`. AI labels, human labels, or a mix that sends the judge's doubtful pairs to people.

Slim on purpose (pydantic and the YAML reader only), so training configs can embed `FeedbackConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .yamlfile import ConfigFileError, FieldErrors, read_yaml, validation_messages


class FeedbackConfig(BaseModel):
    """Where preferences come from. Paths are relative to the working directory; a labels path is a labels
    JSONL file or a directory holding `labels.jsonl`."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["ai", "human", "mixed"] = Field(
        description="ai: the judge's labels; human: people's labels only; mixed: the judge's labels where it is "
                    "confident and position-consistent, people's labels for the rest.")
    ai: Optional[str] = Field(None, description="AI labels (from `rlaif label`). Required for ai and mixed.")
    human: Optional[str] = Field(
        None, description="Human labels (from `rlaif human import` / `rlaif annotate export`, source \"human\"), "
                          "or label files whose records carry a known `human_label`. Required for human; for mixed "
                          "it may be left out or not exist yet (no human labels so far).")
    calibration: Optional[str] = Field(
        None, description="A map from `rlaif calibrate fit`: applied to the AI labels' p_a before anything else "
                          "(the raw value is kept in p_a_raw).")
    margin: float = Field(0.1, ge=0.0, le=0.5, description="mixed: an AI label is kept only when "
                          "|p_a - 0.5| >= margin; closer calls go to people.")
    require_consistent: bool = Field(True, description="mixed: also send pairs whose two orders disagree "
                                     "(position_consistent false) to people.")
    queue: Optional[str] = Field(
        None, description="mixed: where to write the pairs sent to people, in `rlaif label` input format with "
                          "their id (serve them with `rlaif annotate serve --pairs QUEUE`). Default: "
                          "human_queue.jsonl next to the AI labels.")
    pending: Literal["drop", "ai"] = Field(
        "drop", description="mixed: a queued pair with no human label yet is left out (drop) or keeps its AI "
                            "label until one arrives (ai).")
    human_combine: Literal["mean", "each"] = Field(
        "mean", description="Several annotators on one pair: one record whose p_a is the mean of theirs (mean), "
                            "or one record per annotator (each).")

    @model_validator(mode="after")
    def _check_paths(self):
        missing = []
        if self.source in ("ai", "mixed") and not self.ai:
            missing.append((("ai",), f"required when source is {self.source}"))
        if self.source == "human" and not self.human:
            missing.append((("human",), "required when source is human"))
        if missing:
            raise FieldErrors(missing)
        return self

    def queue_path(self) -> Optional[Path]:
        """The mixed source's queue file (None for the other sources)."""
        if self.source != "mixed":
            return None
        if self.queue:
            return Path(self.queue)
        ai = Path(self.ai)
        return (ai if ai.is_dir() else ai.parent) / "human_queue.jsonl"


def load_feedback_config(path: str | Path) -> FeedbackConfig:
    """Read a feedback YAML file: the fields at the top level, or under a `feedback:` key (a training config).
    Errors come back as `FILE:LINE: field: message` (ConfigFileError)."""
    data, lines = read_yaml(path)
    prefix: tuple = ()
    if isinstance(data, dict) and "source" not in data and isinstance(data.get("feedback"), dict):
        data, prefix = data["feedback"], ("feedback",)
    if not isinstance(data, dict):
        raise ConfigFileError([f"{path}:1: (top level): expected a mapping with `source:` (or a `feedback:` "
                               f"section), got {type(data).__name__}"])
    try:
        return FeedbackConfig.model_validate(data)
    except ValidationError as e:
        # error locations are relative to the section; look their lines up under it
        sub_lines = {k[len(prefix):]: v for k, v in lines.items() if k[:len(prefix)] == prefix}
        raise ConfigFileError(validation_messages(path, e, sub_lines)) from None
