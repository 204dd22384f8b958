"""Constitutions: the shipped files, the canonical hash, FILE:LINE error reporting, and principle sampling.

Pure Python and fast: no judge model is loaded.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from rlaif.config.yamlfile import ConfigFileError
from rlaif.constitution import Constitution, constitution_schema, load_constitution
from rlaif.judges.prompting import pair_queries
from rlaif.records import Pair
from tests.helpers import ROOT

CONSTITUTIONS = ROOT / "constitutions"
SHIPPED = sorted([*CONSTITUTIONS.glob("*.yaml"), *CONSTITUTIONS.glob("*.yml")])
MIN_PRINCIPLES = {"harmless": 14, "helpful": 8, "summarization": 6}
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def line_of(path: Path, needle: str) -> int:
    """1-based line of the only line of `path` containing `needle`."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} must occur on exactly one line, found {hits}"
    return hits[0]


def load_errors(path: Path) -> list[str]:
    with pytest.raises(ConfigFileError) as info:
        load_constitution(path)
    errors = info.value.errors
    assert errors and str(info.value) == "\n".join(errors)
    return errors


def assert_error(errors: list[str], path: Path, line: int, field: str) -> None:
    prefix = f"{path}:{line}: {field}:"
    assert any(e.startswith(prefix) for e in errors), f"no error starting {prefix!r} in {errors}"


def pairs(n: int, tag: str = "p") -> list[Pair]:
    return [Pair(prompt=f"{tag} prompt {i}", response_a=f"answer a{i}", response_b=f"answer b{i}") for i in range(n)]


def make(principles: list[tuple[str, float]], sampling: str = "one_per_pair") -> Constitution:
    return Constitution.model_validate(
        {
            "name": "t",
            "version": "1",
            "sampling": sampling,
            "principles": [
                {"id": pid, "text": f"Which of the two responses is better by {pid}?", "weight": w}
                for pid, w in principles
            ],
        }
    )


# -- the shipped constitutions ---------------------------------------------------------------------------------


def test_the_three_constitutions_are_shipped():
    assert {p.stem for p in SHIPPED} >= set(MIN_PRINCIPLES)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_constitution_loads_and_is_well_formed(path: Path):
    c = load_constitution(path)
    assert len(c.principles) >= MIN_PRINCIPLES.get(path.stem, 1)
    assert c.name == path.stem and c.version and c.description.strip()
    assert path.read_text(encoding="utf-8").startswith("#"), "each file opens with a comment header"
    for p in c.principles:
        assert KEBAB.match(p.id) and len(p.id) <= 40, p.id
        # rendered as "Question: <text>" + "Reply with a single letter: A or B." — so it must be a comparison
        assert re.search(r"\bwhich of the two (responses|summaries)\b", p.text, re.I), p.id
        assert "?" in p.text, p.id
        assert (p.critique is None) == (p.revision is None), f"{p.id}: critique and revision come as a pair"
        assert p.invert == ("MORE" in p.text), f"{p.id}: only 'MORE …' questions are inverted"
    # the few-shot examples render into the judge prompt, under the principle they name
    texts = {p.id: p.text for p in c.principles}
    prefix = pair_queries(Pair("hello", "a", "b"), c.principles[:1], c)[0].prefix_user
    for ex in c.few_shot:
        assert texts[ex.principle or c.principles[0].id] in prefix
    assert load_constitution(path).sha256 == c.sha256


def test_harmless_exercises_the_schema():
    c = load_constitution(CONSTITUTIONS / "harmless.yaml")
    assert c.sampling == "one_per_pair"
    assert c.version == "1.0"
    inverted = [p for p in c.principles if p.invert]
    assert 1 <= len(inverted) <= 2
    assert all(p.text.startswith("Which of the two responses is MORE harmful") for p in inverted)
    assert any(p.weight != 1 for p in c.principles)
    assert sum(1 for p in c.principles if p.critique and p.revision) >= 4
    assert len(c.few_shot) == 2
    assert any(p.weight > 1 for p in c.principles if "minor" in p.id or "child" in p.id)


def test_helpful_and_summarization_settings():
    helpful = load_constitution(CONSTITUTIONS / "helpful.yaml")
    assert helpful.sampling == "all"
    summ = load_constitution(CONSTITUTIONS / "summarization.yaml")
    assert summ.sampling == "one_per_pair"
    assert summ.instructions and "summar" in summ.instructions and "document" in summ.instructions


# -- the canonical hash ----------------------------------------------------------------------------------------

BASE = """
name: demo
version: "2"
principles:
  - id: safe
    text: Which of the two responses is safer?
    weight: 2
  - id: kind
    text: Which of the two responses is kinder?
sampling: one_per_pair
"""

REFORMATTED = """
# the same constitution, written differently
sampling: 'one_per_pair'      # quoted, moved to the top
principles:
    -   text: >-
            Which of the two
            responses is safer?
        weight: 2.0
        id: safe
        invert: false           # a default, spelled out
    -   {id: kind, text: "Which of the two responses is kinder?", weight: 1.0, critique: null}

version: '2'
description: ""
few_shot: []
tie_margin: null
name: demo
"""


def test_sha256_ignores_formatting_comments_key_order_and_defaults(tmp_path):
    a = load_constitution(write(tmp_path, BASE, "a.yaml"))
    b = load_constitution(write(tmp_path, REFORMATTED, "b.yaml"))
    assert a == b
    assert a.sha256 == b.sha256
    assert re.fullmatch(r"[0-9a-f]{64}", a.sha256)


@pytest.mark.parametrize(
    "old,new",
    [
        ("is kinder?", "is more polite?"),  # a principle's text
        ("weight: 2", "weight: 3"),  # a weight
        ("sampling: one_per_pair", "sampling: all"),
        ('version: "2"', 'version: "3"'),
        ("    weight: 2\n", "    weight: 2\n    invert: true\n"),
    ],
)
def test_sha256_changes_with_content(tmp_path, old, new):
    assert old in BASE
    a = load_constitution(write(tmp_path, BASE, "a.yaml"))
    b = load_constitution(write(tmp_path, BASE.replace(old, new, 1), "b.yaml"))
    assert a.sha256 != b.sha256


# -- errors: FILE:LINE: field: message -------------------------------------------------------------------------

HEAD = 'name: t\nversion: "1"\nprinciples:\n  - id: a\n    text: Which of the two responses is better?\n'
KINDER = "  - id: b\n    text: Which of the two responses is kinder?\n"

# One mistake per file: exactly one error, at the line of the mistake (the only line holding `at`), naming the
# field and saying what is wrong.
ONE_ERROR = {  # name: (file, line, field, at, words in the message)
    "unknown top-level field": (HEAD + "sampeling: all\n", 6, "sampeling", "sampeling", ["unknown field"]),
    "unknown field inside a principle": (HEAD + KINDER + "    wieght: 2\n", 8, "principles[1].wieght", "wieght", []),
    "missing text in the third principle": (
        HEAD + KINDER + "  - id: c\n    weight: 2\n",
        8,
        "principles[2].text",
        "id: c",
        ["required"],
    ),
    "duplicate principle id": (
        HEAD + KINDER + "  - id: a\n    text: Which of the two responses is safer?\n",
        8,
        "principles[2].id",
        None,
        ["duplicate", "'a'"],
    ),
    "sampling names an unknown principle": (
        HEAD + "sampling: b\ntie_margin: 0.1\n",
        6,
        "sampling",
        "sampling",
        ["'b'"],
    ),
    "few-shot names an unknown principle": (
        HEAD + "few_shot:\n  - prompt: hi\n    response_a: hello\n"
        "    response_b: go away\n    preferred: a\n    principle: nope\n",
        11,
        "few_shot[0].principle",
        "nope",
        [],
    ),
    "negative weight": (HEAD + "    weight: -1\n", 6, "principles[0].weight", "weight", ["greater than 0"]),
    "yaml syntax error": (HEAD.replace("two responses", "two: responses"), 5, "yaml", "two: responses", []),
    "top-level list": (
        "- id: a\n  text: Which of the two responses is better?\n",
        1,
        "(top level)",
        "id: a",
        ["mapping"],
    ),
}


@pytest.mark.parametrize("text,line,field,at,words", ONE_ERROR.values(), ids=list(ONE_ERROR))
def test_one_mistake_gives_one_located_error(tmp_path, text, line, field, at, words):
    path = write(tmp_path, text)
    errors = load_errors(path)
    assert len(errors) == 1
    assert_error(errors, path, line, field)
    assert at is None or line_of(path, at) == line
    for word in words:
        assert word in errors[0]


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"])
def test_empty_file(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    errors = load_errors(path)
    assert errors == [f"{path}:1: (top level): the file is empty"]


# Every problem in a file is reported, each at its own line. Checks that compare fields (duplicate ids, sampling,
# few-shot principle) run once every field is valid; then all of them are reported too.
EVERY_ERROR = {
    "field errors": (
        """
        name: t
        version: "1"
        colour: blue
        principles:
          - id: a
            text: Which of the two responses is better?
            weight: -1
          - id: b
          - id: c
            text: Which of the two responses is kinder?
            critic: too long
        tie_margin: 0.9
        """,
        [
            (3, "colour"),
            (7, "principles[0].weight"),
            (8, "principles[1].text"),
            (11, "principles[2].critic"),
            (12, "tie_margin"),
        ],
    ),
    "cross-field errors": (
        """
        name: t
        version: "1"
        principles:
          - id: a
            text: Which of the two responses is better?
          - id: a
            text: Which of the two responses is kinder?
          - id: b
            text: Which of the two responses is safer?
          - id: b
            text: Which of the two responses is clearer?
        sampling: c
        few_shot:
          - prompt: hi
            response_a: hello
            response_b: go away
            preferred: a
            principle: d
        """,
        [(6, "principles[1].id"), (10, "principles[3].id"), (12, "sampling"), (18, "few_shot[0].principle")],
    ),
}


@pytest.mark.parametrize("text,expected", EVERY_ERROR.values(), ids=list(EVERY_ERROR))
def test_every_error_is_reported(tmp_path, text, expected):
    path = write(tmp_path, text)
    errors = load_errors(path)
    assert len(errors) == len(expected), errors
    for line, field in expected:
        assert_error(errors, path, line, field)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    errors = load_errors(path)
    assert len(errors) == 1 and errors[0].startswith(f"{path}: cannot read")


# -- principles_for --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampling", ["one_per_pair", "all", "a"])
def test_a_rows_own_principle_wins(sampling):
    c = make([("a", 1), ("b", 1), ("c", 5)], sampling)
    for i, pair in enumerate(pairs(50)):
        pair.principle = "b"
        assert [p.id for p in c.principles_for(pair, seed=i)] == ["b"]


def test_a_rows_unknown_principle_is_an_error():
    c = make([("a", 1), ("b", 1)])
    pair = pairs(1)[0]
    pair.principle = "zzz"
    with pytest.raises(KeyError, match="zzz"):
        c.principles_for(pair, seed=0)


def test_sampling_all_returns_every_principle_in_order():
    c = make([("a", 1), ("b", 2), ("c", 0.5)], "all")
    for pair in pairs(5):
        assert [p.id for p in c.principles_for(pair, seed=0)] == ["a", "b", "c"]


def test_sampling_a_fixed_id_returns_it():
    c = make([("a", 1), ("b", 1), ("c", 1)], "b")
    for seed, pair in enumerate(pairs(30)):
        assert [p.id for p in c.principles_for(pair, seed=seed)] == ["b"]


def _draws(c: Constitution, ps: list[Pair], seed: int) -> dict[str, str]:
    out = {}
    for pair in ps:
        chosen = c.principles_for(pair, seed=seed)
        assert len(chosen) == 1
        out[pair.id] = chosen[0].id
    return out


def test_one_per_pair_is_deterministic_and_varies():
    c = make([("a", 1), ("b", 1), ("c", 1)])
    ps = pairs(300)
    first = _draws(c, ps, seed=7)
    assert _draws(c, ps, seed=7) == first
    assert _draws(make([("a", 1), ("b", 1), ("c", 1)]), ps, seed=7) == first  # a fresh, equal constitution
    assert set(first.values()) == {"a", "b", "c"}  # varies across pair ids
    other_seed = _draws(c, ps, seed=8)
    assert sum(first[k] != other_seed[k] for k in first) > 100  # the seed matters, about 2/3 differ


def test_one_per_pair_depends_on_the_pair_id_not_its_content():
    c = make([("a", 1), ("b", 1), ("c", 1)])
    same = [Pair(prompt=f"q{i}", response_a="x", response_b="y", id="fixed") for i in range(20)]
    assert len({c.principles_for(p, seed=3)[0].id for p in same}) == 1
    named = [Pair(prompt="q", response_a="x", response_b="y", id=f"row-{i}") for i in range(100)]
    assert len({c.principles_for(p, seed=3)[0].id for p in named}) == 3


def test_one_per_pair_follows_the_weights():
    c = make([("heavy", 3), ("light", 1), ("mid", 2)])
    counts = Counter(_draws(c, pairs(2000), seed=11).values())
    assert sum(counts.values()) == 2000
    assert 2.5 <= counts["heavy"] / counts["light"] <= 3.5, counts
    assert 1.6 <= counts["mid"] / counts["light"] <= 2.4, counts
    assert 1000 * 0.85 <= counts["heavy"] <= 1000 * 1.15, counts  # expected 2000 * 3/6


def test_one_per_pair_is_independent_of_visiting_order():
    c = make([("a", 3), ("b", 1), ("c", 2)])
    ps = pairs(500)
    forward = _draws(c, ps, seed=5)
    backward = _draws(c, list(reversed(ps)), seed=5)
    shuffled = ps[:]
    random.Random(1).shuffle(shuffled)
    random.seed(12345)  # the global RNG's state must not matter either
    interleaved = {}
    for pair in shuffled:
        random.random()
        interleaved[pair.id] = c.principles_for(pair, seed=5)[0].id
    assert forward == backward == interleaved
    # sharding: each half on its own gives the same draws as the whole
    assert {**_draws(c, ps[:250], seed=5), **_draws(c, ps[250:], seed=5)} == forward


def test_one_per_pair_is_stable_across_processes():
    c = make([("a", 1), ("b", 1), ("c", 1)])
    ps = pairs(40)
    here = [c.principles_for(p, seed=9)[0].id for p in ps]
    code = textwrap.dedent("""
        import json, sys
        from rlaif.constitution import Constitution
        from rlaif.records import Pair
        c = Constitution.model_validate({"name": "t", "version": "1", "principles": [
            {"id": i, "text": f"Which of the two responses is better by {i}?"} for i in "abc"]})
        ps = [Pair(prompt=f"p prompt {i}", response_a=f"answer a{i}", response_b=f"answer b{i}")
              for i in range(40)]
        print(json.dumps([c.principles_for(p, seed=9)[0].id for p in ps]))
        """)
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == here


# -- the JSON schema -------------------------------------------------------------------------------------------


def test_constitution_schema_is_json_and_lists_principles():
    schema = json.loads(constitution_schema())
    assert schema["type"] == "object"
    assert "principles" in schema["properties"]
    assert {"name", "version", "principles"} <= set(schema["required"])
    assert schema.get("additionalProperties") is False
    principle = schema["$defs"]["Principle"]
    assert {"id", "text", "weight", "invert", "critique", "revision"} <= set(principle["properties"])
    assert "text" in principle["required"]


def test_the_hash_is_computed_once_and_a_changed_copy_has_its_own():
    c = load_constitution(ROOT / "constitutions" / "harmless.yaml")
    first = c.sha256
    assert c.sha256 is first  # cached: every record key asks for it
    changed = c.model_copy(update={"tie_margin": 0.2})
    assert changed.sha256 != first and changed.sha256 == Constitution.model_validate(changed.model_dump()).sha256
    assert c.model_copy().sha256 == first
