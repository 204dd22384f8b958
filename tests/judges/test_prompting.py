"""The judge prompt, assembled in one place (rlaif/judges/prompting.py): the queries of a pair, whose instructions
win, and the rendered text of every shipped constitution's prompts pinned byte for byte — the prompt is in no hash,
so a changed word would change verdicts while resumed label folders carried on as if nothing had happened."""

from __future__ import annotations

import hashlib

import pytest

from rlaif.cli.constitution import sample_prompt
from rlaif.config.judge import PythonJudgeConfig
from rlaif.constitution import load_constitution
from rlaif.judges.prompting import DEFAULT_INSTRUCTIONS, pair_queries, render_prefix_user
from rlaif.judges.registry import load_judge
from rlaif.records import Pair
from tests.helpers import ROOT

# sha256 of every principle's sample prompt (`rlaif constitution show FILE --principle ID`), joined by newlines
SAMPLE_PROMPTS = {
    "harmless.yaml": "20a3b0c78332b4ff9a5ac373881ff014927720976a2f77ffbdaf82c811021b86",
    "helpful.yaml": "03ace0295d24bb0978dd0b6b2ccebac8f7a5b3d2849ca180bb0f1f7be28e0260",
    "summarization.yaml": "0567d8e40a4f48205595c304241628899814842f49c14f4614c6acedc95cee3b",
}
PAIR = Pair(
    prompt=[
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Tell me a joke"},
    ],
    response_a="Why did the chicken cross the road?",
    response_b="No.",
    conversational=True,
)


@pytest.mark.parametrize("name", sorted(SAMPLE_PROMPTS))
def test_the_shipped_prompts_are_unchanged(name):
    path = ROOT / "constitutions" / name
    text = "\n".join(sample_prompt(path, None, p.id) for p in load_constitution(path).principles)
    assert hashlib.sha256(text.encode()).hexdigest() == SAMPLE_PROMPTS[name]


def test_pair_queries_are_both_orders_of_each_principle_with_one_prefix():
    c = load_constitution(ROOT / "constitutions" / "helpful.yaml")
    principles = c.principles[:2]
    qs = pair_queries(PAIR, principles, c)
    assert [(q.principle_id, q.first) for q in qs] == [
        (principles[0].id, PAIR.response_a),
        (principles[0].id, PAIR.response_b),
        (principles[1].id, PAIR.response_a),
        (principles[1].id, PAIR.response_b),
    ]
    assert all(q.second != q.first and q.prompt == PAIR.prompt for q in qs)
    assert [q.principle_text for q in qs[::2]] == [p.text for p in principles]
    assert {q.prefix_user for q in qs} == {
        render_prefix_user(PAIR.prompt, c.instructions, c.few_shot, {p.id: p.text for p in c.principles})
    }
    assert qs[0].prefix_user.endswith("Conversation:\nUser: Hi\n\nAssistant: Hello\n\nUser: Tell me a joke\n\n")


@pytest.mark.parametrize(
    "constitution_says,judge_says,expected",
    [
        (None, None, DEFAULT_INSTRUCTIONS),
        ("Compare summaries.", None, "Compare summaries."),
        ("Compare summaries.", "Be strict.", "Be strict."),
        (None, "Be strict.", "Be strict."),
    ],
)
def test_the_judge_configs_instructions_win(constitution_says, judge_says, expected):
    c = load_constitution(ROOT / "constitutions" / "helpful.yaml").model_copy(
        update={"instructions": constitution_says, "few_shot": []}
    )
    judge = load_judge(PythonJudgeConfig(function="rlaif.rules:prefer_shorter", instructions=judge_says))
    (q, _) = judge.queries(PAIR, c.principles[:1], c)
    assert q.prefix_user.startswith(expected + "\n\n")
    assert q == pair_queries(PAIR, c.principles[:1], c, judge_says)[0]
