"""Fuzz: pair rows of every shape through `rlaif label`, run twice (see tests/fuzz/helpers.py for what every run
must end in), and the families that once broke the one-record-per-id rule: unknown principles, pairs edited in
place, ids that collide under --skip-invalid."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.helpers import (
    anything,
    as_yaml,
    assert_clean_end,
    assert_store_valid,
    cli,
    fuzz_settings,
    mostly,
    numbers,
)
from tests.helpers import ROOT

pytestmark = pytest.mark.filterwarnings("ignore")  # libraries warn per run: hundreds of runs bury the summary

JUDGES = {
    "rule-length": ROOT / "judges/rule-length.yaml",
    "polite": "backend: python\nfunction: tests.judge_fns:prefers_polite\n",
    "broken": "backend: python\nfunction: tests.judge_fns:broken\n",
}  # fails on pairs saying "boom"
CONSTITUTIONS = {
    "one": {
        "name": "c",
        "version": "1",
        "principles": [
            {"id": "kind", "text": "Which is kinder?"},
            {"id": "short", "text": "Which is shorter?", "weight": 2},
        ],
    },
    "all": {
        "name": "c",
        "version": "1",
        "sampling": "all",
        "principles": [
            {"id": "kind", "text": "Which is kinder?", "weight": 0.5},
            {"id": "rude", "text": "Which is ruder?", "invert": True},
        ],
    },
}
messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": mostly(st.sampled_from(["user", "assistant", "system"]), st.just("robot")),
            "content": mostly(st.text(min_size=1, max_size=12), anything),
        }
    ),
    min_size=1,
    max_size=3,
)
responses = mostly(
    st.text(min_size=1, max_size=30).map(lambda t: t + "."),
    st.one_of(st.sampled_from(["please do", "boom", "", "  "]), anything),
)
rows = st.fixed_dictionaries(
    {
        "prompt": mostly(st.one_of(st.text(min_size=1, max_size=20), messages), anything),
        "response_a": responses,
        "response_b": responses,
    },
    optional={
        "principle": st.sampled_from(["kind", "short", "rude"]),
        "label": st.sampled_from(["a", "b", "tie", "x"]),
        "p_a": numbers,
        "note": anything,
    },
)
# lines that are not rows at all
BROKEN_LINES = [
    "not json",
    '{"prompt": "q", "response_a": "a"',
    "[1, 2]",
    "3",
    '{"prompt": "q", "response_a": NaN, "response_b": "b"}',
    "null",
    '"a string"',
    '{"prompt": "q", "response_a": "a", "response_b": "b", "id": {"nested": 1}}',
]
lines = st.one_of(
    rows.map(lambda r: ("row", r)),
    rows.map(lambda r: ("row", r)),
    rows.map(lambda r: ("row", r)),
    st.sampled_from(BROKEN_LINES).map(lambda line: ("raw", line)),
)
ID_STYLES = st.sampled_from(["str"] * 6 + ["none", "int", "empty"])


def pairs_bytes(items, id_styles, encoding: str) -> bytes:
    out = []
    for i, ((kind, value), style) in enumerate(zip(items, id_styles)):
        if kind == "raw":
            out.append(value)
            continue
        row = dict(value)
        ids = {"str": f"r{i}", "int": i, "empty": "", "repeat": f"r{max(i - 1, 0)}"}
        if style in ids:
            row["id"] = ids[style]
        out.append(json.dumps(row, ensure_ascii=False))
    text = "".join(line + "\n" for line in out)
    if encoding == "latin1-line":
        return text.encode() + b'{"prompt": "caf\xe9", "response_a": "a", "response_b": "b"}\n'
    if encoding == "truncated-gz":
        import gzip

        return gzip.compress(text.encode())[:-12]
    return text.encode("utf-8-sig" if encoding == "bom" else "utf-8")


def run_label(tmp: Path, data: bytes, gz: bool, judge: str, constitution: str, options: list[str]):
    pairs = tmp / ("pairs.jsonl.gz" if gz else "pairs.jsonl")
    pairs.write_bytes(data)
    judge_file = JUDGES[judge] if isinstance(JUDGES[judge], Path) else tmp / "judge.yaml"
    if judge_file == tmp / "judge.yaml":
        judge_file.write_text(JUDGES[judge])
    const = tmp / "constitution.yaml"
    const.write_text(as_yaml(CONSTITUTIONS[constitution]))
    return cli(
        "label",
        "--pairs",
        pairs,
        "--constitution",
        const,
        "--judge",
        judge_file,
        "--out",
        tmp / "out",
        "--quiet",
        *options,
    )


options = st.tuples(
    st.sampled_from([True, True, False]),
    st.one_of(st.none(), st.none(), st.integers(-3, 6)),
    st.sampled_from([100_000] * 4 + [12, 0, -1]),
    st.one_of(st.none(), st.integers(-1, 3)),
    st.sampled_from([None] * 8 + ["jsonl", "json", "parquet"]),
    st.integers(0, 3),
)


def label_options(skip_invalid, limit, max_chars, batch_size, fmt, seed) -> list[str]:
    out = ["--max-chars", str(max_chars), "--seed", str(seed)] + (["--skip-invalid"] if skip_invalid else [])
    out += [] if limit is None else ["--limit", str(limit)]
    out += [] if batch_size is None else ["--batch-size", str(batch_size)]
    return out + ([] if fmt is None else ["--format", fmt])


@fuzz_settings(200)
@given(
    items=st.lists(lines, min_size=1, max_size=6),
    id_styles=st.lists(ID_STYLES, min_size=6, max_size=6),
    encoding=st.sampled_from(["utf-8"] * 8 + ["bom", "latin1-line", "truncated-gz"]),
    judge=st.sampled_from(list(JUDGES)),
    constitution=st.sampled_from(list(CONSTITUTIONS)),
    opts=options,
    rerun=st.booleans(),
)
def test_fuzz_pair_rows_through_label(items, id_styles, encoding, judge, constitution, opts, rerun):
    """Rows of every shape (chat or text prompts, wrong types, empty responses, missing or repeated ids, lines that
    are not JSON), every judge outcome (ok, tie, judge failure) and the options; run again to resume."""
    items = [
        (k, {key: v for key, v in r.items() if key != "principle" or constitution == "one" or v != "short"})
        if k == "row"
        else (k, r)
        for k, r in items
    ]  # a row names a principle of its constitution
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = pairs_bytes(items, id_styles, encoding)
        for _ in range(2 if rerun else 1):
            result = run_label(tmp, data, encoding == "truncated-gz", judge, constitution, label_options(*opts))
            assert_clean_end(result, allowed=(0, 3, 4))
            assert_store_valid(tmp / "out")


# -- families that once broke the label store: each ends cleanly now, with one record per id -----------------------
valid_rows = st.fixed_dictionaries(
    {
        "prompt": st.text(min_size=1, max_size=20),
        "response_a": st.text(min_size=1, max_size=20).map(lambda t: t + "."),
        "response_b": st.text(min_size=1, max_size=20).map(lambda t: t + "!"),
    }
)


def label_twice(first: list[str], second: list[str], skip_invalid: bool) -> None:
    """Label `first` (JSONL lines), then `second` into the same folder: both runs end cleanly, the store stays
    strict JSON with one record per id."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        opts = ["--skip-invalid"] if skip_invalid else []
        for text in (first, second):
            result = run_label(tmp, "".join(line + "\n" for line in text).encode(), False, "rule-length", "one", opts)
            assert_clean_end(result, allowed=(0, 3, 4))
            assert_store_valid(tmp / "out")


@fuzz_settings(20, shrink=False)
@given(
    row=valid_rows,
    principle=st.text(min_size=1, max_size=8).filter(lambda p: p not in ("kind", "short")),
    skip_invalid=st.booleans(),
)
def test_fuzz_rows_naming_a_principle_the_constitution_lacks(row, principle, skip_invalid):
    label_twice([json.dumps({**row, "id": "p0", "principle": principle})], [], skip_invalid)


@fuzz_settings(20, shrink=False)
@given(rows_=st.lists(valid_rows, min_size=1, max_size=3), fix_invalid=st.booleans())
def test_fuzz_a_pair_changed_in_place_then_labelled_again(rows_, fix_invalid):
    before = [dict(r, id=f"p{i}") for i, r in enumerate(rows_)]
    after = [dict(r) for r in before]
    if fix_invalid:  # first run: the row is unusable and recorded as failed; then the user fixes it
        before[0]["response_b"] = ""
    else:
        after[0]["response_a"] += " (edited)"
    label_twice([json.dumps(r) for r in before], [json.dumps(r) for r in after], skip_invalid=True)


@fuzz_settings(20, shrink=False)
@given(rows_=st.lists(valid_rows, min_size=1, max_size=3), synthetic=st.booleans())
def test_fuzz_ids_that_collide_under_skip_invalid(rows_, synthetic):
    if synthetic:  # line 1 cannot be read, so it is recorded as `line-1`; a real row carries that id too
        text = ["not json"] + [json.dumps(dict(r, id="line-1" if i == 0 else f"p{i}")) for i, r in enumerate(rows_)]
    else:
        text = [json.dumps(dict(r, id=f"p{i}")) for i, r in enumerate(rows_)]
        text.append(json.dumps({"id": "p0", "prompt": "q", "response_a": "a", "response_b": None}))
    label_twice(text, text, skip_invalid=True)
