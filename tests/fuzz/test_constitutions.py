"""Fuzz: constitution files, valid and broken, through `rlaif constitution check` and `rlaif label` (see
tests/fuzz/helpers.py for what every run must end in)."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.helpers import (
    DAMAGE,
    anything,
    as_yaml,
    assert_clean_end,
    assert_store_valid,
    cli,
    damaged,
    fuzz_settings,
)
from tests.helpers import ROOT

pytestmark = pytest.mark.filterwarnings("ignore")  # libraries warn per run: hundreds of runs bury the summary

ids = st.from_regex(r"[A-Za-z0-9_.\-]{1,8}", fullmatch=True)
usual_weights = st.one_of(
    st.floats(min_value=0.01, max_value=100), st.integers(1, 10), st.just("heavy"), st.sampled_from([0, -1, -0.5, None])
)
extreme_weights = st.sampled_from([math.inf, -math.inf, math.nan, 1e308, 10**400, 5e-324])
principle = st.fixed_dictionaries(
    {"id": ids, "text": st.text(min_size=1, max_size=30)},
    optional={
        "weight": st.floats(min_value=0.01, max_value=100),
        "invert": st.booleans(),
        "critique": st.text(min_size=1, max_size=10),
    },
)
example = st.fixed_dictionaries(
    {
        "prompt": st.text(min_size=1, max_size=10),
        "response_a": st.text(max_size=8),
        "response_b": st.text(min_size=1, max_size=8),
        "preferred": st.sampled_from(["a", "b"]),
    }
)
valid_constitution = st.fixed_dictionaries(
    {
        "name": st.text(min_size=1, max_size=10),
        "version": st.sampled_from(["1", "2.0", "v3"]),
        "principles": st.lists(principle, min_size=1, max_size=4, unique_by=lambda p: p["id"]),
    },
    optional={
        "sampling": st.sampled_from(["one_per_pair", "all"]),
        "tie_margin": st.floats(0, 0.5),
        "description": st.text(max_size=20),
        "few_shot": st.lists(example, max_size=2),
        "instructions": st.text(min_size=1, max_size=20),
    },
)
# what a user gets wrong: a field of the wrong type, a misspelt or unknown key, a missing field, a repeated or
# reserved principle id, a weight that is no weight
MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["top", "principle", "unknown", "drop", "dup_id", "reserved_id", "weight", "sampling"]),
        st.sampled_from(
            ["name", "version", "principles", "sampling", "tie_margin", "few_shot", "id", "text", "weight", "invert"]
        ),
        anything,
    ),
    max_size=2,
)


def mutated(spec: dict, mutations, weights) -> dict:
    spec = json.loads(json.dumps(spec))
    for kind, name, value in mutations:
        listed = spec.get("principles") if isinstance(spec.get("principles"), list) else []
        first = listed[0] if listed and isinstance(listed[0], dict) else {}  # an earlier mutation may have broken it
        if kind == "top":
            spec[name] = value
        elif kind == "principle":
            first[name] = value
        elif kind == "unknown":
            spec["principels" if name == "principles" else "wieght"] = value
        elif kind == "drop":
            spec.pop(name, None)
        elif kind == "dup_id":
            listed.append(dict(first))
        elif kind == "reserved_id":
            first["id"] = "all"
        elif kind == "sampling":
            spec["sampling"] = first["id"] if name == "id" else "sometimes"
        else:
            first["weight"] = weights
    return spec


PAIRS = [
    {"id": f"p{i}", "prompt": f"question {i}", "response_a": "a" * (i + 1), "response_b": "b" * (3 - i)}
    for i in range(3)
]


def write_pairs(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def check_constitution(spec, damage: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        f = tmp / "constitution.yaml"
        f.write_bytes(damaged(as_yaml(spec), damage))
        checked = cli("constitution", "check", f)
        assert_clean_end(checked)
        if checked.exit_code == 2:  # every problem is named at the file (FILE:LINE or FILE: cannot read)
            assert all(line.startswith(str(f)) for line in checked.stderr.splitlines() if line.strip())
        out = tmp / "labels"
        labelled = cli(
            "label",
            "--pairs",
            write_pairs(tmp / "pairs.jsonl", PAIRS),
            "--constitution",
            f,
            "--judge",
            ROOT / "judges/rule-length.yaml",
            "--out",
            out,
            "--quiet",
        )
        assert_clean_end(labelled, allowed=(0, 3, 4))
        if checked.exit_code == 2:  # a constitution `check` refuses, `label` refuses too, naming the file
            assert labelled.exit_code == 2 and str(f) in labelled.stderr, labelled.stderr
        else:  # and one `check` passes labels well-formed pairs
            assert labelled.exit_code != 2, labelled.stderr
        assert_store_valid(out)


@fuzz_settings(150)
@given(spec=valid_constitution, mutations=MUTATIONS, weight=usual_weights, damage=DAMAGE)
def test_fuzz_constitutions_through_check_and_label(spec, mutations, weight, damage):
    check_constitution(mutated(spec, mutations, weight), damage)


@fuzz_settings(40, shrink=False)
@given(spec=valid_constitution, weight=extreme_weights, sampling=st.sampled_from(["all", "one_per_pair"]))
def test_fuzz_constitution_weights_that_are_not_numbers_a_mean_can_use(spec, weight, sampling):
    spec = {**spec, "sampling": sampling}
    spec["principles"][0]["weight"] = weight
    check_constitution(spec, "none")
