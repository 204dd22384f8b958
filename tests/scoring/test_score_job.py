"""The score job end to end with rule-based score judges (python backend): one record per response, ids from
pairs and from `rlaif generate`'s samples, one principle per prompt, shards by prompt, exit codes, T kept out of
the job, the pairwise view every label reader gets, and a real SIGKILL mid-job then a resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from rlaif.config.judge import PythonJudgeConfig
from rlaif.data.labels import read_labels
from rlaif.judges.registry import build_judge
from rlaif.scoring.job import score
from tests.helpers import ROOT, kill_when, rlaif_command, run_to_end

CONSTITUTION = """name: polite
version: '1'
principles:
  - id: polite
    text: Which is more polite?
  - id: rude
    text: Which is ruder?
    invert: true
  - id: kind
    text: Which is kinder?
    score_text: How kind is the response?
"""


def _files(tmp_path: Path, n: int = 6, function: str = "score_polite", extra: str = "") -> dict:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"id": f"k{i}", "prompt": f"q{i}", "response_a": f"please {i}", "response_b": f"no {i}"}) + "\n"
            for i in range(n)
        )
    )
    const = tmp_path / "polite.yaml"
    const.write_text(CONSTITUTION)
    judge = tmp_path / "judge.yaml"
    judge.write_text(f"backend: python\nmode: score\nfunction: tests.judge_fns:{function}\n{extra}")
    return {"pairs": pairs, "constitution": const, "judge": judge, "out": tmp_path / "out"}


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]


def test_one_record_per_response_with_provenance(tmp_path):
    f = _files(tmp_path)
    result = score(f["pairs"], f["constitution"], f["judge"], f["out"], progress=False)
    recs = _records(f["out"])
    assert sorted(r["id"] for r in recs) == sorted(f"k{i}:{s}" for i in range(6) for s in "ab")
    assert result.stats["ok"] == 12 and result.stats["prompts"] == 6
    for r in recs:
        assert r["judge"]["mode"] == "score" and r["source"] == "ai" and r["constitution_sha256"]
        assert r["judge"]["settings_sha256"] and r["principle_id"] in ("polite", "rude", "kind")
        # a rule that rates 'please' 8 and the rest 3, read backwards under the inverted principle
        polite = r["response"].startswith("please")
        expected = (8 if polite else 3) if r["principle_id"] != "rude" else (3 if polite else 8)
        assert r["score"] == expected and r["invert"] == (r["principle_id"] == "rude")
        assert r["reward"] == pytest.approx((2 * (8 - 1) / 9 - 1) * (1 if polite else -1))
    by_pair = {}
    for r in recs:
        by_pair.setdefault(r["pair_id"], set()).add(r["principle_id"])
    assert all(len(ps) == 1 for ps in by_pair.values())  # both sides of a prompt: one principle
    labels = {r["id"]: r for r in read_labels(f["out"])}  # the pairwise view: 'please' always preferred
    assert set(labels) == {f"k{i}" for i in range(6)}
    assert all(r["label"] == "a" and r["judge"]["mode"] == "score" and len(r["scores"]) == 2 for r in labels.values())


def test_samples_of_rlaif_generate_are_rated_once(tmp_path):
    from rlaif.policy.generate import pair_rows
    from rlaif.policy.sampling import Sample

    texts = ["please a", "no b", "please c", "no d"]
    rows, _ = pair_rows(["hello"], [[Sample("hello", [], [], t, True) for t in texts]])
    gen = tmp_path / "gen.jsonl"
    gen.write_text("".join(json.dumps(r) + "\n" for r in rows))
    f = _files(tmp_path)
    score(gen, f["constitution"], f["judge"], f["out"], progress=False)
    recs = _records(f["out"])
    assert len(rows) == 6 and len(recs) == 4  # 6 pairs of 4 samples: 4 responses
    assert sorted(r["sample"] for r in recs) == [0, 1, 2, 3] and len({r["prompt_id"] for r in recs}) == 1
    derived = {r["id"]: r for r in read_labels(f["out"])}
    assert set(derived) == {r["id"] for r in rows}  # the pair ids rlaif generate gave


def test_shards_split_by_prompt_and_cover_everything(tmp_path):
    f = _files(tmp_path, n=20)
    ids = []
    for i in range(3):
        score(f["pairs"], f["constitution"], f["judge"], tmp_path / f"s{i}", shard=(i, 3), progress=False)
        recs = _records(tmp_path / f"s{i}")
        pairs = {r["pair_id"] for r in recs}
        assert all(f"{p}:a" in {r["id"] for r in recs} and f"{p}:b" in {r["id"] for r in recs} for p in pairs)
        ids += [r["id"] for r in recs]
    assert sorted(ids) == sorted(f"k{i}:{s}" for i in range(20) for s in "ab")


def test_rlaif_score_merge_joins_the_shards(tmp_path, rlaif_cmd):
    f = _files(tmp_path, n=12)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for i in range(2):
        score(f["pairs"], f["constitution"], f["judge"], tmp_path / f"s{i}", shard=(i, 2), progress=False)
    done = subprocess.run(
        rlaif_cmd + ["score", "merge", tmp_path / "s0", tmp_path / "s1", "--out", tmp_path / "m"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    recs = _records(tmp_path / "m")
    assert sorted(r["id"] for r in recs) == sorted(f"k{i}:{s}" for i in range(12) for s in "ab")
    assert json.loads((tmp_path / "m" / "stats.json").read_text())["responses"] == 24
    assert len(list(read_labels(tmp_path / "m"))) == 12  # the merged folder reads as derived pairs
    again = subprocess.run(
        rlaif_cmd + ["score", "merge", tmp_path / "s0", tmp_path / "s0", "--out", tmp_path / "m2"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert again.returncode == 2 and "each once" in again.stderr


def test_temperature_is_no_part_of_the_job(tmp_path):
    f = _files(tmp_path)
    score(f["pairs"], f["constitution"], f["judge"], f["out"], progress=False)
    p_before = {r["id"]: r["p_a"] for r in read_labels(f["out"])}
    f["judge"].write_text(f["judge"].read_text() + "score: {temperature: 5.0}\n")
    again = score(f["pairs"], f["constitution"], f["judge"], f["out"], progress=False)
    assert again.done_now == 0 and again.skipped_done == 12  # nothing rated anew
    p_after = {r["id"]: r["p_a"] for r in read_labels(f["out"])}
    assert all(0.5 < p_after[k] < p_before[k] for k in p_before)  # a higher T: softer preferences


def test_a_pairwise_judge_and_a_score_judge_refuse_the_other_command(tmp_path, rlaif_cmd):
    f = _files(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        rlaif_cmd
        + [
            "score",
            "--pairs",
            f["pairs"],
            "--constitution",
            f["constitution"],
            "--judge",
            ROOT / "judges" / "rule-keyword.yaml",
            "--out",
            f["out"],
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2 and "mode: score" in done.stderr and "Traceback" not in done.stderr
    assert not f["out"].exists()
    done = subprocess.run(
        rlaif_cmd
        + [
            "label",
            "--pairs",
            f["pairs"],
            "--constitution",
            f["constitution"],
            "--judge",
            f["judge"],
            "--out",
            tmp_path / "labels",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2 and "rlaif score" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_judge_failures_are_failed_records_and_exit_4(tmp_path, rlaif_cmd):
    f = _files(tmp_path, function="score_broken")
    f["pairs"].write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"id": "x", "prompt": "q", "response_a": "boom", "response_b": "fine"},
                {"id": "y", "prompt": "q2", "response_a": "nan", "response_b": "eleven"},
            ]
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = rlaif_cmd + [
        "score",
        "--pairs",
        f["pairs"],
        "--constitution",
        f["constitution"],
        "--judge",
        f["judge"],
        "--out",
        f["out"],
        "--quiet",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 4, done.stderr
    recs = {r["id"]: r for r in _records(f["out"])}
    assert recs["x:b"]["status"] == "ok" and recs["x:b"]["score"] == 5
    for rid, why in (("x:a", "RuntimeError"), ("y:a", "not a score"), ("y:b", "not a score")):
        assert recs[rid]["status"] == "failed" and recs[rid]["score"] is None and why in recs[rid]["error"]
    assert subprocess.run(cmd + ["--allow-failed"], env=env, cwd=ROOT, timeout=120, capture_output=True).returncode == 0


def test_a_bad_row_names_file_and_line_and_keeps_what_was_done(tmp_path, rlaif_cmd):
    f = _files(tmp_path, n=3)
    with open(f["pairs"], "a") as fh:
        fh.write('{"id": "bad", "prompt": "q"}\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        rlaif_cmd
        + [
            "score",
            "--pairs",
            f["pairs"],
            "--constitution",
            f["constitution"],
            "--judge",
            f["judge"],
            "--out",
            f["out"],
            "--quiet",
            "--batch-size",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 2 and f"{f['pairs']}:4" in done.stderr and "Traceback" not in done.stderr
    assert len(_records(f["out"])) == 6  # the three good rows before it are kept


def test_a_distribution_from_the_function(tmp_path):
    f = _files(tmp_path, n=2, function="score_distribution")
    judge = build_judge(PythonJudgeConfig(function="tests.judge_fns:score_distribution", mode="score"))
    score(f["pairs"], f["constitution"], judge, f["out"], progress=False)
    recs = {r["id"]: r for r in _records(f["out"]) if r["principle_id"] != "rude"}
    for rid, r in recs.items():
        if rid.endswith(":a"):
            assert r["distribution"]["10"] == 0.5 and r["distribution"]["6"] == 0.5 and r["score"] == 8
        else:
            assert r["distribution"]["2"] == 1.0 and r["score"] == 2


def test_sampling_all_mixes_the_principles(tmp_path):
    f = _files(tmp_path, n=2)
    f["constitution"].write_text(CONSTITUTION + "sampling: all\n")
    score(f["pairs"], f["constitution"], f["judge"], f["out"], progress=False)
    r = next(r for r in _records(f["out"]) if r["id"] == "k0:a")
    assert r["principle_id"] == "all" and set(r["per_principle"]) == {"polite", "rude", "kind"}
    # 'please' rated 8 for polite and kind, 3 (as ruder: 8 backwards) for rude: every reward points the same way
    assert all(v == pytest.approx(7 / 4.5 - 1) for v in r["per_principle"].values())
    assert r["reward"] == pytest.approx(7 / 4.5 - 1)


def test_sigkill_then_resume_keeps_one_record_per_response(tmp_path):
    n = 40
    f = _files(tmp_path, n=n, function="slow_score_polite", extra="kwargs: {delay: 0.02}\n")
    cmd = rlaif_command(
        "score",
        "--pairs",
        f["pairs"],
        "--constitution",
        f["constitution"],
        "--judge",
        f["judge"],
        "--out",
        f["out"],
        "--batch-size",
        "3",
        "--quiet",
    )
    kill_when(cmd, f["out"] / "scores.jsonl", 20)
    killed = len(_records(f["out"]))
    assert 20 <= killed < 2 * n
    run_to_end(cmd)
    recs = _records(f["out"])
    ids = [r["id"] for r in recs]
    assert sorted(ids) == sorted(f"k{i}:{s}" for i in range(n) for s in "ab") and len(ids) == len(set(ids))
    stats = json.loads((f["out"] / "stats.json").read_text())
    assert stats["resumed_skipped"] >= killed - 3 and stats["scored_now"] <= 2 * n - killed + 3


def test_rate_in_process_needs_no_files():
    import rlaif
    from rlaif.config.judge import PythonJudgeConfig

    judge = rlaif.load_judge(PythonJudgeConfig(function="tests.judge_fns:score_polite", mode="score"))
    a, b = rlaif.rate(judge, "hi", ["please do", "no"])
    assert (a.score, b.score) == (8, 3) and a.reward == pytest.approx(5 / 9) and a.prompt_id == b.prompt_id
    assert a.id.endswith("#0") and b.id.endswith("#1") and a.status == b.status == "ok"


def test_a_score_folder_is_a_feedback_source_for_training(tmp_path):
    from rlaif.config.feedback import FeedbackConfig
    from rlaif.config.run import PairsConfig
    from rlaif.feedback.sources import load_feedback
    from rlaif.train.data import read_feedback

    f = _files(tmp_path, n=4)
    score(f["pairs"], f["constitution"], f["judge"], f["out"], progress=False)
    stats: dict = {}
    feedback = FeedbackConfig(source="ai", ai=str(f["out"]))
    records = list(load_feedback(feedback, stats))
    assert stats["ai_pairs"] == 4 and all(r["source"] == "ai" and r["label"] == "a" for r in records)
    data = read_feedback(feedback.root, PairsConfig(eval_fraction=0.0))
    assert len(data.train) == 4 and all(p.p_a == pytest.approx(1 / (1 + math.exp(-5))) for p in data.train)


def test_a_response_too_long_for_the_judge_is_bad_input_unless_skipped(tmp_path, tiny_model_dir):
    """Without skip_invalid the job keeps the rest and then reports the response as bad input (exit 2 from the
    CLI); with it the response is a failed record and the job goes on (what `rlaif loop` asks for)."""
    from rlaif.data.formats import DataError

    f = _files(tmp_path, n=3)
    rows = [json.loads(x) for x in f["pairs"].read_text().splitlines()]
    rows[1]["response_b"] = "no " * 400
    f["pairs"].write_text("".join(json.dumps(r) + "\n" for r in rows))
    f["judge"].write_text(f"backend: transformers\nmode: score\nmodel: {tiny_model_dir}\nmax_length: 600\n")
    with pytest.raises(DataError, match="too long for the judge.*--skip-invalid"):
        score(f["pairs"], f["constitution"], f["judge"], f["out"], progress=False)
    assert len(_records(f["out"])) == 5 and "k1:b" not in {r["id"] for r in _records(f["out"])}  # the rest kept
    result = score(f["pairs"], f["constitution"], f["judge"], tmp_path / "skipped", progress=False, skip_invalid=True)
    recs = {r["id"]: r for r in _records(tmp_path / "skipped")}
    assert recs["k1:b"]["status"] == "failed" and "too long" in recs["k1:b"]["error"]
    assert sum(r["status"] == "ok" for r in recs.values()) == 5 and result.stats["failed_judge"] == 0


def test_the_constitutions_tie_margin_decides_derived_ties(tmp_path):
    """Derived labels use the constitution's tie margin when it sets one, as pairwise labels and win rates do."""
    f = _files(tmp_path, n=2, function="score_distribution")
    f["constitution"].write_text(CONSTITUTION + "tie_margin: 0.45\n")
    score(f["pairs"], f["constitution"], f["judge"], f["out"], progress=False)
    labels = read_labels(f["out"])  # 8 against 2 points: p_a = σ(6) ≈ 0.998, beyond even a 0.45 margin
    assert labels and all(r["label"] in ("a", "b") for r in labels)
    f["constitution"].write_text(CONSTITUTION + "tie_margin: 0.5\n")
    score(f["pairs"], f["constitution"], f["judge"], tmp_path / "wide", progress=False)
    assert {r["label"] for r in read_labels(tmp_path / "wide")} == {"tie"}  # every |p_a − ½| ≤ 0.5


def test_skip_invalid_records_a_malformed_row_as_failed_input_and_resumes(tmp_path, rlaif_cmd):
    """An HH row whose chosen reply is empty: without --skip-invalid one FILE:LINE line and exit 2, keeping what was
    rated; with it, as `rlaif label` does, both its responses are failed input, the summary counts the row, a rerun
    rates nothing anew, and once the row is fixed its old records are retired."""
    f = _files(tmp_path, n=3)
    rows = f["pairs"].read_text().splitlines()
    hh = {"chosen": "\n\nHuman: hi\n\nAssistant:", "rejected": "\n\nHuman: hi\n\nAssistant: no"}
    f["pairs"].write_text("\n".join(rows[:2] + [json.dumps(hh)] + rows[2:]) + "\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["score", "--pairs", f["pairs"], "--constitution", f["constitution"], "--judge", f["judge"]]
    cmd = rlaif_cmd + args + ["--out", f["out"], "--batch-size", "2", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and done.stderr.strip() == f"error: {f['pairs']}:3: chosen is empty", done.stderr
    assert sorted(r["id"] for r in _records(f["out"])) == ["k0:a", "k0:b", "k1:a", "k1:b"]

    done = subprocess.run(cmd + ["--skip-invalid"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "rows skipped as invalid" in done.stdout and "0 / 2" in done.stdout  # in the judge / bad input
    recs = {r["id"]: r for r in _records(f["out"])}
    assert [recs[f"rlaif:line-3:{s}"]["error"] for s in "ab"] == ["invalid input: chosen is empty"] * 2
    assert all(recs[f"k{i}:{s}"]["status"] == "ok" for i in range(3) for s in "ab") and len(recs) == 8
    stats = json.loads((f["out"] / "stats.json").read_text())
    assert (stats["invalid_rows"], stats["failed_input"], stats["failed_judge"]) == (1, 2, 0)
    assert (stats["resumed_skipped"], stats["scored_now"]) == (4, 4)

    again = score(f["pairs"], f["constitution"], f["judge"], f["out"], progress=False, skip_invalid=True)
    assert (again.stats["resumed_skipped"], again.stats["scored_now"]) == (8, 0)  # failed input is not retried

    hh["chosen"] = "\n\nHuman: hi\n\nAssistant: please"
    f["pairs"].write_text("\n".join(rows[:2] + [json.dumps(hh)] + rows[2:]) + "\n")
    fixed = score(f["pairs"], f["constitution"], f["judge"], f["out"], progress=False, skip_invalid=True)
    recs = _records(f["out"])
    assert fixed.stats["scored_now"] == 2 and fixed.stats["invalid_rows"] == 0 and len(recs) == 8
    assert all(r["status"] == "ok" and not r["id"].startswith("rlaif:") for r in recs)
    superseded = (f["out"] / "superseded.jsonl").read_text()
    assert "rlaif:line-3:a" in superseded and "rlaif:line-3:b" in superseded
