"""Tier 4: a jury (`backend: jury`) labelling a file as any judge does — a real `rlaif label` subprocess killed with
SIGKILL mid-job and run again ends with one whole record per pair; on a real local Ray cluster the records are the
in-process job's; an HTTP member's spending cap holds for that member alone, across reruns (spend.json keeps each
member's share); and a jury judges win rates, rewards served over HTTP, and the pairs of `rlaif loop`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from rlaif.cluster.connect import RayOptions
from rlaif.config.judge import load_judge_config
from rlaif.constitution import GENERIC
from rlaif.eval.winrate import judge_winrate
from rlaif.jobs.folder import read_spend, up_to_caps, write_spend
from rlaif.judges.registry import load_judge
from rlaif.labeling.job import label
from rlaif.records import Spend
from tests.cluster.compare import close
from tests.helpers import ROOT
from tests.judges.test_openai_judge import FakeServer
from tests.labeling.jobfiles import job_files, label_command, polite_rows, stored, strict_records
from tests.labeling.test_retry_caps import _polite

TWO_PRINCIPLES = (
    "name: c\nversion: '1'\nsampling: one_per_pair\nprinciples:\n"
    "  - id: polite\n    text: Which is more polite?\n"
    "  - id: ruder\n    text: Which is ruder?\n    invert: true\n"
)


def jury_files(tmp_path, n: int, delay: float = 0.0, constitution: str = TWO_PRINCIPLES) -> dict:
    """A jury of a pairwise rule and a score rule (both slowed by `delay` per call) over `n` polite pairs."""
    files = job_files(tmp_path, polite_rows(n), constitution=constitution)
    (tmp_path / "pairwise.yaml").write_text(
        f"backend: python\nfunction: tests.judge_fns:slow_polite\nkwargs: {{delay: {delay}}}\n"
    )
    (tmp_path / "scored.yaml").write_text(
        f"backend: python\nmode: score\nfunction: tests.judge_fns:slow_score_polite\nkwargs: {{delay: {delay}}}\n"
    )
    files["judge"].write_text("backend: jury\nmembers: [pairwise.yaml, scored.yaml]\naggregate: majority\n")
    return files


def _lines(path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_a_jury_label_job_resumes_after_sigkill(tmp_path):
    n = 40
    files = jury_files(tmp_path, n, delay=0.01)
    labels = files["out"] / "labels.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kills = 0
    for target in (5, 20):  # kill once the store has grown past these line counts
        proc = subprocess.Popen(
            label_command(files, "--batch-size", "2"),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.time() + 90
        while _lines(labels) < target and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        assert proc.returncode in (-signal.SIGKILL, 0), proc.stderr.read().decode()[-2000:]
    assert kills >= 1
    done = subprocess.run(label_command(files), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    records = stored(files["out"])  # one whole record per id
    assert sorted(records) == sorted(f"p{i}" for i in range(n))
    for r in records.values():
        assert r["status"] == "ok" and r["label"] == "a" and r["judge"]["backend"] == "jury"
        assert [(m["name"], m["status"]) for m in r["per_member"]] == [("pairwise", "ok"), ("scored", "ok")]
    stats = json.loads((files["out"] / "stats.json").read_text())
    assert stats["pairs"] == n and stats["labelled_now"] < n  # the last run resumed
    manifest = json.loads((files["out"] / "manifest.json").read_text())
    assert [m["name"] for m in manifest["judge"]["member_judges"]] == ["pairwise", "scored"]


def test_a_jury_labels_the_same_on_ray_as_in_process(tmp_path, ray_cluster):
    files = jury_files(tmp_path, 24)
    (tmp_path / "broken.yaml").write_text("backend: python\nfunction: tests.judge_fns:broken\n")
    files["judge"].write_text("backend: jury\nmembers: [pairwise.yaml, scored.yaml, broken.yaml]\n")
    with open(files["pairs"], "a") as f:  # a pair one member fails on: left out of that pair's mean, on Ray too
        f.write(json.dumps({"id": "boom", "prompt": "q", "response_a": "boom, please", "response_b": "no"}) + "\n")
    run = dict(seed=3, batch_size=4, progress=False)
    here = label(files["pairs"], files["constitution"], files["judge"], tmp_path / "here", **run)
    there = label(
        files["pairs"], files["constitution"], files["judge"], tmp_path / "there", ray=RayOptions(ray_cluster), **run
    )
    assert here.labelled_now == there.labelled_now == 25 and there.stats["ray"]["workers"] == 2
    records = [sorted(strict_records(tmp_path / d / "labels.jsonl"), key=lambda r: r["id"]) for d in ("here", "there")]
    close(*records, "records")
    boom = next(r for r in records[0] if r["id"] == "boom")
    assert [m["status"] for m in boom["per_member"]] == ["ok", "ok", "failed"] and boom["status"] == "ok"
    assert {r["principle_id"] for r in records[0]} == {"polite", "ruder"}  # both principles drawn, inverted too
    assert all(r["label"] == "a" for r in records[0])


@pytest.fixture
def server():
    s = FakeServer()
    s.default = _polite
    yield s
    s.stop()


def test_an_http_members_cap_holds_for_it_alone_across_runs(tmp_path, server):
    files = jury_files(tmp_path, 5, constitution="name: c\nversion: '1'\nprinciples:\n  - id: polite\n    text: x\n")
    (tmp_path / "api.yaml").write_text(
        f"backend: openai\nmodel: m\nbase_urls: ['{server.url}']\nmax_retries: 0\nbackoff_s: 0.01\n"
        "price_per_1k_prompt_tokens: 0.5\nmax_requests: 6\n"
    )
    files["judge"].write_text("backend: jury\nmembers: [pairwise.yaml, api.yaml]\n")
    run = dict(batch_size=1, progress=False)
    first = label(files["pairs"], files["constitution"], files["judge"], files["out"], **run)
    assert first.stopped.startswith("budget: member api: request cap reached") and server.count == 6
    assert first.labelled_now == 3  # 2 requests a pair: the cap let 3 pairs through
    spend = json.loads((files["out"] / "spend.json").read_text())
    assert spend == {
        "requests": 6,
        "cost": 0.15,
        "members": {"pairwise": {"requests": 0, "cost": 0.0}, "api": {"requests": 6, "cost": 0.15}},
    }
    again = label(files["pairs"], files["constitution"], files["judge"], files["out"], **run)
    assert again.stopped is not None and again.labelled_now == 0 and server.count == 6  # the job's cap, not the run's
    records = stored(files["out"])
    assert len(records) == 3 and all(r["per_member"][1]["p_a"] == pytest.approx(0.8) for r in records.values())
    # what a worker lost mid-batch on Ray counts as spent: the capped member's share raised to its cap
    config = load_judge_config(files["judge"])
    was = Spend(2, 0.05, (("pairwise", Spend()), ("api", Spend(2, 0.05))))
    assert up_to_caps(was, config) == Spend(6, 0.05, (("pairwise", Spend()), ("api", Spend(6, 0.05))))
    write_spend(tmp_path, was, Spend(4, 0.0, (("api", Spend(4)),)))  # 4 requests held for a batch in flight
    assert read_spend(tmp_path) == Spend(6, 0.05, (("pairwise", Spend()), ("api", Spend(6, 0.05))))
    with pytest.raises(Exception, match="a jury's caps are its members'"):
        label(files["pairs"], files["constitution"], files["judge"], files["out"], max_requests=100, **run)


def test_a_jury_judges_win_rates_and_serves_rewards(tmp_path):
    httpx = pytest.importorskip("httpx")
    from rlaif.rewards.server import build_service
    from tests.rewards.test_serve_reward import ThreadServer

    files = jury_files(tmp_path, 1)
    with load_judge(files["judge"]) as jury:
        win = judge_winrate(jury, GENERIC, ["q1", "q2"], ["please do", "please"], ["no", "nope"], n_boot=10)
    assert (win.wins, win.losses, win.failed) == (2, 0, 0)
    service = build_service(files["judge"], None, mode="reference")
    try:
        with ThreadServer(service) as srv:
            body = {"prompts": ["q", "q"], "responses": ["please do", "no"], "references": ["no", "please"]}
            reply = httpx.post(srv.url + "/get_reward", json=body, timeout=30)
            health = httpx.get(srv.url + "/health", timeout=5).json()
    finally:
        service.reward.judge.close()
    assert reply.status_code == 200, reply.text
    rewards = reply.json()["rewards"]
    # majority of two members that both prefer "please": P = 1 against the reference, reward 2P - 1
    assert rewards == pytest.approx([1.0, -1.0]) and health["backend"] == "jury" and health["judged_pairs"] == 2


@pytest.mark.usefixtures("one_thread")
def test_a_jury_judges_inside_the_loop(tmp_path):
    from rlaif.recipes.loop import train
    from tests.recipes.test_loop import SHORT, loop_config

    jury = tmp_path / "jury.yaml"
    jury.write_text(
        f"backend: jury\nmembers: [{ROOT / 'judges/rule-keyword.yaml'}, {ROOT / 'judges/rule-length.yaml'}]\n"
    )
    out = tmp_path / "run"
    overrides = ("iterations=1", "steps_per_iteration=1", "prompts_per_iteration=8", "eval_prompts=8")
    train(loop_config(out, *SHORT, f"judge={jury}", *overrides))
    labels = strict_records(out / "iter-1" / "labels" / "labels.jsonl")
    assert len(labels) == 8 and all(r["judge"]["backend"] == "jury" for r in labels)
    assert all([m["name"] for m in r["per_member"]] == ["rule-keyword", "rule-length"] for r in labels)
    (iteration,) = [json.loads(line) for line in (out / "iterations.jsonl").read_text().splitlines()]
    assert iteration["labels_ok"] == 8 and iteration["winrate"]["n"] == 8
