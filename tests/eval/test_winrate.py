"""Win rate of a policy against a baseline: hand-checked counts with rule judges on fixed texts, ties counted half,
the bootstrap resampling prompts (not comparisons), identical models at exactly 0.5, and `rlaif eval winrate` on
two tiny saved models."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from rlaif.config.judge import PythonJudgeConfig
from rlaif.constitution import load_constitution
from rlaif.eval import WinRate, evaluate_winrate, judge_winrate
from rlaif.judges.base import Judge
from rlaif.judges.registry import load_judge
from rlaif.records import Verdict
from tests.helpers import ROOT

HELPFUL = ROOT / "constitutions" / "helpful.yaml"


def _judge(function: str, tie_margin: float = 0.0):
    return load_judge(PythonJudgeConfig(function=function, tie_margin=tie_margin))


SHORTER = "rlaif.rules:prefer_shorter"


def test_counts_by_hand_with_the_length_rule():
    # policy shorter (win), longer (loss), same length (tie), shorter (win)
    policy = ["short", "a much longer answer here", "same", "tiny"]
    baseline = ["a much longer answer", "short", "four", "a longer reply"]
    wr = judge_winrate(_judge(SHORTER), None, ["p0", "p1", "p2", "p3"], policy, baseline)
    assert (wr.n, wr.wins, wr.losses, wr.ties, wr.failed) == (4, 2, 1, 1, 0)
    assert wr.win_rate == pytest.approx((2 + 0.5) / 4)
    assert wr.position_consistency == pytest.approx(3 / 4)  # the tie picks neither response in either order
    assert 0.0 <= wr.ci_low <= wr.win_rate <= wr.ci_high <= 1.0
    assert set(wr.to_dict()) == {
        "n",
        "wins",
        "losses",
        "ties",
        "failed",
        "win_rate",
        "ci_low",
        "ci_high",
        "position_consistency",
    }
    # the same under a constitution file (every principle of helpful.yaml asked, weights averaged)
    again = judge_winrate(_judge(SHORTER), HELPFUL, ["p0", "p1", "p2", "p3"], policy, baseline)
    assert (again.wins, again.losses, again.ties) == (2, 1, 1)


def test_ties_follow_the_judge_tie_margin():
    # 4 characters shorter: p_a = σ(0.05·4) ≈ 0.55 — a win with margin 0, a tie with margin 0.1
    args = (["p"], ["abcd"], ["abcdefgh"])
    assert judge_winrate(_judge(SHORTER, 0.0), None, *args).wins == 1
    wr = judge_winrate(_judge(SHORTER, 0.1), None, *args)
    assert (wr.wins, wr.ties, wr.win_rate) == (0, 1, 0.5)
    constitution = load_constitution(HELPFUL).model_copy(update={"tie_margin": 0.1})
    assert judge_winrate(_judge(SHORTER, 0.0), constitution, *args).ties == 1  # the constitution's margin wins


def test_identical_policy_and_baseline_is_exactly_even():
    texts = ["one answer", "another, longer answer", "x"]
    wr = judge_winrate(_judge(SHORTER), None, ["a", "b", "c"], texts, texts)
    assert wr.win_rate == 0.5 and wr.ties == wr.n == 3 and (wr.ci_low, wr.ci_high) == (0.5, 0.5)


def test_a_pure_position_bias_wins_nothing():
    # always prefers the first slot: both orders cancel, every comparison is a tie, none is position-consistent
    wr = judge_winrate(_judge("tests.judge_fns:first_slot", 0.05), None, ["a", "b"], ["x", "yy"], ["zzz", "w"])
    assert (wr.win_rate, wr.ties, wr.position_consistency) == (0.5, 2, 0.0)


def test_failed_comparisons_are_counted_and_left_out():
    wr = judge_winrate(
        _judge("tests.judge_fns:broken", 0.05), None, ["a", "b", "c"], ["x", "boom", "y"], ["u", "v", "w"]
    )
    assert (wr.n, wr.failed, wr.ties, wr.win_rate) == (2, 1, 2, 0.5)
    wr = judge_winrate(_judge("tests.judge_fns:broken"), None, ["a"], ["boom"], ["v"])
    assert wr == WinRate(0, 0, 0, 0, 1, None, None, None, None)


def test_bootstrap_resamples_prompts_not_comparisons():
    # prompt 0: three samples, all wins; prompt 1: one sample, a loss. Win rate 3/4. Over the two prompts a
    # resample holds prompt 1 twice (rate 0) a quarter of the time, so the 2.5% quantile is 0 exactly;
    # resampling the four comparisons would reach 0 only with probability 1/256.
    wr = judge_winrate(
        _judge(SHORTER),
        None,
        ["p0", "p1"],
        [["a", "b", "c"], ["a long one"]],
        [["longer 1", "longer 2", "longer 3"], ["x"]],
        n_boot=2000,
    )
    assert (wr.wins, wr.losses, wr.win_rate) == (3, 1, 0.75)
    assert (wr.ci_low, wr.ci_high) == (0.0, 1.0)
    all_wins = judge_winrate(_judge(SHORTER), None, ["p0", "p1"], ["a", "b"], ["longer", "longer"])
    assert (all_wins.win_rate, all_wins.ci_low, all_wins.ci_high) == (1.0, 1.0, 1.0)
    no_ci = judge_winrate(_judge(SHORTER), None, ["p0"], ["a"], ["bb"], n_boot=0)
    assert no_ci.ci_low is None and no_ci.win_rate == 1.0


@pytest.mark.parametrize(
    "prompts, policy, baseline, message",
    [
        (["a", "b", "c"], ["x", "y"], ["x", "y", "z"], "2 entries for 3 prompts"),
        (["a"], [["x", "y"]], [["x"]], "2 policy samples but 1 baseline"),
    ],
)
def test_mismatched_texts_are_refused(prompts, policy, baseline, message):
    with pytest.raises(ValueError, match=message):
        judge_winrate(_judge(SHORTER), None, prompts, policy, baseline)


@pytest.fixture(scope="module")
def two_policies(tmp_path_factory):
    """Two tiny byte-level Llamas with different random weights, saved as ordinary model directories."""
    from rlaif.config.run import TinyModelConfig
    from rlaif.train.models import build_tiny, build_tokenizer

    dirs = []
    for seed in (0, 1):
        cfg = TinyModelConfig(seed=seed)
        tokenizer = build_tokenizer(cfg)
        path = tmp_path_factory.mktemp(f"policy{seed}")
        build_tiny(cfg, tokenizer, "lm").save_pretrained(path)
        tokenizer.save_pretrained(path)
        dirs.append(path)
    return dirs


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(
        "".join(
            json.dumps({"prompt": p}) + "\n"
            for p in ["How do I bake bread?", [{"role": "user", "content": "Hi"}], "Tell me a story."]
        )
    )
    return path


def test_identical_models_sampled_alike_are_even(two_policies, prompts_file):
    from rlaif.config.sampling import SamplingConfig

    wr, report = evaluate_winrate(
        str(two_policies[0]),
        str(two_policies[0]),
        prompts_file,
        ROOT / "judges" / "rule-length.yaml",
        HELPFUL,
        n_samples=2,
        config=SamplingConfig(max_new_tokens=8),
        seed=5,
    )
    assert wr.win_rate == 0.5 and wr.ties == wr.n == 6 and wr.failed == 0
    assert all(c["policy"] == c["baseline"] for c in report["comparisons"])


def test_eval_winrate_cli_on_two_saved_models(two_policies, prompts_file, tmp_path):
    out = tmp_path / "report.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlaif.cli",
            "eval",
            "winrate",
            "--policy",
            str(two_policies[0]),
            "--baseline",
            str(two_policies[1]),
            "--prompts",
            str(prompts_file),
            "--judge",
            str(ROOT / "judges" / "rule-length.yaml"),
            "--constitution",
            str(HELPFUL),
            "--n-samples",
            "2",
            "--max-new-tokens",
            "12",
            "--seed",
            "3",
            "--resamples",
            "500",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    report = json.loads(out.read_text())
    wr = report["winrate"]
    assert f"win rate {wr['win_rate']:.3f}" in p.stdout and "position consistency" in p.stdout
    assert wr["n"] + wr["failed"] == 6 == len(report["comparisons"])
    labels = [c["label"] for c in report["comparisons"]]
    assert (wr["wins"], wr["losses"], wr["ties"]) == (labels.count("win"), labels.count("loss"), labels.count("tie"))
    assert wr["win_rate"] == pytest.approx((wr["wins"] + 0.5 * wr["ties"]) / wr["n"])
    assert wr["ci_low"] <= wr["win_rate"] <= wr["ci_high"]
    # the length rule decides every comparison of different lengths, for the shorter response
    for c in report["comparisons"]:
        lp, lb = len(c["policy"].strip()), len(c["baseline"].strip())
        assert c["label"] == ("tie" if lp == lb else "win" if lp < lb else "loss")
    assert report["judge"]["backend"] == "python" and report["n_samples"] == 2
    assert report["constitution"]["sha256"] == load_constitution(HELPFUL).sha256
    assert report["sampling"]["max_new_tokens"] == 12 and report["baseline"] == str(two_policies[1])
    assert any(c["policy"] != c["baseline"] for c in report["comparisons"])  # two different models


# -- a score judge (mode: score): each response rated once, P(policy ≻ baseline) = σ((s_p − s_b) / T) ----------


def _score_judge(temperature: float = 1.0, tie_margin: float = 0.05, function="tests.judge_fns:counted_score_polite"):
    return load_judge(
        PythonJudgeConfig(function=function, mode="score", tie_margin=tie_margin, score={"temperature": temperature})
    )


def test_a_score_judge_rates_each_response_once_and_derives_the_preference():
    from tests.judge_fns import RATED

    RATED.clear()
    # score_polite: 8 with "please", 3 without. win, loss, tie (both polite), tie (neither)
    policy = ["please help", "no", "please", "ok"]
    baseline = ["sure", "please do", "please now", "fine"]
    wr = judge_winrate(_score_judge(), None, ["p0", "p1", "p2", "p3"], policy, baseline)
    assert sorted(RATED) == sorted(policy + baseline)  # 8 calls for 4 comparisons, not 4 x 2 orders x 2
    assert (wr.n, wr.wins, wr.losses, wr.ties, wr.failed) == (4, 1, 1, 2, 0)
    assert wr.win_rate == pytest.approx(0.5) and wr.position_consistency == 1.0  # no order is ever shown

    from rlaif.eval.winrate import judge_comparisons

    records, groups = judge_comparisons(
        _score_judge(), None, ["p0", "p1"], [["please", "no"], ["no"]], [["no", "no"], ["please"]]
    )
    assert groups == [0, 0, 1] and [r.label for r in records] == ["a", "tie", "b"]
    sigma5 = 1 / (1 + math.exp(-5.0))  # (8 - 3) / T with T = 1
    assert [r.p_a for r in records] == pytest.approx([sigma5, 0.5, 1 - sigma5])
    assert records[0].scores == pytest.approx([8.0, 3.0]) and records[0].judge.mode == "score"


def test_a_score_judges_temperature_and_tie_margin_decide_ties():
    args = (["p"], ["please"], ["no"])  # 8 against 3
    assert judge_winrate(_score_judge(temperature=1.0), None, *args).wins == 1
    # T = 100: σ(0.05) = 0.5125, within a tie margin of 0.05 of 1/2; a margin of 0 still calls it a win
    assert judge_winrate(_score_judge(temperature=100.0), None, *args).ties == 1
    assert judge_winrate(_score_judge(temperature=100.0, tie_margin=0.0), None, *args).wins == 1
    constitution = load_constitution(HELPFUL).model_copy(update={"tie_margin": 0.01})
    assert judge_winrate(_score_judge(temperature=100.0), constitution, *args).wins == 1  # the constitution's


def test_a_failed_rating_fails_its_comparison():
    wr = judge_winrate(
        _score_judge(function="tests.judge_fns:score_broken"),
        None,
        ["a", "b", "c"],
        ["boom", "fine", "eleven"],
        ["ok", "fine", "ok"],
    )
    assert (wr.n, wr.failed, wr.ties, wr.win_rate) == (1, 2, 1, 0.5)


def test_eval_winrate_with_a_score_judge_file(two_policies, prompts_file, tmp_path):
    from rlaif.config.sampling import SamplingConfig
    from tests.judge_fns import RATED

    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: python\nmode: score\nfunction: tests.judge_fns:counted_score_polite\n")
    RATED.clear()
    wr, report = evaluate_winrate(
        str(two_policies[0]),
        str(two_policies[1]),
        prompts_file,
        judge,
        None,
        n_samples=2,
        config=SamplingConfig(max_new_tokens=8),
        seed=5,
    )
    assert len(RATED) == 2 * 6  # one principle: each of the 6 policy and 6 baseline samples rated once
    assert wr.n + wr.failed == 6 and wr.failed == 0 and report["judge"]["mode"] == "score"
    for c in report["comparisons"]:
        polite = ("please" in c["policy"].lower(), "please" in c["baseline"].lower())
        assert c["label"] == ("tie" if polite[0] == polite[1] else "win" if polite[0] else "loss")


class _PairsOnly(Judge):
    """A judge class that answers pairwise queries only, whatever mode its config names."""

    def judge(self, queries):
        return [Verdict(0.5) for _ in queries]


def test_a_judge_that_cannot_answer_as_its_mode_says_is_refused_in_one_line(tmp_path):
    rater = _PairsOnly(PythonJudgeConfig(function=SHORTER, mode="score"))
    line = (
        "the judge is a score judge (mode: score), but its backend (_PairsOnly) has no `score` method to answer as "
        "one: a win rate cannot use it"
    )
    with pytest.raises(ValueError) as e:
        judge_winrate(rater, None, ["p"], ["a"], ["b"])
    assert str(e.value) == line
    with pytest.raises(ValueError) as e:  # before anything is sampled: neither model nor the prompts exist
        evaluate_winrate(
            str(tmp_path / "no-policy"), str(tmp_path / "no-baseline"), tmp_path / "none.jsonl", rater, None
        )
    assert str(e.value) == line
    # the same class configured as a pairwise judge judges: a win rate takes either kind
    assert judge_winrate(_PairsOnly(PythonJudgeConfig(function=SHORTER)), None, ["p"], ["a"], ["b"]).ties == 1
