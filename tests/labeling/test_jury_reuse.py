"""A jury labelling from its members' own runs (`rlaif label --member-labels DIR`): a pairwise member's label folder
and a score member's score folder give the jury the records judging again gives, with no call to those members;
a pair a DIR holds missing, failed, under another constitution, edited, swapped or with a number the guard refuses
is judged again; and DIRs that are not one member's run each, or a judge that is no jury, are refused in one line."""

from __future__ import annotations

import json
import shutil

import pytest

from rlaif.labeling.job import label
from rlaif.scoring.job import score
from tests.judge_fns import JUDGED, RATED
from tests.labeling.jobfiles import job_files, polite_rows, rlaif_label, stored, write_rows
from tests.labeling.test_jury_job import TWO_PRINCIPLES

N = 8


@pytest.fixture
def runs(tmp_path):
    """A jury of a counted pairwise rule and a counted score rule over N polite pairs, each member's own run, and
    the jury's records when it judges everything again."""
    files = job_files(tmp_path, polite_rows(N), constitution=TWO_PRINCIPLES)
    (tmp_path / "pairwise.yaml").write_text("backend: python\nfunction: tests.judge_fns:counted_polite\n")
    (tmp_path / "scored.yaml").write_text(
        "backend: python\nmode: score\nfunction: tests.judge_fns:counted_score_polite\n"
    )
    files["judge"].write_text("backend: jury\nmembers: [pairwise.yaml, scored.yaml]\naggregate: mean\n")
    args = (files["pairs"], files["constitution"])
    files["pairwise_run"], files["scored_run"] = tmp_path / "pairwise-run", tmp_path / "scored-run"
    label(*args, tmp_path / "pairwise.yaml", files["pairwise_run"], progress=False)
    score(*args, tmp_path / "scored.yaml", files["scored_run"], progress=False)
    label(*args, files["judge"], tmp_path / "again", progress=False)
    files["again"] = stored(tmp_path / "again")
    JUDGED.clear()
    RATED.clear()
    return files


def _reused(files, out, **settings):
    return label(
        files["pairs"],
        files["constitution"],
        files["judge"],
        out,
        progress=False,
        member_labels=[files["pairwise_run"], files["scored_run"]],
        **settings,
    )


def test_a_jury_takes_its_members_verdicts_from_their_runs(runs, tmp_path):
    result = _reused(runs, tmp_path / "reused")
    assert JUDGED == [] and RATED == []  # neither member was called
    assert stored(tmp_path / "reused") == runs["again"]  # p_a, per_member, label, tokens, key: all as judged again
    assert result.stats["member_verdicts_reused"] == {"pairwise": N, "scored": N}
    assert result.stats["spent_requests"] == 0
    # the jury's hash and resume key are its own: a run without the folders resumes the folder, judging nothing
    resumed = label(runs["pairs"], runs["constitution"], runs["judge"], tmp_path / "reused", progress=False)
    assert resumed.stats["resumed_skipped"] == N and JUDGED == [] and RATED == []


def _rewrite(path, edit):
    """Rewrite the JSONL file `path`, each record through `edit(record) -> record or None (dropped)`; NaN is
    written as the bare token a careless writer leaves."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    kept = [r for r in map(edit, records) if r is not None]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))


def test_pairs_a_run_does_not_hold_as_judged_now_are_judged_again(runs, tmp_path):
    def spoil_labels(r):
        if r["id"] == "p0":
            return None  # missing
        if r["id"] == "p1":
            return {**r, "status": "failed", "p_a": None, "label": None, "error": "boom"}
        if r["id"] == "p2":
            return {**r, "constitution_sha256": "0" * 64}
        if r["id"] == "p3":
            return {**r, "response_b": r["response_b"] + " (edited)"}
        if r["id"] == "p4":
            return {**r, "p_a": float("nan")}
        if r["id"] == "p5":  # swapped: judged again rather than flipped
            return {**r, "response_a": r["response_b"], "response_b": r["response_a"]}
        return r

    def spoil_scores(r):
        if r["id"] == "p6:b":
            return None
        if r["id"] == "p7:a":
            return {**r, "score": float("inf")}
        return r

    _rewrite(runs["pairwise_run"] / "labels.jsonl", spoil_labels)
    _rewrite(runs["scored_run"] / "scores.jsonl", spoil_scores)
    result = _reused(runs, tmp_path / "reused")
    assert stored(tmp_path / "reused") == runs["again"]
    judged = {first for first, _ in JUDGED} | {second for _, second in JUDGED}
    assert judged == {f"{w}, {i}" if w == "please" else f"no {i}" for i in range(6) for w in ("please", "no")}
    assert sorted(RATED) == sorted(["please, 6", "no 6", "please, 7", "no 7"])
    assert result.stats["member_verdicts_reused"] == {"pairwise": N - 6, "scored": N - 2}


def _refusal(files, *extra) -> str:
    done = rlaif_label(files, *extra)
    assert done.returncode == 2, done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert not files["out"].exists()  # refused before anything is written
    return lines[0]


def test_folders_that_are_not_one_members_run_each_are_refused(runs, tmp_path):
    other = tmp_path / "other-run"
    (tmp_path / "length.yaml").write_text("backend: python\nfunction: rlaif.rules:prefer_shorter\n")
    label(runs["pairs"], runs["constitution"], tmp_path / "length.yaml", other, progress=False)
    line = _refusal(runs, "--member-labels", other)
    assert str(other) in line and "no member of the jury" in line

    twice = tmp_path / "pairwise-copy"
    shutil.copytree(runs["pairwise_run"], twice)
    line = _refusal(runs, "--member-labels", runs["pairwise_run"], "--member-labels", twice)
    assert "member pairwise has a folder already" in line

    mixed = tmp_path / "mixed"
    shutil.copytree(runs["pairwise_run"], mixed)
    foreign = (other / "labels.jsonl").read_text().splitlines()[0]
    write_rows(mixed / "labels.jsonl", [*(mixed / "labels.jsonl").read_text().splitlines()[1:], foreign])
    line = _refusal(runs, "--member-labels", mixed)
    assert str(mixed) in line and "several judges" in line

    runs["judge"].write_text((tmp_path / "pairwise.yaml").read_text())
    line = _refusal(runs, "--member-labels", runs["pairwise_run"])
    assert "not a jury" in line
