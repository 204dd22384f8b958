"""`rlaif human import`: label files (JSONL, CSV) and data that carries a human choice (TRL, Anthropic HH) become
human label records whose pair ids and orders are the ones `rlaif label` gives the same file and seed."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rlaif.data.pairs import DataError, read_pairs
from rlaif.human.importer import import_labels, iter_human_labels
from rlaif.records import LabelRecord, human_record
from tests.helpers import HH_HARMLESS_TEST as HH
from tests.helpers import ROOT, run_cli, write_jsonl


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def hh_row(i: int) -> dict:
    talk = f"\n\nHuman: How do I deal with problem {i}?\n\nAssistant: Tell me more.\n\nHuman: It is urgent."
    return {
        "chosen": talk + f"\n\nAssistant: Calmly, step by step ({i}).",
        "rejected": talk + f"\n\nAssistant: Panic ({i}).",
    }


def check_human(record: dict, annotator: str = "imported") -> None:
    LabelRecord.model_validate(record)
    assert record["source"] == "human" and record["status"] == "ok" and record["annotator"] == annotator
    assert record["p_a"] == {"a": 1.0, "b": 0.0, "tie": 0.5}[record["label"]]
    assert record["created_at"]


@pytest.mark.parametrize("seed", [0, 1])
def test_hh_transcripts_keep_the_human_choice_in_the_pairs_seeded_order(tmp_path, seed):
    data = write_jsonl(tmp_path / "hh.jsonl", [hh_row(i) for i in range(12)])
    counts = import_labels(data, tmp_path / "human.jsonl", seed=seed)
    records = read_jsonl(tmp_path / "human.jsonl")
    pairs = list(read_pairs(data, seed=seed))
    assert counts["labels"] == 12 and counts["a"] + counts["b"] == 12 and 0 < counts["a"] < 12
    for r, pair in zip(records, pairs):
        check_human(r)
        assert (r["id"], r["response_a"], r["response_b"], r["prompt"]) == (
            pair.id,
            pair.response_a,
            pair.response_b,
            pair.prompt,
        )
        chosen = r["response_" + r["label"]]
        assert chosen.startswith("Calmly")  # the label points at the chosen response, whichever slot it is in
        assert r["prompt"][-1] == {"role": "user", "content": "It is urgent."}


@pytest.mark.skipif(not HH.exists(), reason=f"{HH} is not present")
def test_the_shared_hh_harmless_test_set_imports_whole(tmp_path):
    p = run_cli("human", "import", HH, "--out", tmp_path / "hh.jsonl")
    assert p.returncode == 2 and "hh-rlhf-harmless-test.jsonl.gz:87: chosen is empty" in p.stderr
    p = run_cli("human", "import", HH, "--out", tmp_path / "hh.jsonl", "--skip-invalid")
    assert p.returncode == 0, p.stderr
    counts = json.loads(p.stdout)
    records = read_jsonl(tmp_path / "hh.jsonl")
    pairs = list(read_pairs(HH, skip_invalid=True))
    bad = [pair for pair in pairs if pair.invalid]
    assert counts["labels"] == len(records) == len(pairs) - len(bad) > 2000
    assert counts["skipped_invalid"] == len(bad) and p.stderr.count("skipped ") == len(bad)
    assert f"skipped {HH}:87: chosen is empty" in p.stderr
    assert len({r["id"] for r in records}) == len(records)
    assert 0.4 < counts["a"] / counts["labels"] < 0.6  # the seeded order puts the chosen one on either side
    for r in records[:50]:
        check_human(r)


def test_trl_rows_get_the_ids_and_orders_rlaif_label_gives(tmp_path):
    rows = [
        {"prompt": f"question {i}", "chosen": f"please, answer {i}", "rejected": f"no answer {i}"} for i in range(6)
    ]
    rows += [
        {
            "prompt": [{"role": "user", "content": f"chat {i}"}],
            "chosen": [{"role": "assistant", "content": f"please, chat answer {i}"}],
            "rejected": [{"role": "assistant", "content": f"no chat answer {i}"}],
        }
        for i in range(4)
    ]
    rows.append({"id": "with-label", "prompt": "p", "response_a": "x", "response_b": "please y", "human_label": "b"})
    data = write_jsonl(tmp_path / "trl.jsonl", rows)
    p = run_cli("human", "import", data, "--out", tmp_path / "human.jsonl", "--seed", "3", "--annotator", "crowd")
    assert p.returncode == 0, p.stderr
    human = read_jsonl(tmp_path / "human.jsonl")
    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: python\nfunction: tests.judge_fns:prefers_polite\n")
    p = run_cli(
        "label",
        "--pairs",
        data,
        "--constitution",
        ROOT / "constitutions" / "helpful.yaml",
        "--judge",
        judge,
        "--out",
        tmp_path / "ai",
        "--seed",
        "3",
        "--quiet",
    )
    assert p.returncode == 0, p.stderr
    ai = {r["id"]: r for r in read_jsonl(tmp_path / "ai" / "labels.jsonl")}
    assert [r["id"] for r in human] == list(ai)
    assert {r["label"] for r in human} == {"a", "b"}
    for r in human:
        check_human(r, "crowd")
        a = ai[r["id"]]
        assert (r["prompt"], r["response_a"], r["response_b"]) == (a["prompt"], a["response_a"], a["response_b"])
        assert r["label"] == a["label"] == a["human_label"]  # the polite judge agrees with the human choice
        assert r["conversational"] == a["conversational"]


LABEL_ROWS = [
    {
        "id": "x1",
        "prompt": "Hi?",
        "response_a": "Hello!",
        "response_b": "Go away.",
        "label": "a",
        "annotator": "ann1",
        "p_a": 0.8,
    },
    {"prompt": "Hi?", "response_a": "Hello!", "response_b": "Go away.", "label": "b", "annotator": "ann2"},
    {"id": 7, "prompt": [{"role": "user", "content": "2+2?"}], "response_a": "5", "response_b": "4", "label": "tie"},
]


def test_label_files_in_jsonl_and_csv_import_alike(tmp_path):
    jsonl = write_jsonl(tmp_path / "labels.jsonl", LABEL_ROWS)
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["id", "prompt", "response_a", "response_b", "label", "annotator", "p_a"])
        w.writeheader()
        for row in LABEL_ROWS:
            w.writerow(
                {**row, "prompt": json.dumps(row["prompt"]) if isinstance(row["prompt"], list) else row["prompt"]}
            )
    from_jsonl = [r.to_json() for r in iter_human_labels(jsonl)]
    from_csv = [r.to_json() for r in iter_human_labels(tmp_path / "labels.csv")]
    for r in from_jsonl + from_csv:
        r.pop("created_at")
    assert from_jsonl == from_csv
    # ids: given ones kept (as strings); a missing one is the content hash `rlaif label` uses for the row
    assert [r["id"] for r in from_jsonl] == [p.id for p in read_pairs(jsonl)] == ["x1", from_jsonl[1]["id"], "7"]
    assert [(r["annotator"], r["label"], r["p_a"]) for r in from_jsonl] == [
        ("ann1", "a", 0.8),
        ("ann2", "b", 0.0),
        ("imported", "tie", 0.5),
    ]
    assert from_jsonl[2]["prompt"] == [{"role": "user", "content": "2+2?"}] and from_jsonl[2]["conversational"]


def test_exported_annotations_import_back_unchanged(tmp_path):
    exported = [
        human_record(
            pair_id="q1",
            prompt="p",
            response_a="x",
            response_b="y",
            label="b",
            annotator="bob",
            created_at="2026-01-02T03:04:05.000+00:00",
            shown_order="ba",
            principle_id="polite",
        ).to_json()
    ]
    f = write_jsonl(tmp_path / "export.jsonl", exported)
    assert [r.to_json() for r in iter_human_labels(f)] == exported


@pytest.mark.parametrize(
    "rows, line, message",
    [
        ([LABEL_ROWS[0], {**LABEL_ROWS[1], "label": "c"}], 2, "label: Input should be 'a', 'b' or 'tie'"),
        ([{**LABEL_ROWS[0], "p_a": 0.3}], 1, "p_a = 0.3 contradicts label 'a'"),
        ([{**LABEL_ROWS[0], "p_a": 1.5}], 1, "p_a: Input should be less than or equal to 1"),
        (
            [LABEL_ROWS[0], {**LABEL_ROWS[0], "label": "b", "p_a": None}],
            2,
            "a second label for pair 'x1' by 'ann1' (first on line 1)",
        ),
        (
            [LABEL_ROWS[0], {k: v for k, v in LABEL_ROWS[1].items() if k != "response_b"}],
            2,
            "response_b: Field required",
        ),
        ([{**LABEL_ROWS[2], "prompt": [{"content": "2+2?"}]}], 1, "prompt[0] must be a message with string 'role'"),
        (
            [{"prompt": "p", "chosen": "x", "rejected": "y"}, {"prompt": "p2", "response_a": "x", "response_b": "y"}],
            2,
            "row carries no human choice",
        ),
    ],
)
def test_bad_rows_are_reported_with_file_and_line(tmp_path, rows, line, message):
    data = write_jsonl(tmp_path / "labels.jsonl", rows)
    with pytest.raises(DataError) as e:
        import_labels(data, tmp_path / "out.jsonl")
    assert (e.value.path, e.value.line) == (str(data), line) and message in e.value.message, str(e.value)
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.jsonl.tmp").exists()


def test_skip_invalid_leaves_bad_rows_out_and_says_which(tmp_path):
    rows = [LABEL_ROWS[0], {**LABEL_ROWS[1], "label": "c"}, "not an object", LABEL_ROWS[2], LABEL_ROWS[0]]
    data = write_jsonl(tmp_path / "labels.jsonl", rows)
    counts = import_labels(data, tmp_path / "out.jsonl", skip_invalid=True)
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["x1", "7"]
    assert counts["labels"] == 2 and counts["skipped_invalid"] == 3
    assert [line.split(": ")[0] for line in counts["invalid"]] == [f"{data}:{n}" for n in (2, 3, 5)]


def test_cli_reports_bad_input_as_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,response_a,label\nq,x,a\n")
    p = run_cli("human", "import", bad, "--out", tmp_path / "out.jsonl")
    assert (
        p.returncode == 2
        and p.stderr.strip()
        == f"error: {bad}:1: CSV header lacks response_b (needs prompt, "
        "response_a, response_b, label; optional id, annotator, p_a)"
    )
    p = run_cli("human", "import", tmp_path / "missing.jsonl", "--out", tmp_path / "out.jsonl")
    assert p.returncode == 2 and "missing.jsonl: no such file" in p.stderr


def test_json_nested_past_the_recursion_limit_is_one_line_naming_the_file(tmp_path):
    deep = "[" * 100_000 + "]" * 100_000
    jsonl, json_list, table = tmp_path / "deep.jsonl", tmp_path / "deep.json", tmp_path / "deep.csv"
    jsonl.write_text(json.dumps(LABEL_ROWS[0]) + "\n" + deep + "\n")
    json_list.write_text(f"[{deep}]")
    table.write_text('prompt,response_a,response_b,label\n"' + "[" * 50_000 + "]" * 50_000 + '",x,y,a\n')
    too_deep = "JSON nested too deeply to read (about a thousand levels or more)"
    for path, where in ((jsonl, f"{jsonl}:2"), (json_list, f"{json_list}"), (table, f"{table}:2: prompt")):
        p = run_cli("human", "import", path, "--out", tmp_path / "out.jsonl")
        assert p.returncode == 2 and p.stderr.strip() == f"error: {where}: {too_deep}", p.stderr
    assert not (tmp_path / "out.jsonl").exists()
