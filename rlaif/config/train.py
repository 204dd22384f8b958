"""Typed training configs (the `examples/*/{reward,dpo,ppo,loop,sft}.yaml` files): `TrainConfig` is the union of
one model per method, chosen by `method:`, and `load_train_config` reads a YAML file through it, with `key=value`
overrides and FILE:LINE errors. Each method's model lives in its own module (reward, dpo, ppo, loop, sft), built from
the shared sections of rlaif/config/run.py; the recipe that runs it is `rlaif.recipes.RECIPES[method]`.

Slim on purpose: importing this module never imports torch or transformers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Union, get_args

from pydantic import Field, TypeAdapter, ValidationError

from .dpo import DPOTrainConfig
from .judge import load_judge_config
from .loop import LoopConfig, judge_mode_problems
from .paths import model_problem, output_dir_problem
from .ppo import PPOTrainConfig
from .reward import RewardTrainConfig
from .run import PretrainedModelConfig, RunConfig
from .sft import SFTTrainConfig
from .yamlfile import ConfigFileError, field_errors, load_model, read_yaml, yaml_value

TrainConfig = Annotated[
    Union[RewardTrainConfig, DPOTrainConfig, PPOTrainConfig, LoopConfig, SFTTrainConfig], Field(discriminator="method")
]
# the union's tags, in its order: what `method:` may say
METHODS = [get_args(c.model_fields["method"].annotation)[0] for c in get_args(get_args(TrainConfig)[0])]


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`key=value` strings (dotted keys for nested fields) into a nested dict; values are read as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override '{item}' is not key=value (e.g. optim.lr=1e-5)")
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override '{item}': '{part}' is set as a value and as a section")
        node[leaf] = yaml_value(text, f"override '{item}'") if text != "" else ""
    return out


def _deep_merge(base: Any, extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` merged into `base`; a section whose tag (`type:`, or a feedback section's `source:`) changes is
    replaced, not merged: its fields differ."""
    if not isinstance(base, dict) or any(k in extra and extra[k] != base.get(k) for k in ("type", "source")):
        base = {}
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = _deep_merge(merged.get(k), v) if isinstance(v, dict) else v
    return merged


class _ByMethod:
    """`TrainConfig` in the shape `load_model` validates with. pydantic puts the union's tag (the method) at the
    front of every error location; it is taken off, so errors name the field as it is written in the file."""

    _adapter = TypeAdapter(TrainConfig)
    config_type = TrainConfig  # what the hint on an unknown key walks

    @classmethod
    def model_validate(cls, data: dict) -> RunConfig:
        try:
            return cls._adapter.validate_python(data)
        except ValidationError as e:
            raise ValidationError.from_exception_data(
                e.title,
                [
                    {
                        "type": err["type"],
                        "loc": tuple(err["loc"][1:]),
                        "input": err["input"],
                        **({"ctx": err["ctx"]} if "ctx" in err else {}),
                    }
                    for err in e.errors()
                ],
            ) from None


def load_train_config(path: str | Path, method: str, overrides: list[str] | None = None) -> RunConfig:
    """Read a training YAML for `method` (the command that runs it), apply `key=value` overrides, validate
    through `TrainConfig` (FILE:LINE errors). A file without `method:` is read as `method`'s config."""
    data, lines = read_yaml(path)
    extra = parse_overrides(overrides or [])
    if isinstance(data, dict):
        found = extra.get("method", data.get("method", method))
        where = f"{path}:{lines.get(('method',), 1)}: method"
        if found not in METHODS:
            raise ConfigFileError([f"{where}: must be one of {', '.join(METHODS)}, got {found!r}"])
        if found != method:
            command = "rlaif loop" if found == "loop" else f"rlaif train {found}"
            raise ConfigFileError([f"{where}: this is a '{found}' config; use `{command}`"])
        # load_model merges top-level keys only: hand it whole merged sections so dotted keys deep-merge
        extra = {k: _deep_merge(data.get(k), v) if isinstance(v, dict) else v for k, v in extra.items()}
        extra["method"] = method
    return load_model(path, _ByMethod, overrides=extra)


def check_run_paths(path: str | Path, config: RunConfig) -> None:
    """Refuse, as `FILE:LINE: field: message`, a config whose paths cannot work: an output_dir that is a file, a
    model that is no model folder and no reachable hub id, a reward model that is not one, a loop's feedback
    settings that do not fit its judge's mode. Run before any model is built (validation has passed; this looks
    at the disk and the hub cache)."""
    problems = [(("output_dir",), output_dir_problem(config.output_dir))]
    if isinstance(config.model, PretrainedModelConfig):
        problems.append((("model", "path"), model_problem(config.model.path, config.model.revision)))
    reward = getattr(config, "reward", None)
    if getattr(reward, "type", None) == "model":  # PPO scored by a trained reward model (a local folder)
        problems.append((("reward", "path"), model_problem(reward.path, head="score", local_only=True)))
    found = [(loc, msg) for loc, msg in problems if msg]
    if isinstance(config, LoopConfig) and Path(config.judge).is_file():  # a missing judge file: the recipe says so
        found += judge_mode_problems(config, load_judge_config(config.judge))
    if found:
        raise field_errors(path, found)
