"""Tests for rlaif.data: every input format and row shape, seeded ordering, errors with lines, streaming."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rlaif.data.formats import DataError, count_pairs, detect_format
from rlaif.data.pairs import read_pairs
from rlaif.records import sha256_json
from tests.helpers import HH_HARMLESS_TEST as REAL_HH


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def write_jsonl(path: Path, rows, gz: bool = False) -> Path:
    """Rows are dicts (dumped) or raw strings (written as they are, to make malformed lines)."""
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def columns(rows) -> list[dict]:
    """Rows with every key of any row, null where a row lacks it: how a table stores mixed rows."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [{k: r.get(k) for k in keys} for r in rows]


def write_parquet(path: Path, rows) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(columns(rows)), path)
    return path


def write_hf(path: Path, rows, split: str | None = None) -> Path:
    import datasets

    ds = datasets.Dataset.from_list(columns(rows))
    (datasets.DatasetDict({split: ds}) if split else ds).save_to_disk(str(path))
    return path


def chosen_first(pair) -> tuple[str, str]:
    """(chosen, rejected) of a pair read from a chosen/rejected row, undoing its seeded order."""
    assert pair.human_label in ("a", "b")
    return (pair.response_a, pair.response_b) if pair.human_label == "a" else (pair.response_b, pair.response_a)


AB_ROWS = [
    {
        "id": "p1",
        "prompt": "What is 2+2?",
        "response_a": "4",
        "response_b": "5",
        "human_label": "a",
        "principle": "honest",
    },
    {"prompt": "Say hi", "response_a": "hi", "response_b": "hello"},
]

HH_ROW = {
    "chosen": "\n\nHuman: Hi there \n\nAssistant:  Hello! How can I help?\n\nHuman: Tell me a joke.\n\n"
    "Assistant:  Why did the chicken cross the road? ",
    "rejected": "\n\nHuman: Hi there \n\nAssistant:  Hello! How can I help?\n\nHuman: Tell me a joke.\n\n"
    "Assistant: No.",
}
HH_PROMPT = [user("Hi there"), assistant("Hello! How can I help?"), user("Tell me a joke.")]


# ---------------------------------------------------------------------------------------------- row shapes


def test_prompt_response_rows(tmp_path):
    path = write_jsonl(tmp_path / "ab.jsonl", [AB_ROWS[0], "", "   ", AB_ROWS[1]])
    pairs = list(read_pairs(path))
    assert len(pairs) == 2
    p1, p2 = pairs
    assert (p1.id, p1.prompt, p1.response_a, p1.response_b) == ("p1", "What is 2+2?", "4", "5")
    assert (p1.human_label, p1.principle, p1.conversational, p1.source_line, p1.invalid) == (
        "a",
        "honest",
        False,
        1,
        None,
    )
    # no id: derived from the content; blank lines skipped but still counted as lines
    assert p2.id == sha256_json(["Say hi", "hi", "hello"])[:16]
    assert (p2.human_label, p2.principle, p2.source_line) == (None, None, 4)


def test_chat_message_rows(tmp_path):
    prompt = [{"role": "system", "content": "Be brief."}, user("Capital of France?")]
    rows = [
        {"id": "m1", "prompt": prompt, "response_a": "Paris", "response_b": [assistant("Lyon")], "human_label": "tie"}
    ]
    (pair,) = read_pairs(write_jsonl(tmp_path / "chat.jsonl", rows))
    assert pair.prompt == prompt
    assert (pair.response_a, pair.response_b, pair.human_label, pair.conversational) == ("Paris", "Lyon", "tie", True)


def test_trl_standard_rows(tmp_path):
    rows = [{"prompt": "The sky is", "chosen": " blue.", "rejected": " green."}]
    (pair,) = read_pairs(write_jsonl(tmp_path / "trl.jsonl", rows))
    assert pair.prompt == "The sky is"
    assert chosen_first(pair) == (" blue.", " green.")
    assert pair.conversational is False
    assert pair.id == sha256_json(["The sky is", " blue.", " green."])[:16]


def test_trl_conversational_explicit_prompt(tmp_path):
    prompt = [user("What color is the sky?")]
    rows = [{"id": "c1", "prompt": prompt, "chosen": [assistant("Blue.")], "rejected": [assistant("Green.")]}]
    (pair,) = read_pairs(write_jsonl(tmp_path / "trlc.jsonl", rows))
    assert pair.prompt == prompt
    assert chosen_first(pair) == ("Blue.", "Green.")
    assert (pair.id, pair.conversational) == ("c1", True)


def test_trl_conversational_implicit_prompt(tmp_path):
    convo = [user("Hi"), assistant("Hello."), user("What color is the sky?")]
    rows = [{"chosen": convo + [assistant("Blue.")], "rejected": convo + [assistant("Green.")]}]
    (pair,) = read_pairs(write_jsonl(tmp_path / "implicit.jsonl", rows))
    assert pair.prompt == convo
    assert chosen_first(pair) == ("Blue.", "Green.")
    assert pair.conversational is True
    assert pair.id == sha256_json([convo, "Blue.", "Green."])[:16]


def test_trl_completion_that_repeats_the_prompt(tmp_path):
    # UltraFeedback-binarized style: a text prompt, and chosen/rejected holding the user turn again
    rows = [
        {
            "prompt": "Sky color?",
            "chosen": [user("Sky color?"), assistant("Blue.")],
            "rejected": [user("Sky color?"), assistant("Green.")],
        }
    ]
    (pair,) = read_pairs(write_jsonl(tmp_path / "uf.jsonl", rows))
    assert pair.prompt == [user("Sky color?")]
    assert chosen_first(pair) == ("Blue.", "Green.")


def test_hh_transcript_rows(tmp_path):
    (pair,) = read_pairs(write_jsonl(tmp_path / "hh.jsonl", [HH_ROW]))
    assert pair.prompt == HH_PROMPT
    assert chosen_first(pair) == ("Why did the chicken cross the road?", "No.")
    assert pair.conversational is False  # it came as text
    assert pair.id == sha256_json([HH_PROMPT, "Why did the chicken cross the road?", "No."])[:16]


def test_row_id_is_kept_and_integer_ids_become_strings(tmp_path):
    rows = [dict(HH_ROW, id=7)]
    (pair,) = read_pairs(write_jsonl(tmp_path / "hh.jsonl", rows))
    assert pair.id == "7"


# ---------------------------------------------------------------------------------------------- formats

MIXED_ROWS = [AB_ROWS[0], AB_ROWS[1], dict(HH_ROW, prompt=None)]  # a null prompt is an absent prompt


def _summary(pairs):
    return [(p.id, p.prompt, p.response_a, p.response_b, p.human_label, p.principle, p.source_line) for p in pairs]


@pytest.fixture
def reference(tmp_path):
    return _summary(read_pairs(write_jsonl(tmp_path / "ref.jsonl", MIXED_ROWS)))


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("rows.jsonl.gz", "jsonl"),
        ("rows.json.gz", "jsonl"),
        ("rows.ndjson", "jsonl"),
        ("lines.json", "jsonl"),
    ],
)
def test_jsonl_variants(tmp_path, reference, name, fmt):
    path = write_jsonl(tmp_path / name, MIXED_ROWS, gz=name.endswith(".gz"))
    assert detect_format(path) == fmt
    assert _summary(read_pairs(path)) == reference
    assert count_pairs(path) == 3


def test_json_list(tmp_path, reference):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(MIXED_ROWS, indent=2))
    assert detect_format(path) == "json"
    assert _summary(read_pairs(path)) == reference
    assert count_pairs(path) == 3


def test_parquet(tmp_path, reference):
    # the table holds nulls where a row lacks a key: the reader must treat them as absent
    path = write_parquet(tmp_path / "rows.parquet", MIXED_ROWS)
    assert detect_format(path) == "parquet"
    assert _summary(read_pairs(path)) == reference
    assert count_pairs(path) == 3
    # the format is also recognised by content, and can be named
    other = tmp_path / "rows.bin"
    other.write_bytes(path.read_bytes())
    assert detect_format(other) == "parquet"
    assert _summary(read_pairs(other, format="parquet")) == reference


def test_parquet_conversational(tmp_path):
    convo = [user("Hi"), assistant("Hello."), user("Sky?")]
    rows = [{"prompt": convo, "chosen": [assistant("Blue.")], "rejected": [assistant("Green.")]}]
    (pair,) = read_pairs(write_parquet(tmp_path / "c.parquet", rows))
    assert (pair.prompt, chosen_first(pair), pair.conversational) == (convo, ("Blue.", "Green."), True)


def test_hf_dataset(tmp_path, reference):
    path = write_hf(tmp_path / "ds", MIXED_ROWS)
    assert detect_format(path) == "hf_dataset"
    assert _summary(read_pairs(path)) == reference
    assert count_pairs(path) == 3


def test_hf_dataset_dict_with_one_split(tmp_path, reference):
    path = write_hf(tmp_path / "dd", MIXED_ROWS, split="test")
    assert detect_format(path) == "hf_dataset"
    assert _summary(read_pairs(path)) == reference
    assert _summary(read_pairs(path / "test")) == reference


def test_hf_dataset_dict_with_several_splits_says_which(tmp_path):
    import datasets

    ds = datasets.Dataset.from_list(AB_ROWS)
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match="splits train, test; pass the directory of one"):
        read_pairs(tmp_path / "dd")  # a problem with the whole file shows at the call


def test_format_problems(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_pairs(tmp_path / "missing.jsonl")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="save_to_disk"):
        detect_format(tmp_path / "plain")
    odd = tmp_path / "rows.txt"
    odd.write_text("hello\n")
    with pytest.raises(DataError, match="format="):
        detect_format(odd)
    with pytest.raises(DataError, match="unknown format 'csv'"):
        read_pairs(write_jsonl(tmp_path / "x.jsonl", AB_ROWS), format="csv")


# ---------------------------------------------------------------------------------------------- seeded order


def test_swapping_is_seeded_and_ids_do_not_depend_on_it(tmp_path):
    rows = [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(200)]
    path = write_jsonl(tmp_path / "pref.jsonl", rows)
    run0 = list(read_pairs(path, seed=0))
    again = list(read_pairs(path, seed=0))
    run1 = list(read_pairs(path, seed=1))
    assert _summary(run0) == _summary(again)
    assert [p.id for p in run0] == [p.id for p in run1]
    labels0 = [p.human_label for p in run0]
    assert 70 <= labels0.count("b") <= 130  # about half swapped
    assert labels0 != [p.human_label for p in run1]
    for pair, row in zip(run0 + run1, rows + rows):
        assert chosen_first(pair) == (row["chosen"], row["rejected"])


def test_order_follows_the_documented_rule(tmp_path):
    import random

    path = write_jsonl(tmp_path / "pref.jsonl", [{"id": "x", "prompt": "q", "chosen": "c", "rejected": "r"}])
    for seed in range(10):
        (pair,) = read_pairs(path, seed=seed)
        swapped = random.Random(f"{seed}:x").random() < 0.5
        assert (pair.response_a, pair.human_label) == (("r", "b") if swapped else ("c", "a"))


def test_ids_stable_across_formats_and_seeds_for_hh(tmp_path):
    a = next(read_pairs(write_jsonl(tmp_path / "hh.jsonl", [HH_ROW]), seed=3))
    b = next(read_pairs(write_parquet(tmp_path / "hh.parquet", [HH_ROW]), seed=4))
    assert a.id == b.id


# ---------------------------------------------------------------------------------------------- errors

GOOD = {"prompt": "p", "response_a": "a", "response_b": "b"}
ERROR_CASES = {
    "malformed json": ('{"prompt": "p", "response_a": ', "malformed JSON"),
    "not an object": ('["p", "a", "b"]', "must be a JSON object, not a list"),
    "missing one": ({"prompt": "p", "response_a": "a"}, "missing field: response_b"),
    "missing all": ({"text": "p"}, "missing fields: prompt, response_a, response_b"),
    "missing rejected": ({"prompt": "p", "chosen": "c"}, "missing field: rejected"),
    "prompt type": ({"prompt": 3, "response_a": "a", "response_b": "b"}, "prompt must be a string"),
    "response type": ({"prompt": "p", "response_a": {"x": 1}, "response_b": "b"}, "response_a must be a string"),
    "bad message": ({"prompt": [{"content": "hi"}], "response_a": "a", "response_b": "b"}, "prompt[0] must be"),
    "multi-message response": (
        {"prompt": "p", "response_a": [user("u"), assistant("a")], "response_b": "b"},
        "single assistant message",
    ),
    "empty response": ({"prompt": "p", "response_a": "", "response_b": "b"}, "response_a is empty"),
    "blank response": ({"prompt": "p", "response_a": "a", "response_b": " \n\t"}, "response_b is empty"),
    "empty chosen": ({"prompt": "p", "chosen": "  ", "rejected": "r"}, "chosen is empty"),
    "empty hh turn": (
        {"chosen": "\n\nHuman: hi\n\nAssistant: ", "rejected": "\n\nHuman: hi\n\nAssistant: x"},
        "chosen is empty",
    ),
    "hh not shared": (
        {"chosen": "\n\nHuman: hi\n\nAssistant: a", "rejected": "\n\nHuman: bye\n\nAssistant: b"},
        "chosen and rejected do not share a conversation",
    ),
    "not a transcript": ({"chosen": "a", "rejected": "b"}, "not an HH transcript"),
    "messages not shared": (
        {"chosen": [user("x"), assistant("a")], "rejected": [user("y"), assistant("b")]},
        "do not share a conversation",
    ),
    "mixed chosen types": (
        {"prompt": "p", "chosen": [assistant("a")], "rejected": "b"},
        "must both be strings or both message lists",
    ),
    "ends with user": (
        {"prompt": "p", "chosen": [user("a")], "rejected": [assistant("b")]},
        "must end with an assistant message",
    ),
    "bad label": ({"prompt": "p", "response_a": "a", "response_b": "b", "human_label": "A"}, "human_label"),
    "bad principle": ({"prompt": "p", "response_a": "a", "response_b": "b", "principle": 1}, "principle must"),
    "bad id": ({"id": [1], "prompt": "p", "response_a": "a", "response_b": "b"}, "id must be"),
    "both shapes": ({"prompt": "p", "response_a": "a", "response_b": "b", "chosen": "c"}, "both"),
    "too long": ({"prompt": "p" * 5, "response_a": "a" * 5, "response_b": "b" * 5}, "over max_chars=12"),
    "duplicate id": (
        {"id": "dup", "prompt": "p2", "response_a": "a", "response_b": "b"},
        "duplicate id 'dup' (first on line 1)",
    ),
    "duplicate content": ({"prompt": "p", "response_a": "a", "response_b": "b"}, "duplicate id"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_errors_name_file_and_line(tmp_path, case):
    bad, expected = ERROR_CASES[case]
    first = dict(GOOD, id="dup") if case == "duplicate id" else GOOD
    path = write_jsonl(tmp_path / "input.jsonl", [first, "", bad, GOOD])  # bad row on physical line 3
    with pytest.raises(DataError) as info:
        list(read_pairs(path, max_chars=12))
    err = info.value
    assert str(err).startswith(f"{path}:3: ")
    assert "input.jsonl" in str(err)
    assert expected in str(err)
    assert (err.path, err.line) == (str(path), 3)
    assert str(err) == f"{err.path}:{err.line}: {err.message}"


def test_errors_in_other_formats_give_row_numbers(tmp_path):
    rows = [GOOD, {"prompt": "p", "response_a": "a", "response_b": " "}]
    json_path = tmp_path / "rows.json"
    json_path.write_text(json.dumps(rows, indent=2))
    for path in (json_path, write_parquet(tmp_path / "rows.parquet", rows), write_hf(tmp_path / "ds", rows)):
        with pytest.raises(DataError, match=r":2: response_b is empty") as info:
            list(read_pairs(path))
        assert path.name in str(info.value)


def test_malformed_json_list_names_the_physical_line(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('[\n{"prompt": "p", "response_a": "a", "response_b": "b"},\n{"prompt": ]\n')
    with pytest.raises(DataError, match=r"rows.json:3: malformed JSON"):
        list(read_pairs(path))


def test_json_that_is_not_a_list(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text('{"a": 1}')
    with pytest.raises(DataError, match="list of rows"):
        list(read_pairs(path, format="json"))


def test_truncated_gzip(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl.gz", [dict(GOOD, id=str(i)) for i in range(2000)], gz=True)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DataError, match="rows.jsonl.gz:"):
        list(read_pairs(path))


def test_skip_invalid_yields_marked_pairs_and_goes_on(tmp_path):
    rows = [
        dict(GOOD, id="ok1"),
        "{not json",
        {"id": "bad1", "prompt": "p", "response_a": "a", "response_b": ""},
        dict(HH_ROW, rejected="\n\nHuman: other\n\nAssistant: no"),
        dict(GOOD, id="ok1", prompt="again"),
        {"prompt": "q", "response_a": "a2", "response_b": "b2"},
    ]
    pairs = list(read_pairs(write_jsonl(tmp_path / "mixed.jsonl", rows), skip_invalid=True))
    assert [p.source_line for p in pairs] == [1, 2, 3, 4, 5, 6]
    assert [p.invalid is None for p in pairs] == [True, False, False, False, False, True]
    bad_json, empty, hh, dup = pairs[1:5]
    assert (bad_json.id, bad_json.prompt, bad_json.response_a) == ("rlaif:line-2", "", "")
    assert bad_json.invalid.startswith("malformed JSON") and "mixed.jsonl" not in bad_json.invalid
    assert (empty.id, empty.prompt, empty.response_a, empty.invalid) == ("bad1", "p", "a", "response_b is empty")
    assert (hh.id, hh.invalid) == ("rlaif:line-4", "chosen and rejected do not share a conversation")
    assert hh.prompt == HH_PROMPT  # what could be read is kept
    # a duplicate gets its own id, so the failed record cannot be mistaken for the first one
    assert (dup.id, dup.prompt) == ("rlaif:line-5", "again")
    assert dup.invalid == "duplicate id 'ok1' (first on line 1)"


def test_an_unusable_row_repeating_an_id_gets_its_own_id(tmp_path):
    """Found by the fuzz test: an unusable row whose id is already taken (or taken later by a usable row) must not
    put a second record under that id."""
    rows = [
        dict(GOOD, id="p0"),
        {"id": "p0", "prompt": "q", "response_a": "a", "response_b": None},
        {"id": "p1", "prompt": "q", "response_a": "a", "response_b": ""},
        dict(GOOD, id="p1"),
    ]
    pairs = list(read_pairs(write_jsonl(tmp_path / "rows.jsonl", rows), skip_invalid=True))
    assert [p.id for p in pairs] == ["p0", "rlaif:line-2", "p1", "rlaif:line-4"]
    assert pairs[3].invalid == "duplicate id 'p1' (first on line 3)"


def test_line_separators_inside_strings_stay_on_one_line(tmp_path):
    """Found by the fuzz test: U+0085 / U+2028 / U+2029 are legal in JSON strings, but str.splitlines() breaks a
    line there; every label-file writer escapes them, so each record is one line for every reader."""
    from rlaif.data.labels import read_labels
    from rlaif.files import write_jsonl as write_labels
    from rlaif.jobs.store import LabelStore

    record = {
        "id": "x",
        "status": "failed",
        "prompt": "a\u0085b\u2028c\u2029d",
        "response_a": "\u2028",
        "response_b": "\u0085",
    }
    write_labels([record, {**record, "id": "y"}], tmp_path / "a.jsonl")
    store = LabelStore(tmp_path / "b.jsonl")
    store.open()
    store.append([record])
    for f in ("a.jsonl", "b.jsonl"):
        text = (tmp_path / f).read_text(encoding="utf-8")
        assert [json.loads(line)["prompt"] for line in text.splitlines()] == [record["prompt"]] * text.count("\n")
    assert list(read_labels(tmp_path / "a.jsonl")) == [record, {**record, "id": "y"}]


def test_skip_invalid_does_not_hide_file_problems(tmp_path):
    with pytest.raises(DataError):
        list(read_pairs(tmp_path / "missing.jsonl", skip_invalid=True))


# ---------------------------------------------------------------------------------------------- streaming


def test_reading_is_lazy_and_row_by_row(tmp_path):
    # only the first line is valid: if the reader parsed ahead, taking the first pair would fail
    path = write_jsonl(tmp_path / "big.jsonl", [GOOD] + ["{broken"] * 50_000)
    pairs = read_pairs(path)
    first = next(pairs)
    assert (first.response_a, first.source_line) == ("a", 1)
    with pytest.raises(DataError, match="big.jsonl:2: malformed JSON"):
        next(pairs)
    # nothing is read until the first pair is asked for
    bad_first = write_jsonl(tmp_path / "bad.jsonl", ["{broken"])
    lazy = read_pairs(bad_first)
    with pytest.raises(DataError, match=":1:"):
        next(lazy)


def test_gzip_and_parquet_stream_too(tmp_path):
    gz = write_jsonl(tmp_path / "big.jsonl.gz", [GOOD] + ["{broken"] * 50_000, gz=True)
    assert next(read_pairs(gz)).source_line == 1
    rows = [dict(GOOD, id=str(i)) for i in range(3000)]
    pq_pairs = read_pairs(write_parquet(tmp_path / "big.parquet", rows))
    assert [next(pq_pairs).id for _ in range(3)] == ["0", "1", "2"]


def test_count_pairs_skips_blank_lines(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [GOOD, "", "{broken", "  "])
    assert count_pairs(path) == 2


# ---------------------------------------------------------------------------------------------- real data


@pytest.mark.skipif(not REAL_HH.exists(), reason=f"shared HH-RLHF test file not present at {REAL_HH}")
def test_real_hh_harmless_file():
    pairs = read_pairs(REAL_HH)
    first50 = [next(pairs) for _ in range(50)]
    for pair in first50:
        assert pair.invalid is None
        assert isinstance(pair.prompt, list) and pair.prompt
        assert pair.prompt[-1]["role"] == "user" and pair.prompt[-1]["content"]
        assert all(m["role"] in ("user", "assistant") for m in pair.prompt)
        assert pair.response_a.strip() and pair.response_b.strip()
        assert pair.human_label in ("a", "b")
        assert pair.conversational is False
    assert len({p.id for p in first50}) == 50
    assert count_pairs(REAL_HH) == 2312


def test_failure_reasons_are_whole_one_line_and_bounded():
    from rlaif.jobs.run import REASON_CHARS, TOP_REASONS, count_reason, top_reasons

    reasons: dict[str, int] = {}
    count_reason(reasons, "HTTP 401 from http://h/v1: bad key\nsecond line")
    count_reason(reasons, "x" * 1000)
    count_reason(reasons, None)
    assert list(reasons) == [
        "HTTP 401 from http://h/v1: bad key second line",
        "x" * (REASON_CHARS - 1) + "…",
        "unknown",
    ]
    for i in range(TOP_REASONS + 5):
        count_reason(reasons, f"reason {i}")
    count_reason(reasons, None)
    top = top_reasons(reasons)
    assert next(iter(top)) == "unknown" and len(top) == TOP_REASONS + 1
    assert sum(top.values()) == sum(reasons.values()) and top["(8 other reasons)"] == 8


def test_json_nested_past_the_recursion_limit_is_a_bad_row_naming_its_line(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    row = json.dumps({"id": "ok", "prompt": "q", "response_a": "x", "response_b": "y"})
    data = tmp_path / "deep.jsonl"
    data.write_text(f"{row}\n{deep}\n")
    with pytest.raises(DataError, match=rf"^{data}:2: JSON nested too deeply to read"):
        list(read_pairs(data))
    pairs = list(read_pairs(data, skip_invalid=True))  # an unreadable row like any other: recorded as failed
    assert [p.id for p in pairs] == ["ok", "rlaif:line-2"] and pairs[1].invalid.startswith("JSON nested too deeply")
    listed = tmp_path / "deep.json"
    listed.write_text(f"[{row}, {deep}]")
    with pytest.raises(DataError, match=rf"^{listed}: JSON nested too deeply to read"):
        list(read_pairs(listed))
    from rlaif.data.labels import read_labels

    labels = tmp_path / "labels.jsonl"
    labels.write_text(deep + "\n")
    with pytest.raises(ValueError, match=rf"^{labels}:1: corrupt label record: JSON nested too deeply"):
        list(read_labels(labels))
