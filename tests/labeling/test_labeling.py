"""The labelling job end to end with a rule-based judge: records, provenance, resume, refusal of a changed
constitution, invalid input, shards and merge, export, and the budget stop."""

from __future__ import annotations

import json

import pytest

import rlaif
from rlaif.config.judge import PythonJudgeConfig
from rlaif.constitution import Constitution, Principle
from rlaif.judges.base import BudgetExhausted, Judge
from rlaif.judges.registry import load_judge
from rlaif.labeling.job import LabelJobError, label
from rlaif.records import Pair, Verdict

POLITE = PythonJudgeConfig(function="tests.judge_fns:prefers_polite", tie_margin=0.05)
CONST = Constitution(
    name="c",
    version="1",
    principles=[
        Principle(id="polite", text="Which response is more polite?"),
        Principle(id="rude", text="Which response is ruder?", invert=True, weight=2.0),
    ],
    sampling="one_per_pair",
)


def write_pairs(path, n, polite_first=True, extra=()):
    with open(path, "w") as f:
        for i in range(n):
            good, bad = f"Sure, please have a look at item {i}.", f"Go away {i}."
            row = {"id": f"p{i}", "prompt": f"question {i}", "chosen": good, "rejected": bad}
            f.write(json.dumps(row) + "\n")
        for row in extra:
            f.write(row + "\n")
    return path


def read_labels(out):
    return [json.loads(line) for line in open(out / "labels.jsonl")]


def test_records_carry_debiased_labels_and_provenance(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 20)
    result = label(pairs, CONST, POLITE, tmp_path / "out", progress=False)
    recs = read_labels(tmp_path / "out")
    assert len(recs) == 20 and result.stopped is None
    for r in recs:
        assert r["status"] == "ok" and r["source"] == "ai"
        assert r["constitution_sha256"] == CONST.sha256
        assert r["judge"] == {
            "backend": "python",
            "model": "tests.judge_fns:prefers_polite",
            "settings_sha256": POLITE.settings_sha256(),
        }
        assert r["principle_id"] in ("polite", "rude")
        # the polite response wins in both orders under either principle (the inverted one is flipped back)
        polite_is_a = "please" in r["response_a"]
        assert r["label"] == ("a" if polite_is_a else "b")
        assert r["label"] == r["human_label"]
        assert r["p_a_orders"] == pytest.approx([0.9, 0.9] if polite_is_a else [0.1, 0.1])
        assert r["position_consistent"] is True
    assert {r["principle_id"] for r in recs} == {"polite", "rude"}  # one drawn per pair, both occur
    assert sum("please" in r["response_a"] for r in recs) not in (0, 20)  # seeded shuffle of human-chosen rows
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["ok"] == 20 and stats["agreement_with_human"] == 1.0 and stats["position_consistency"] == 1.0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["constitution_sha256"] == CONST.sha256


def test_position_biased_judge_says_tie(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 6)
    cfg = PythonJudgeConfig(function="tests.judge_fns:first_slot", tie_margin=0.05)
    label(pairs, CONST.model_copy(update={"sampling": "polite"}), cfg, tmp_path / "out", progress=False)
    for r in read_labels(tmp_path / "out"):
        assert r["label"] == "tie" and r["p_a"] == pytest.approx(0.5)
        assert r["position_consistent"] is False and r["p_a_orders"] == pytest.approx([0.85, 0.15])


def test_sampling_all_keeps_each_principle(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 3)
    label(pairs, CONST.model_copy(update={"sampling": "all"}), POLITE, tmp_path / "out", progress=False)
    for r in read_labels(tmp_path / "out"):
        assert r["principle_id"] == "all" and set(r["per_principle"]) == {"polite", "rude"}
        assert r["p_a"] == pytest.approx((r["per_principle"]["polite"] * 1 + r["per_principle"]["rude"] * 2) / 3)


def test_resume_continues_without_duplicates(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 30)
    first = label(pairs, CONST, POLITE, tmp_path / "out", limit=12, progress=False)
    assert first.labelled_now == 12
    second = label(pairs, CONST, POLITE, tmp_path / "out", progress=False)
    assert second.labelled_now == 18 and second.skipped_done == 12
    ids = [r["id"] for r in read_labels(tmp_path / "out")]
    assert sorted(ids) == sorted(f"p{i}" for i in range(30))
    third = label(pairs, CONST, POLITE, tmp_path / "out", progress=False)
    assert third.labelled_now == 0 and len(read_labels(tmp_path / "out")) == 30


def test_partial_last_line_is_repaired_on_resume(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 5)
    label(pairs, CONST, POLITE, tmp_path / "out", progress=False)
    path = tmp_path / "out" / "labels.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # what a kill in the middle of a write leaves
    label(pairs, CONST, POLITE, tmp_path / "out", progress=False)
    recs = read_labels(tmp_path / "out")
    assert sorted(r["id"] for r in recs) == [f"p{i}" for i in range(5)]


def test_different_constitution_or_judge_is_refused(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 3)
    label(pairs, CONST, POLITE, tmp_path / "out", progress=False)
    changed = CONST.model_copy(
        update={"principles": [Principle(id="polite", text="Which is kinder?")], "sampling": "one_per_pair"}
    )
    with pytest.raises(LabelJobError, match="different constitution"):
        label(pairs, changed, POLITE, tmp_path / "out", progress=False)
    with pytest.raises(LabelJobError, match="different judge"):
        label(pairs, CONST, POLITE.model_copy(update={"tie_margin": 0.2}), tmp_path / "out", progress=False)
    # plumbing-only changes are not a different judge
    label(pairs, CONST, POLITE.model_copy(update={"price_per_1k_prompt_tokens": 1.0}), tmp_path / "out", progress=False)
    assert len(read_labels(tmp_path / "out")) == 3


def test_bad_input_names_file_and_line_and_keeps_work(tmp_path):
    from rlaif.data.pairs import DataError

    pairs = write_pairs(
        tmp_path / "pairs.jsonl",
        4,
        extra=[
            '{"prompt": "x", "response_a": "y"',
        ],
    )
    with pytest.raises(DataError) as e:
        label(pairs, CONST, POLITE, tmp_path / "out", batch_size=3, progress=False)
    assert "pairs.jsonl:5" in str(e.value)
    assert len(read_labels(tmp_path / "out")) == 4  # the pairs before the bad line were written and kept
    label(pairs, CONST, POLITE, tmp_path / "out2", skip_invalid=True, progress=False)
    recs = read_labels(tmp_path / "out2")
    assert len(recs) == 5
    bad = [r for r in recs if r["status"] == "failed"]
    assert len(bad) == 1 and bad[0]["label"] is None and bad[0]["p_a"] is None and "invalid input" in bad[0]["error"]


def test_failed_verdict_is_recorded_as_failed(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"prompt": "q", "response_a": "boom", "response_b": "fine"})
        + "\n"
        + json.dumps({"prompt": "q", "response_a": "ok", "response_b": "fine"})
        + "\n"
    )
    cfg = PythonJudgeConfig(function="tests.judge_fns:broken")
    label(pairs, CONST, cfg, tmp_path / "out", progress=False)
    recs = read_labels(tmp_path / "out")
    assert [r["status"] for r in recs] == ["failed", "ok"]
    assert "cannot judge" in recs[0]["error"] and recs[0]["label"] is None


def test_shards_are_disjoint_and_merge_complete(tmp_path):
    from rlaif.jobs.shards import merge_shards
    from rlaif.labeling.job import LabelJob

    def merge(dirs, out):
        return merge_shards(dirs, out, LabelJob())

    pairs = write_pairs(tmp_path / "pairs.jsonl", 25)
    for i in range(3):
        label(pairs, CONST, POLITE, tmp_path / f"s{i}", shard=(i, 3), progress=False)
    sizes = [len(read_labels(tmp_path / f"s{i}")) for i in range(3)]
    assert sum(sizes) == 25 and all(s > 0 for s in sizes)
    from rlaif.jobs.folder import read_spend, write_spend
    from rlaif.records import Spend

    for i in (0, 2):  # what shards 0 and 2 spent on an HTTP judge; shard 1 spent nothing (no spend.json)
        write_spend(tmp_path / f"s{i}", Spend(requests=10 + i, cost=0.25 * (i + 1)))
    stats = merge([tmp_path / f"s{i}" for i in range(3)], tmp_path / "merged")
    assert stats["pairs"] == 25
    assert read_spend(tmp_path / "merged") == Spend(requests=22, cost=1.0)  # the merged job carries what all spent
    with pytest.raises(ValueError, match="shards must be"):
        merge([tmp_path / "s0", tmp_path / "s1"], tmp_path / "m2")
    with pytest.raises(ValueError, match="different jobs"):
        label(pairs, CONST, POLITE, tmp_path / "other", shard=(2, 3), seed=5, progress=False)
        merge([tmp_path / "s0", tmp_path / "s1", tmp_path / "other"], tmp_path / "m3")


def test_export_trl_keeps_soft_label_and_skips_ties(tmp_path):
    from datasets import load_dataset

    from rlaif.feedback.export import export_trl

    pairs = write_pairs(
        tmp_path / "pairs.jsonl",
        6,
        extra=[json.dumps({"id": "neutral", "prompt": "q", "response_a": "one", "response_b": "two"})],
    )
    label(pairs, CONST.model_copy(update={"sampling": "polite"}), POLITE, tmp_path / "out", progress=False)
    counts = export_trl(tmp_path / "out", tmp_path / "train.jsonl")
    assert counts == {"written": 6, "skipped_tie": 1, "skipped_failed": 0}
    ds = load_dataset("json", data_files=str(tmp_path / "train.jsonl"), split="train")
    assert len(ds) == 6
    for row in ds:
        assert "please" in row["chosen"] and row["p_chosen"] == pytest.approx(0.9)


def test_judge_pairs_in_process():
    judge = load_judge(POLITE)
    recs = rlaif.judge_pairs(judge, [Pair("q", "please do", "no"), Pair("q", "no", "please do")])
    assert [r.label for r in recs] == ["a", "b"]
    assert recs[0].principle_id == "better"


def test_rlaif_score_warns_and_judges_as_judge_pairs():
    """The old name stays for one release: it warns, naming the new one, and passes every argument through (the
    constitution and the seed: under one_per_pair the seed decides each pair's principle)."""
    judge = load_judge(POLITE)
    pairs = [Pair(f"q{i}", "please do", "no") if i % 2 else Pair(f"q{i}", "no", "please do") for i in range(8)]
    want = rlaif.judge_pairs(judge, pairs, CONST, seed=3)
    assert [r.principle_id for r in want] != [r.principle_id for r in rlaif.judge_pairs(judge, pairs, CONST)]
    with pytest.warns(DeprecationWarning, match=r"rlaif\.judge_pairs") as caught:
        got = rlaif.score(judge, iter(pairs), CONST, seed=3)
    assert [r.to_json() for r in got] == [r.to_json() for r in want]
    assert caught[0].filename == __file__  # the warning points at the caller's line


class _CappedJudge(Judge):
    """Answers `cap` queries, then reports its budget spent (as the HTTP backend does)."""

    def __init__(self, cap):
        super().__init__(PythonJudgeConfig(function="tests.judge_fns:prefers_polite"))
        self.left = cap

    def judge(self, queries):
        out = []
        for q in queries:
            if self.left == 0:
                raise BudgetExhausted("max_requests reached", out + [None] * (len(queries) - len(out)))
            self.left -= 1
            out.append(Verdict(0.9 if "please" in q.first else 0.1))
        return out


def test_budget_stop_keeps_whole_pairs_only_and_resumes(tmp_path):
    pairs = write_pairs(tmp_path / "pairs.jsonl", 10)
    const = CONST.model_copy(update={"sampling": "polite"})
    result = label(pairs, const, _CappedJudge(cap=7), tmp_path / "out", batch_size=4, progress=False)
    assert result.stopped and "max_requests" in result.stopped
    recs = read_labels(tmp_path / "out")
    assert len(recs) == 3 and all(r["status"] == "ok" for r in recs)  # 7 queries = 3 whole pairs, no placeholder
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["status"] == "stopped"
    result = label(pairs, const, _CappedJudge(cap=100), tmp_path / "out", batch_size=4, progress=False)
    assert result.stopped is None and len(read_labels(tmp_path / "out")) == 10


def test_a_judge_of_the_other_kind_is_refused_in_one_line_before_anything_is_written(tmp_path):
    import subprocess
    import sys

    from rlaif.scoring.job import score
    from tests.helpers import ROOT

    pairs, out = write_pairs(tmp_path / "pairs.jsonl", 2), tmp_path / "out"
    helpful = ROOT / "constitutions" / "helpful.yaml"
    rater = tmp_path / "rater.yaml"
    rater.write_text("backend: python\nmode: score\nfunction: tests.judge_fns:score_polite\n")
    with pytest.raises(LabelJobError) as e:
        label(pairs, CONST, rater, out, progress=False)
    assert str(e.value) == (
        f"{rater} is a score judge (mode: score): rlaif label needs a pairwise judge. Rate responses with rlaif "
        "score, or set `mode: pairwise` in the judge config"
    )
    with pytest.raises(LabelJobError) as e:  # a judge given loaded has no file to name
        score(pairs, CONST, load_judge(POLITE), out, progress=False)
    assert str(e.value) == (
        "the judge is a pairwise judge (mode: pairwise): rlaif score needs a score judge. Set `mode: score` in the "
        "judge config, or label pairs with rlaif label"
    )
    rates_nothing = _CappedJudge(cap=1)  # its class answers pairs only
    rates_nothing.config = POLITE.model_copy(update={"mode": "score"})
    with pytest.raises(LabelJobError, match=r"^the judge is a score judge \(mode: score\), but its backend "):
        score(pairs, CONST, rates_nothing, out, progress=False)
    done = subprocess.run(
        [sys.executable, "-m", "rlaif.cli", "label", "--pairs", pairs, "--constitution", helpful, "--judge", rater]
        + ["--out", out],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"error: {rater} is a score judge (mode: score): rlaif label needs a pairwise judge. Rate responses with "
        "rlaif score, or set `mode: pairwise` in the judge config"
    ]
    assert not out.exists()


def test_pair_too_long_for_the_judge_is_bad_input(tmp_path, tiny_model_dir):
    from rlaif.config.judge import TransformersJudgeConfig
    from rlaif.data.pairs import DataError

    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"id": "short", "prompt": "q", "response_a": "please", "response_b": "no"},
        {"id": "long", "prompt": "q " * 400, "response_a": "please", "response_b": "no"},
        {"id": "after", "prompt": "q", "response_a": "ok", "response_b": "no"},
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = TransformersJudgeConfig(model=str(tiny_model_dir), max_length=300, batch_size=2)
    const = CONST.model_copy(update={"sampling": "polite"})
    with pytest.raises(DataError) as e:
        label(pairs, const, cfg, tmp_path / "out", progress=False)
    assert "pairs.jsonl:2" in str(e.value) and "too long" in str(e.value)
    assert [r["id"] for r in read_labels(tmp_path / "out")] == ["short"]
    label(pairs, const, cfg, tmp_path / "out2", skip_invalid=True, progress=False)
    recs = {r["id"]: r for r in read_labels(tmp_path / "out2")}
    assert recs["long"]["status"] == "failed" and "too long" in recs["long"]["error"]
    assert recs["after"]["status"] == "ok"
