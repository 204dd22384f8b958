"""The one dispatch of training methods: `rlaif.recipes.RECIPES` has a recipe for every member of the
`TrainConfig` union (and nothing else), and every recipe module imports — a broken one fails here, not when a user
first runs it."""

from __future__ import annotations

import importlib
from typing import get_args

import pytest

from rlaif.config.train import TrainConfig
from rlaif.recipes import RECIPES

METHODS = [cls.model_fields["method"].default for cls in get_args(get_args(TrainConfig)[0])]


def test_the_registry_covers_every_method_of_the_config_union():
    assert sorted(METHODS) == sorted(RECIPES) == ["dpo", "loop", "ppo", "reward", "sft"]


@pytest.mark.parametrize("method", METHODS)
def test_every_recipe_module_imports_and_has_train(method):
    module = importlib.import_module(f"rlaif.recipes.{method}")
    assert callable(module.train)
