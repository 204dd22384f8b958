"""Training recipes, one file per method — `reward.py`, `dpo.py`, `ppo.py`, `loop.py`, `sft.py` — each a readable
setup → loop → save over the components in rlaif/train/. `RECIPES` maps a config's `method:` (a member of
`rlaif.config.train.TrainConfig`) to the recipe that runs it; `run_recipe` is the one dispatch. Each recipe is
imported when it runs, so `rlaif --help` never imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


# lazy: each recipe (and torch with it) is imported when it runs
def _reward(config) -> Path:
    from .reward import train as reward_model

    return reward_model(config)


def _dpo(config) -> Path:
    from .dpo import train as dpo

    return dpo(config)


def _ppo(config) -> Path:
    from .ppo import train as ppo

    return ppo(config)


def _sft(config) -> Path:
    from .sft import train as supervised_fine_tuning

    return supervised_fine_tuning(config)


def _loop(config) -> Path:
    from .loop import train as self_feedback_loop

    return self_feedback_loop(config)


RECIPES: dict[str, Callable] = {"reward": _reward, "dpo": _dpo, "ppo": _ppo, "loop": _loop, "sft": _sft}


def run_recipe(config) -> Path:
    """Run the recipe that trains `config.method`; returns the saved model's directory."""
    return RECIPES[config.method](config)
