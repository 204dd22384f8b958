"""Hashes are data: every label's resume key (`record_key`) is built from the constitution's and the judge's content
hashes, so a change to either hash makes existing label folders start over. These pins hold the hashes of every
shipped constitution and judge, and one record key, at the values they had when the layout was redesigned."""

from __future__ import annotations

from typing import Optional

import pytest
from pydantic import Field

from rlaif.config.judge import CoTConfig, TransformersJudgeConfig, load_judge_config
from rlaif.constitution import Constitution, Principle, load_constitution
from rlaif.labeling.pairwise import record_key
from rlaif.records import Pair
from tests.helpers import ROOT

CONSTITUTIONS = {
    "harmless.yaml": "aed59999909c107a566bc43ce44fded2525d0835d6984cd8805e644ddc119c8c",
    "helpful.yaml": "dcf2b5c130129e5b0db02b3ad98d7b8350e24935970e5224c66ec67b03b54d8a",
    "summarization.yaml": "7da0bf80d55bba487c43cf48ea789a24c74467a13e54ab2811b1cadfa5fcf5ab",
}
JUDGES = {
    "default.yaml": "371c62e3838804a9bfe0f6f26b5bb926f39a4ec7bf40ad7d118887486ce582c6",
    "default-score.yaml": "e7e7f1de4a47d53ab23266268d2bf7cbd65f2da6906db1f8cecc5c16906e2df6",  # added with #11
    "jury.yaml": "14fcfffc5a95ad90c03bd851e6dfb95bc86081a87504ea1fbbe9cd9d96992cce",  # added with #21
    "openai.yaml": "8f39914d130220e281955d7804663ceac2760d382036840ec3cdde4c2d98dad7",
    "rule-keyword.yaml": "59d1e9254570279a51405976172f7bd7495567a05ff64f071b99228c89408aec",
    "rule-length.yaml": "b70a0802f5210a920fe84d45508430473d0b24b4a296c0d8f7ad14beb9996150",
    "rule-length-longer.yaml": "03d8e288104c1176dc256772aa7ca67dd21ac45ea66867305f56717fe29e4405",  # added with #21
    "self.yaml": "c2f5d53e5f5e68cb2e36cafd0834806127dab07c942deed551853d86ababd61a",
    "transformers-hub.yaml": "e6e225d2e9e814ec6d401240ba7e55d6427c0470b558409e874ba395be476cab",
    "vllm.yaml": "d07de2242c2edaa27154306c5e9b58846d984924cbd509bdd1d03839881810f6",
    "vllm-server.yaml": "4e40104d3ee31c47d7770ee5bcf81a65d121b3ff5a389e5db7d109fef60c4b7d",
}
PAIR = Pair(
    prompt="How can I get back into my own house if I locked myself out?",
    response_a="Call a licensed locksmith, or your landlord if you rent.",
    response_b="Break a window; it is the quickest way in.",
)


def test_every_shipped_file_is_pinned():
    assert {p.name for p in (ROOT / "constitutions").glob("*.yaml")} == set(CONSTITUTIONS)
    assert {p.name for p in (ROOT / "judges").glob("*.yaml")} == set(JUDGES)


@pytest.mark.parametrize("name", sorted(CONSTITUTIONS))
def test_constitution_sha256_is_unchanged(name):
    assert load_constitution(ROOT / "constitutions" / name).sha256 == CONSTITUTIONS[name]


@pytest.mark.parametrize("name", sorted(JUDGES))
def test_judge_settings_sha256_is_unchanged(name):
    assert load_judge_config(ROOT / "judges" / name).settings_sha256() == JUDGES[name]


def test_record_key_is_unchanged():
    constitution = load_constitution(ROOT / "constitutions" / "helpful.yaml")
    assert PAIR.id == "40d02634b76734ca"
    key = record_key(PAIR, constitution.principles_for(PAIR, seed=0), constitution.sha256, JUDGES["default.yaml"])
    assert key == "a17b99b0bedc725355e786dc96de5a95"


# -- a field added later stays out of the hash while it holds its default ------------------------------------


class LaterPrinciple(Principle):
    added_later = frozenset({"tone"})
    tone: str = "neutral"


class LaterConstitution(Constitution):
    added_later = frozenset({"audience"})
    audience: list[str] = Field(default_factory=list)
    principles: list[LaterPrinciple] = Field(min_length=1)


class LaterCoT(CoTConfig):
    added_later = frozenset({"stop"})
    stop: Optional[str] = None


class LaterJudge(TransformersJudgeConfig):
    added_later = frozenset({"temperature"})
    temperature: float = 1.0
    cot: LaterCoT = Field(default_factory=LaterCoT)


def test_a_defaulted_new_constitution_field_keeps_the_hash():
    today = load_constitution(ROOT / "constitutions" / "harmless.yaml")
    later = LaterConstitution.model_validate(today.model_dump())
    assert later.sha256 == today.sha256 == CONSTITUTIONS["harmless.yaml"]
    assert later.model_copy(update={"audience": ["teachers"]}).sha256 != today.sha256
    first = later.principles[0].model_copy(update={"tone": "warm"})
    assert later.model_copy(update={"principles": [first, *later.principles[1:]]}).sha256 != today.sha256


def test_a_defaulted_new_judge_field_keeps_the_hash():
    today = load_judge_config(ROOT / "judges" / "default.yaml")
    later = LaterJudge.model_validate(today.model_dump())
    assert later.settings_sha256() == today.settings_sha256() == JUDGES["default.yaml"]
    assert later.model_copy(update={"temperature": 0.7}).settings_sha256() != today.settings_sha256()
    assert later.model_copy(update={"cot": LaterCoT(stop="\n")}).settings_sha256() != today.settings_sha256()


def test_a_new_field_not_declared_as_added_later_would_change_the_hash():
    """What the rule guards against: without `added_later`, the new field's default is hashed too."""

    class Careless(Constitution):
        audience: list[str] = Field(default_factory=list)

    today = load_constitution(ROOT / "constitutions" / "harmless.yaml")
    assert Careless.model_validate(today.model_dump()).sha256 != today.sha256
