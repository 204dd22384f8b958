"""Tiers 2, 4 and 5: the self-feedback loop with a score judge (d-RLAIF in the loop, rlaif/recipes/loop_feedback.py)
on the tiny example — each sample rated once (n judge calls per prompt, counted), each prompt's samples binarised
as `rlaif export --pairs-from` does with p_a = σ((s_best − s_other)/T), the policy learning to say "please"; bad
settings refused at their line; a real `rlaif loop` killed with SIGKILL mid-rating continues with the same command."""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from rlaif.config.train import check_run_paths, load_train_config
from rlaif.config.yamlfile import ConfigFileError
from rlaif.constitution import GENERIC
from rlaif.data.scores import binarize
from rlaif.train.metrics import read_metrics
from tests.helpers import ROOT, kill_when, rlaif_command, run_to_end
from tests.judge_fns import RATED, score_polite
from tests.recipes.test_loop import EXAMPLE, PROMPTS, SHORT, read_rows

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def score_judge(tmp_path) -> Path:
    """A rule-based python score judge: 8 for a response saying "please", 3 otherwise; each call counted."""
    path = tmp_path / "judge-score.yaml"
    path.write_text("backend: python\nmode: score\nfunction: tests.judge_fns:counted_score_polite\n")
    return path


def run(out: Path, judge: Path, *overrides: str) -> list[dict]:
    from rlaif.recipes.loop import train

    train(load_train_config(EXAMPLE, "loop", [f"output_dir={out}", f"prompts={PROMPTS}", f"judge={judge}", *overrides]))
    return read_rows(out / "iterations.jsonl")


def test_loop_with_a_score_judge_rates_each_sample_once_and_learns_to_say_please(tmp_path, score_judge):
    """Learning test: the shipped example (4 iterations of 15 steps) with the score judge and 4 samples per
    prompt. Every sample is rated exactly once (4 calls per prompt, against 4·3 = 12 for the pairwise both-orders
    round robin), the pairs are best-vs-worst with the derived soft p_a, and the share of held-out samples saying
    "please" rises well above the start (measured: 0.14 at the start, 0.94 after iteration 4)."""
    RATED.clear()
    out = tmp_path / "run"
    started = time.time()
    rows = run(out, score_judge, "samples_per_prompt=4")
    seconds = time.time() - started
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4] and all(r["judge_mode"] == "score" for r in rows)

    rated_in_loop = 0
    for k, row in enumerate(rows, 1):
        it_dir = out / f"iter-{k}"
        samples = {
            (p["prompt_id"], p[f"sample_{s}"]): p[f"response_{s}"]
            for p in read_rows(it_dir / "pairs.jsonl")
            for s in ("a", "b")
        }
        scores = read_rows(it_dir / "scores/scores.jsonl")
        # one rating per distinct sample, never one per pair or per order
        assert sorted((r["prompt_id"], r["sample"]) for r in scores) == sorted(samples)
        per_prompt = Counter(r["prompt_id"] for r in scores)
        assert len(per_prompt) == 128 and max(per_prompt.values()) == 4
        assert sum(n == 4 for n in per_prompt.values()) >= 100  # the rest had an empty sample, which is not rated
        assert row["samples"] == row["ratings_ok"] == len(scores)
        rated_in_loop += len(scores)

        # the pairs: best against worst per prompt, as `rlaif export --pairs-from best-vs-worst` picks them
        prefs = read_rows(it_dir / "preferences.jsonl")
        expected = [(c["id"], r["id"]) for c, r in binarize(scores, "best-vs-worst", (1, 10), 1.0)]
        assert [(p["response_a"], p["response_b"]) for p in prefs] == [
            (next(s["response"] for s in scores if s["id"] == c), next(s["response"] for s in scores if s["id"] == r))
            for c, r in expected
        ]
        for p in prefs:
            assert p["scores"] == [8.0, 3.0] and p["label"] == "a" and p["source"] == "ai"
            assert p["p_a"] == pytest.approx(1 / (1 + math.exp(-5.0)))  # σ((8 − 3) / T), T = 1
            assert p["judge"]["mode"] == "score" and p["constitution_sha256"] == GENERIC.sha256
        assert row["pairs"] == len(prefs) == row["train_pairs"] > 0

    # the rest of the calls are the evaluation: 64 held-out policy samples and 64 baseline samples per iteration
    assert len(RATED) == rated_in_loop + 4 * 2 * 64
    before, after = rows[0]["keyword_share_start"], rows[-1]["keyword_share"]
    print(
        f"'please' in held-out samples: start {before:.3f}, per iteration "
        f"{[round(r['keyword_share'], 3) for r in rows]}; win rate {[round(r['win_rate'], 3) for r in rows]}; "
        f"rating calls per prompt 4 (pairwise both orders: 12); {seconds:.1f}s"
    )
    assert after >= before + 0.4, (before, after)
    assert rows[-1]["win_rate"] > 0.6 and rows[-1]["winrate"]["ci_low"] > 0.5
    assert rows[-1]["winrate"]["position_consistency"] == 1.0  # the score judge's win rate shows no order


def test_pairs_from_and_its_margin_follow_the_feedback_section(tmp_path, score_judge):
    # every gap is 5 points (8 against 3): a margin of 6 leaves no pair, and the iteration says so
    with pytest.raises(ValueError, match="iteration 1: no usable ai preferences"):
        run(
            tmp_path / "run",
            score_judge,
            *SHORT,
            "samples_per_prompt=3",
            "feedback={source: ai, pairs_from: all-above-margin, min_margin: 6}",
        )
    rows = run(
        tmp_path / "run2",
        score_judge,
        *SHORT,
        "samples_per_prompt=3",
        "feedback={source: ai, pairs_from: all-above-margin}",
    )
    for k, row in enumerate(rows, 1):
        scores = read_rows(tmp_path / f"run2/iter-{k}/scores/scores.jsonl")
        by_prompt: dict = {}
        for r in scores:
            by_prompt.setdefault(r["prompt_id"], []).append(r["score"])
        # all-above-margin: every (polite, rude) pair of a prompt's samples
        assert row["pairs"] == sum(s.count(8.0) * s.count(3.0) for s in by_prompt.values()) > 0


def score_polite_unless_tea(prompt, response, principle):
    """score_polite, failing on every response that mentions tea."""
    if "tea" in response.split():
        raise RuntimeError("the rule cannot rate tea")
    return score_polite(prompt, response, principle)


def test_failed_ratings_count_as_failed_labels(tmp_path):
    """With a score judge, labels_failed counts the ratings that failed (each leaves its sample out of the
    pairs), as it counts failed pair labels with a pairwise judge: never 0 while the judge failed."""
    judge = tmp_path / "judge.yaml"
    judge.write_text(f"backend: python\nmode: score\nfunction: {__name__}:score_polite_unless_tea\n")
    rows = run(tmp_path / "run", judge, *SHORT, "samples_per_prompt=3", "iterations=1")
    assert len(rows) == 1
    for k, row in enumerate(rows, 1):
        failed = [r for r in read_rows(tmp_path / f"run/iter-{k}/scores/scores.jsonl") if r["status"] == "failed"]
        assert all("tea" in r["error"] for r in failed)
        assert row["labels_failed"] == row["ratings_failed"] == len(failed) > 0
        assert row["ratings_ok"] + row["ratings_failed"] == row["samples"]


@pytest.mark.parametrize(
    "override, error",
    [
        ("feedback.pairs_from=best", "feedback.pairs_from: Input should be 'best-vs-worst'"),
        ("feedback.min_margin=-1", "feedback.min_margin: Input should be greater than or equal to 0"),
        ("samples_per_prompt=1", "samples_per_prompt: Input should be greater than or equal to 2"),
        # the hint lists the fields of the loop's source ai, not those of the other sources (human, margin, ...)
        (
            "feedback.pairs_frm=best-vs-worst",
            (
                r"feedback.pairs_frm: unknown field; did you mean 'pairs_from'\? \(fields "
                r"here: source, ai, calibration, pairs_from, min_margin\)$"
            ),
        ),
    ],
)
def test_bad_values_are_refused_at_their_line(override, error):
    with pytest.raises(ConfigFileError, match=error) as e:
        load_train_config(EXAMPLE, "loop", [override])
    assert str(e.value).startswith(f"{EXAMPLE}:")


def test_settings_that_do_not_fit_the_judges_mode_are_refused(tmp_path, score_judge):
    config = tmp_path / "loop.yaml"
    config.write_text(
        EXAMPLE.read_text()
        .replace("judge: judges/rule-keyword.yaml", f"judge: {score_judge}")
        .replace("  source: ai", "  source: mixed\n  human: h.jsonl")
    )
    line = next(i for i, t in enumerate(config.read_text().splitlines(), 1) if "source: mixed" in t)
    with pytest.raises(ConfigFileError, match=rf"^{config}:{line}: feedback.source: .* is a score judge"):
        check_run_paths(config, load_train_config(config, "loop"))
    with pytest.raises(ValueError, match="feedback.source: .* only source ai applies"):  # in-process, too
        run(tmp_path / "run", score_judge, "feedback={source: mixed, human: h.jsonl}")

    pairwise = load_train_config(
        EXAMPLE, "loop", [f"judge={ROOT / 'judges/rule-keyword.yaml'}", "feedback.pairs_from=best-vs-random"]
    )
    with pytest.raises(ConfigFileError, match="feedback.pairs_from: applies to a score judge"):
        check_run_paths(EXAMPLE, pairwise)
    check_run_paths(EXAMPLE, load_train_config(EXAMPLE, "loop", [f"output_dir={tmp_path / 'x'}"]))  # defaults: fine

    done = subprocess.run(
        rlaif_command("loop", "--config", config, f"output_dir={tmp_path / 'cli'}"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert f"{config}:{line}: feedback.source" in done.stderr


@pytest.mark.slow
def test_sigkill_mid_rating_then_same_command_continues(tmp_path, monkeypatch):
    """Killed while iteration 2's samples are being rated, the same command resumes at step 3, rates only what
    the killed run had not stored, and ends as an uninterrupted run does."""
    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: python\nmode: score\nfunction: tests.judge_fns:slow_score_polite\n")
    out = tmp_path / "run"
    overrides = [
        f"prompts={PROMPTS}",
        f"judge={judge}",
        "iterations=2",
        "steps_per_iteration=3",
        "prompts_per_iteration=24",
        "eval_prompts=8",
        "batch_size=8",
        "samples_per_prompt=4",
        "save_steps=100",
    ]
    cmd = rlaif_command("loop", "--config", EXAMPLE, f"output_dir={out}", *overrides)
    monkeypatch.setenv("RLAIF_TEST_DELAY", "0.02")
    kill_when(cmd, out / "iter-2/scores/scores.jsonl", 32)  # two batches of 16 stored, more in flight
    stored = len(read_rows(out / "iter-2/scores/scores.jsonl"))
    assert 32 <= stored < 90 and not (out / "iter-2/preferences.jsonl").exists()
    assert [r["iteration"] for r in read_rows(out / "iterations.jsonl")] == [1]

    monkeypatch.setenv("RLAIF_TEST_DELAY", "0")
    assert "resuming at step 3" in run_to_end(cmd)
    stats = json.loads((out / "iter-2/scores/stats.json").read_text())
    assert stats["resumed_skipped"] == stored and stats["scored_now"] + stored == stats["responses"]
    resumed, rows = read_metrics(out), read_rows(out / "iterations.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 7)) and [r["iteration"] for r in rows] == [1, 2]

    from rlaif.recipes.loop import train

    train(load_train_config(EXAMPLE, "loop", [f"output_dir={tmp_path / 'straight'}", *overrides]))
    straight, straight_rows = read_metrics(tmp_path / "straight"), read_rows(tmp_path / "straight/iterations.jsonl")
    for a, b in zip(resumed, straight):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5), a["step"]
    for a, b in zip(rows, straight_rows):
        assert (a["samples"], a["pairs"], a["train_pairs"], a["win_rate"]) == (
            b["samples"],
            b["pairs"],
            b["train_pairs"],
            b["win_rate"],
        )


def test_a_pairwise_judge_labels_every_pair_of_n_samples(tmp_path):
    """samples_per_prompt applies to a pairwise judge too: every pair i < j of a prompt's samples is labelled (in
    both orders), n(n-1)/2 pairs per prompt, where a score judge makes n ratings."""
    out = tmp_path / "run"
    rows = run(out, ROOT / "judges/rule-keyword.yaml", *SHORT, "samples_per_prompt=3")
    pairs = read_rows(out / "iter-1/pairs.jsonl")
    per_prompt = Counter(p["prompt_id"] for p in pairs)
    assert len(per_prompt) == 24 and max(per_prompt.values()) == 3 and sum(n == 3 for n in per_prompt.values()) >= 20
    assert {(p["sample_a"], p["sample_b"]) for p in pairs} == {(0, 1), (0, 2), (1, 2)}
    labels = read_rows(out / "iter-1/labels/labels.jsonl")
    assert len(labels) == len(pairs) == rows[0]["pairs"] and "judge_mode" not in rows[0]
    assert all(len(r["p_a_orders"]) == 2 for r in labels if r["status"] == "ok")  # both orders asked
