"""JudgeReward: the judge as a scalar reward with TRL's reward-function signature. Values are checked by hand
against the rule judge rlaif.rules:prefer_keyword (P = 0.9 for the response saying "please" when only one does,
0.5 otherwise), and one test hands the reward to TRL's GRPOTrainer on a tiny random model."""

from __future__ import annotations

import pytest
import yaml

from rlaif.config.judge import PythonJudgeConfig
from rlaif.judges.registry import load_judge
from rlaif.rewards.judge_reward import JudgeReward, judge_reward
from tests.helpers import ROOT


def keyword_judge():
    return load_judge(PythonJudgeConfig(function="rlaif.rules:prefer_keyword"))


def approx(values):
    return pytest.approx(values, abs=1e-9)


# -- reference mode ------------------------------------------------------------------------------------------------
def test_reference_mode_hand_checked():
    # please vs not: P(first) is 0.9 when it is shown first and 0.1 when shown second, so both orders say
    # P(response ≻ reference) = 0.9 and the reward is 2·0.9 − 1 = 0.8; the reverse gives −0.8; equal gives 0.
    reward = JudgeReward(keyword_judge(), mode="reference")
    got = reward(
        ["q1", "q2", "q3", "q4"],
        ["please do it", "do it", "please do it", "do it"],
        reference=["do it", "please do it", "please, fine", "no"],
    )
    assert got == approx([0.8, -0.8, 0.0, 0.0])
    assert reward.__name__ == "rlaif_judge_reference"
    # the two ties prefer neither order, so only the two decided pairs count as position-consistent
    assert reward.judged == 4 and reward.failed == 0 and reward.position_consistent == 2


def test_reference_from_another_column_and_from_a_function():
    by_column = JudgeReward(keyword_judge(), reference_column="baseline")
    assert by_column(["q"], ["please"], baseline=["no"]) == approx([0.8])
    seen = []

    def refs(prompts):
        seen.extend(prompts)
        return ["please" for _ in prompts]

    by_fn = JudgeReward(keyword_judge(), reference_fn=refs)
    assert by_fn(["q1", [{"role": "user", "content": "q2"}]], ["no", "please"]) == approx([-0.8, 0.0])
    assert seen == ["q1", [{"role": "user", "content": "q2"}]]


def test_conversational_prompts_and_completions_as_trl_passes_them():
    prompts = [
        [{"role": "system", "content": "be kind"}, {"role": "user", "content": "fix my car"}],
        [{"role": "user", "content": "make tea"}],
    ]
    completions = [[{"role": "assistant", "content": "please try this"}], [{"role": "assistant", "content": "no"}]]
    reference = [[{"role": "assistant", "content": "no"}], "please"]  # a reference column may hold either
    reward = JudgeReward(keyword_judge())
    assert reward(
        prompts=prompts, completions=completions, reference=reference, completion_ids=[[1], [2]], trainer_state=None
    ) == approx([0.8, -0.8])


def test_judge_reward_from_yaml_files(tmp_path):
    (tmp_path / "judge.yaml").write_text(
        "backend: python\nfunction: rlaif.rules:prefer_keyword\nkwargs: {keyword: thanks, confidence: 0.75}\n"
    )
    reward = judge_reward(tmp_path / "judge.yaml", ROOT / "constitutions" / "helpful.yaml", mode="reference")
    assert reward.constitution.name == "helpful"
    # 2·0.75 − 1 = 0.5, whichever principle of the constitution is drawn (the rule ignores the principle text,
    # and an inverted principle flips both orders back)
    got = reward(["q", "q"], ["thanks a lot", "ok"], reference=["ok", "ok"])
    assert got[0] == pytest.approx(0.5) and got[1] == pytest.approx(0.0)


# -- group mode ----------------------------------------------------------------------------------------------------
def test_group_mode_round_robin_hand_checked():
    # Prompt p: A says please, B and C do not. Games: A-B 0.9, A-C 0.9, B-C 0.5.
    # A: (0.9 + 0.9)/2 = 0.9 → 0.8; B: (0.1 + 0.5)/2 = 0.3 → −0.4; C the same. Prompt q: its two responses
    # tie (0.5 → 0) and are never compared with p's. A prompt with one response has no one to beat: 0.
    reward = JudgeReward(keyword_judge(), mode="group")
    got = reward(["p", "p", "q", "p", "q", "lonely"], ["please A", "B", "please x", "C", "please y", "anything"])
    assert got == approx([0.8, -0.4, 0.0, -0.4, 0.0, 0.0])
    assert reward.judged == 4  # 3 games for p, 1 for q, none for the lonely prompt
    assert reward.__name__ == "rlaif_judge_group"


def test_group_mode_groups_conversational_prompts_by_content():
    p1 = [{"role": "user", "content": "same"}]
    p1_copy = [{"content": "same", "role": "user"}]  # key order does not split a group
    reward = JudgeReward(keyword_judge(), mode="group")
    assert reward([p1, p1_copy], [[{"role": "assistant", "content": "please"}], "no"]) == approx([0.8, -0.8])


# -- errors and failures -------------------------------------------------------------------------------------------
def test_errors_name_the_problem():
    reward = JudgeReward(keyword_judge())
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        reward(["a", "b"], ["x"], reference=["r", "r"])
    with pytest.raises(ValueError, match="no 'reference' column and no reference_fn"):
        reward(["a"], ["x"])
    with pytest.raises(ValueError, match="1 references for 2 completions"):
        reward(["a", "b"], ["x", "y"], reference=["r"])
    with pytest.raises(ValueError, match="a completion must be text or a list of chat messages, got int"):
        reward(["a"], [3], reference=["r"])
    with pytest.raises(ValueError, match="mode must be reference or group"):
        JudgeReward(keyword_judge(), mode="pairs")


def test_failed_verdicts_give_zero_and_are_counted():
    judge = load_judge(PythonJudgeConfig(function="tests.judge_fns:broken"))  # raises on "boom", else 0.7
    logged = []
    reward = JudgeReward(judge)
    got = reward(
        ["q", "q", "q"],
        ["fine", "boom", "ok"],
        reference=["x", "x", "x"],
        log_metric=lambda name, value: logged.append((name, value)),
    )
    # 0.7 in both orders: P(response ≻ reference) = (0.7 + 0.3)/2 = 0.5 → 0; the failed one is 0 too, but counted
    assert got == approx([0.0, 0.0, 0.0])
    assert reward.failed == 1 and reward.judged == 3
    assert logged == [("rlaif_judge_reference/failed", 1.0)]
    scored = reward.rewards(["q", "q"], ["boom", "fine"], ["x", "x"])
    assert scored.failed == [1, 0] and reward.failed == 2

    group = JudgeReward(judge, mode="group")
    scored = group.rewards(["p", "p", "p"], ["boom", "a", "b"])
    # boom fails both its games (ties); a-b is 0.7 vs 0.3 in the two orders → 0.5: every reward is 0
    assert scored.rewards == approx([0.0, 0.0, 0.0]) and scored.failed == [2, 1, 1]
    assert group.failed == 2 and group.judged == 3  # two of the three games failed


def test_score_is_a_deprecated_name_of_rewards():
    reward = JudgeReward(keyword_judge(), mode="reference")
    args = (["q1", "q2"], ["please do it", "do it"], ["do it", "please do it"])
    with pytest.warns(DeprecationWarning, match=r"JudgeReward\.rewards") as caught:
        old = reward.score(*args)
    assert caught[0].filename == __file__  # the warning points at the caller's line
    assert old == reward.rewards(*args)
    assert old.rewards == approx([0.8, -0.8]) and old.failed == [0, 0]


# -- TRL -----------------------------------------------------------------------------------------------------------
def test_grpo_trainer_uses_the_judge_reward(tmp_path):
    """TRL's GRPOTrainer (1.16) runs one step on a tiny random policy with JudgeReward as its reward function;
    the rewards it logs under the function's name are the ones JudgeReward returned."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from rlaif.config.run import TinyModelConfig
    from rlaif.train.models import build_tiny, build_tokenizer

    vocab = yaml.safe_load((ROOT / "examples" / "tiny" / "dpo.yaml").read_text())["model"]["vocab"]
    cfg = TinyModelConfig(vocab=vocab, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1)
    tokenizer = build_tokenizer(cfg)
    policy = build_tiny(cfg, tokenizer, "lm")

    reward = JudgeReward(keyword_judge(), mode="reference")
    returned, seen = [], []
    rewards = reward.rewards

    def spy(prompts, completions, references=None):
        out = rewards(prompts, completions, references)
        returned.extend(out.rewards)
        seen.extend(zip(completions, references))
        return out

    reward.rewards = spy

    data = Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": "how do i fix my car"}], [{"role": "user", "content": "make tea"}]],
            "reference": ["ok", "please try this"],
        }
    )
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=6,
        use_cpu=True,
        bf16=False,
        fp16=False,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
        seed=0,
    )
    trainer = GRPOTrainer(
        model=policy, processing_class=tokenizer, reward_funcs=[reward], train_dataset=data, args=args
    )
    trainer.train()

    logged = next(row for row in trainer.state.log_history if "rewards/rlaif_judge_reference/mean" in row)
    assert len(returned) == 4  # 2 prompts × 2 generations, scored in one call
    assert logged["rewards/rlaif_judge_reference/mean"] == pytest.approx(sum(returned) / 4, abs=1e-6)
    assert logged["rlaif_judge_reference/failed"] == 0.0
    # each reward is the rule's verdict on what the policy actually wrote (a conversational completion)
    for r, (completion, reference) in zip(returned, seen):
        said, ref_said = "please" in completion[-1]["content"], "please" in reference
        assert r == pytest.approx(0.0 if said == ref_said else (0.8 if said else -0.8))
