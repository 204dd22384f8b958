"""d-RLAIF proper: a score judge as the reward, one call per response — in `JudgeReward` (TRL's reward-function
signature), behind `rlaif serve reward` (a real uvicorn server), and in PPO (`reward.type: judge_score`), where a
rule-based score function must teach a tiny policy to say "please" more often."""

from __future__ import annotations

import pytest

from rlaif.config.judge import PythonJudgeConfig
from rlaif.judges.registry import build_judge
from rlaif.rewards.judge_reward import JudgeReward
from tests.helpers import ROOT, shares_before_after

HIGH, LOW = 2 * 7 / 9 - 1, 2 * 2 / 9 - 1  # score_polite's 8 and 3 on the 1..10 scale, rescaled to [-1, 1]


def score_judge(function="tests.judge_fns:score_polite"):
    return build_judge(PythonJudgeConfig(function=function, mode="score"))


def test_the_reward_is_the_rescaled_expected_score_one_call_per_response():
    reward = JudgeReward(score_judge())
    assert reward.mode == "score" and reward.__name__ == "rlaif_judge_score"
    got = reward(
        ["q1", "q1", [{"role": "user", "content": "q2"}]],
        ["please help", "no", [{"role": "assistant", "content": "please"}]],
    )
    assert got == pytest.approx([HIGH, LOW, HIGH])
    assert reward.judged == 3 and reward.failed == 0


def test_a_failed_rating_is_zero_and_counted():
    reward = JudgeReward(score_judge("tests.judge_fns:score_broken"))
    scored = reward.rewards(["q", "q", "q"], ["boom", "fine", "eleven"])
    assert scored.rewards == [0.0, pytest.approx(2 * 4 / 9 - 1), 0.0] and scored.failed == [1, 0, 1]
    assert reward.failed == 2


def test_modes_follow_the_judge_config():
    with pytest.raises(ValueError, match="rates each response alone"):
        JudgeReward(score_judge(), mode="reference")
    pairwise = build_judge(PythonJudgeConfig(function="rlaif.rules:prefer_keyword"))
    with pytest.raises(ValueError, match="needs a score judge"):
        JudgeReward(pairwise, mode="score")
    assert JudgeReward(pairwise).mode == "reference"


def test_serve_reward_with_a_score_judge(tmp_path):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi", reason="the reward server needs the human extra")
    from tests.rewards.test_serve_reward import CliServer

    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: python\nmode: score\nfunction: tests.judge_fns:score_polite\n")
    with CliServer(tmp_path, "--judge", judge) as srv:
        reply = httpx.post(
            srv.url + "/get_reward",
            json={"query": ["Q: hi\nA: please do", "Q: hi\nA: no"], "prompts": ["Q: hi\nA:", "Q: hi\nA:"]},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["rewards"] == pytest.approx([HIGH, LOW])  # no reference needed
        assert httpx.get(srv.url + "/health", timeout=5).json()["mode"] == "score"


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_ppo_with_judge_score_makes_the_policy_say_please_more_often(tmp_path):
    """Learning test (the shape of tests/recipes/test_train_ppo.py's): a rule-based score function (8 for
    'please', 3 otherwise) as the d-RLAIF reward; the share of samples containing "please" must rise."""
    from rlaif.config.train import load_train_config
    from rlaif.recipes.ppo import train
    from rlaif.train.metrics import read_metrics

    labels = ROOT / "examples/tiny/data/labels.jsonl"
    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: python\nmode: score\nfunction: tests.judge_fns:score_polite\n")
    out = tmp_path / "run"
    config = load_train_config(
        ROOT / "examples/tiny/ppo.yaml",
        "ppo",
        [
            f"output_dir={out}",
            f"prompts.path={labels}",
            f"reward={{type: judge_score, judge: {judge}}}",
            "max_steps=25",
            "save_steps=25",
            "eval_steps=25",
        ],
    )
    train(config)
    rows = read_metrics(out)
    before, after = shares_before_after(config.model, out, labels)
    first = sum(r["score"] for r in rows[:5]) / 5
    last = sum(r["score"] for r in rows[-5:]) / 5
    print(f"'please' share {before:.3f} -> {after:.3f}; score {first:.3f} -> {last:.3f}")
    assert all(r["judge_failed"] == 0 for r in rows)
    assert last > first + 0.25, (first, last)
    assert after >= before + 0.4, (before, after)
