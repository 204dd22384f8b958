"""The judge registry: the JudgeConfig union is the one list of backends. Every backend module imports (they are
imported lazily, so only this test sees a broken one), the builder has a class for every member of the union, and
judge YAMLs are validated through the union with FILE:LINE errors."""

from __future__ import annotations

import importlib
import pkgutil
from typing import get_args

import pytest

import rlaif.judges
from rlaif.config.judge import BACKENDS, JudgeConfig, PythonJudgeConfig, TransformersJudgeConfig, load_judge_config
from rlaif.config.yamlfile import ConfigFileError
from rlaif.judges.base import Judge, PairwiseJudge, ScoreJudge, kind_of
from rlaif.judges.registry import judge_class, load_judge


def test_every_judges_module_imports():
    names = [m.name for m in pkgutil.iter_modules(rlaif.judges.__path__)]
    assert {"base", "registry", "prompting", "hf", "vllm", "openai", "python", "policy"} <= set(names)
    for name in names:
        importlib.import_module(f"rlaif.judges.{name}")


def test_backend_names_follow_the_union():
    assert tuple(BACKENDS.values()) == get_args(get_args(JudgeConfig)[0])
    assert list(BACKENDS) == ["transformers", "vllm", "openai", "python", "policy", "jury"]


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_the_builder_covers_every_member_of_the_union(backend):
    cls = judge_class(BACKENDS[backend].model_construct())
    assert issubclass(cls, Judge) and cls.__module__.startswith("rlaif.judges.")
    others = {judge_class(c.model_construct()) for name, c in BACKENDS.items() if name != backend}
    assert cls not in others


def test_the_builder_refuses_what_is_not_in_the_union():
    with pytest.raises(TypeError, match="no judge backend"):
        judge_class(object())


def test_a_yaml_names_a_rule_by_import_path(tmp_path):
    f = tmp_path / "j.yaml"
    f.write_text("backend: python\nfunction: rlaif.rules:prefer_keyword\nkwargs: {keyword: thanks}\n")
    judge = load_judge(f)
    assert isinstance(judge.config, PythonJudgeConfig) and judge.config.model == "rlaif.rules:prefer_keyword"
    assert judge.fn("q", "thanks!", "no", "p", keyword="thanks") == 0.9


def test_a_file_without_backend_is_a_transformers_judge(tmp_path):
    f = tmp_path / "j.yaml"
    f.write_text("model: some/model\n")
    cfg = load_judge_config(f)
    assert isinstance(cfg, TransformersJudgeConfig) and cfg.model == "some/model"


@pytest.mark.parametrize(
    "text,got", [("backend: llamacpp\nmodel: m\n", "'llamacpp'"), ("", "None"), ("- backend: python\n", "None")]
)
def test_an_unknown_backend_is_refused_at_line_one(tmp_path, text, got):
    f = tmp_path / "j.yaml"
    f.write_text(text)
    with pytest.raises(ConfigFileError) as e:
        load_judge_config(f)
    backends = "transformers, vllm, openai, python, policy, jury"
    assert e.value.errors == [f"{f}:1: backend: must be one of {backends}, got {got}"]


def test_errors_name_the_field_without_the_union_tag(tmp_path):
    f = tmp_path / "j.yaml"
    f.write_text("backend: python\nfunction: nocolon\ncot:\n  enabld: true\n")
    with pytest.raises(ConfigFileError) as e:
        load_judge_config(f)
    assert f"{f}:4: cot.enabld: unknown field" in e.value.errors[0]
    f.write_text("model: m\nclamp: [0.6, 0.4]\n")
    with pytest.raises(ConfigFileError) as e:
        load_judge_config(f)
    assert e.value.errors[0].startswith(f"{f}:1: (top level): ") and "clamp must be" in e.value.errors[0]


def test_only_a_policy_judge_without_a_policy_is_not_ready():
    from types import SimpleNamespace

    from rlaif.config.judge import PolicyJudgeConfig
    from rlaif.judges.base import NOT_ATTACHED, not_ready

    policy = PolicyJudgeConfig()
    assert not_ready(policy) == NOT_ATTACHED  # not built yet: a config or a YAML path
    assert not_ready(policy, load_judge(policy)) == NOT_ATTACHED  # built, nothing attached
    assert not_ready(policy, SimpleNamespace(model=object())) is None  # attached by `rlaif loop`
    assert not_ready(PythonJudgeConfig(function="rlaif.rules:prefer_shorter")) is None


def test_a_judge_is_the_kind_its_mode_says_and_a_caller_asking_for_the_other_is_refused_before_it_loads(tmp_path):
    import rlaif

    rater, rule = tmp_path / "rater.yaml", tmp_path / "rule.yaml"
    rater.write_text(f"backend: transformers\nmode: score\nmodel: {tmp_path / 'no-model'}\n")  # nothing to load
    rule.write_text("backend: python\nfunction: rlaif.rules:prefer_shorter\n")
    assert kind_of(load_judge_config(rater)) is ScoreJudge and kind_of(load_judge(rule).config) is PairwiseJudge
    with pytest.raises(ValueError) as e:
        load_judge(rater, PairwiseJudge, "rlaif label")
    assert str(e.value) == (
        f"{rater} is a score judge (mode: score): rlaif label needs a pairwise judge. Set `mode: pairwise` in the "
        "judge config"
    )
    with pytest.raises(ValueError) as e:
        rlaif.load_judge(rule, ScoreJudge)
    assert str(e.value) == (
        f"{rule} is a pairwise judge (mode: pairwise): this caller needs a score judge. Set `mode: score` in the judge "
        "config"
    )
    assert rlaif.load_judge(rule, PairwiseJudge).fn("q", "a", "bb", "p") > 0.5  # the kind asked for: loaded
