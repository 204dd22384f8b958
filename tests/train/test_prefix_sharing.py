"""Tiers 1, 2 and 5: shared-prefix rows [prompt, a, b] (rlaif/models/prefix.py) compute what two rows per pair
compute, in fp32, on tiny random models built here: a Llama with grouped-query attention and rotary positions, a
model of SmolLM2-135M's shape (its head, width and tying ratios, scaled down), and a Qwen2 (biased projections).
Pairs have prompts and responses of unequal lengths, some cut by max_length; shared rows are right- and
left-padded, or packed (every pair of the batch in one row). Per-pair log-probs (policy and reference) agree
within 1e-5, losses within 1e-6 (relative above 1), every parameter's gradient within 1e-5 relative error (one DPO
step, one reward-model step), and ten DPO steps of the tiny example log the same losses. `auto` stays off where
the rows would not be exact (a sliding window, eager attention), and `true` (or `packing: true`) is refused there."""

from __future__ import annotations

import random
import re

import pytest
import torch

from rlaif.config.dpo import DPOTrainConfig, IPOLoss, SigmoidDPOLoss
from rlaif.config.reward import RewardLossConfig, RewardTrainConfig
from rlaif.models import prefix
from rlaif.recipes.reward import pair_terms as reward_terms
from rlaif.train.data import EncodedPair, collate, collate_shared
from rlaif.train.dpo import pair_terms, response_logps
from rlaif.train.losses import dpo_loss_fn
from rlaif.train.metrics import read_metrics
from rlaif.train.models import share_prefix
from tests.helpers import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

VOCAB, PAD, MAX_LENGTH = 96, 0, 20
LOGP_TOL, LOSS_TOL, GRAD_TOL = 1e-5, 1e-6, 1e-5
MEASURED: dict[str, float] = {}  # the largest differences seen, printed at the end (pytest -s)


def _config(family: str, **extra):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    common = dict(vocab_size=VOCAB, pad_token_id=PAD, num_hidden_layers=2, max_position_embeddings=256, **extra)
    if family == "llama-gqa":
        return LlamaConfig(
            hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, **common
        )
    if family == "smollm2-shape":  # SmolLM2-135M: 9 heads of 64 over 3 KV heads, MLP 8/3 wide, tied, theta 1e5
        return LlamaConfig(
            hidden_size=72,
            intermediate_size=192,
            num_attention_heads=9,
            num_key_value_heads=3,
            tie_word_embeddings=True,
            rope_theta=100000.0,
            rms_norm_eps=1e-5,
            **common,
        )
    if family == "qwen2":
        return Qwen2Config(
            hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, **common
        )
    if family == "mistral-sliding":
        return MistralConfig(
            hidden_size=64,
            intermediate_size=128,
            num_attention_heads=4,
            num_key_value_heads=2,
            sliding_window=8,
            **common,
        )
    raise ValueError(family)


def model(family: str, head: str = "lm", seed: int = 0, **extra):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    torch.manual_seed(seed)
    config = _config(family, **extra)
    if head == "lm":
        return AutoModelForCausalLM.from_config(config)
    config.num_labels = 1
    return AutoModelForSequenceClassification.from_config(config)


def pairs(n: int = 6, seed: int = 0) -> list[EncodedPair]:
    """Pairs of unequal lengths; with max_length 20 some responses are cut, and one prompt nearly fills it."""
    rng = random.Random(seed)

    def ids(lo, hi):
        return [rng.randrange(1, VOCAB) for _ in range(rng.randint(lo, hi))]

    out = [EncodedPair(ids(2, 12), ids(1, 12), ids(1, 12), rng.choice([0.0, 0.3, 0.8, 1.0]), -1) for _ in range(n)]
    out[0].prompt_ids = ids(MAX_LENGTH - 2, MAX_LENGTH - 2)
    return out


def left_padded(batch: dict) -> dict:
    """A shared batch with every row's padding moved before its prompt."""
    out = dict(batch)
    real = batch["attention_mask"].sum(dim=1)
    for key in ("input_ids", "attention_mask", "segment", "branch"):
        out[key] = torch.stack([row.roll(int(row.shape[0] - n)) for row, n in zip(batch[key], real)])
    return out


# one pair per row, right- or left-padded; every pair in one row; half the pairs in each of two right-padded rows
LAYOUTS = ["right", "left", "packed", "two packed rows"]


def shared_batch(layout: str) -> dict:
    if layout == "two packed rows":
        return two_packed_rows()
    batch = collate_shared(pairs(), PAD, MAX_LENGTH, packed=layout == "packed")
    return left_padded(batch) if layout == "left" else batch


def two_packed_rows() -> dict:
    """The first three pairs packed in one row and the other three in another, right-padded to the longer."""
    first, second = (collate_shared(part, PAD, MAX_LENGTH, packed=True) for part in (pairs()[:3], pairs()[3:]))
    second["segment"] = torch.where(second["segment"] >= 0, second["segment"] + 3, -1)  # pairs 3, 4, 5
    width = max(first["input_ids"].shape[1], second["input_ids"].shape[1])
    fill = {"input_ids": PAD, "attention_mask": 0, "segment": -1, "branch": -1}
    out = {k: torch.cat([first[k], second[k]]) for k in first if k not in fill}
    for key, value in fill.items():
        rows = [torch.nn.functional.pad(x[key], (0, width - x[key].shape[1]), value=value) for x in (first, second)]
        out[key] = torch.cat(rows)
    assert (out["segment"] < 0).any()  # one row has padding
    return out


@pytest.fixture(scope="module", autouse=True)
def _report():
    """The largest differences the tests measured, printed after them (shown with pytest -s)."""
    yield
    print("\nshared vs unshared rows, largest differences measured:")
    for what, value in MEASURED.items():
        print(f"  {what}: {value:.2e}")


def note(what: str, value: float) -> float:
    MEASURED[what] = max(MEASURED.get(what, 0.0), value)
    return value


def loss_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a − b|, relative above 1: fp32 resolves IPO's losses (tens per pair) only to a few 1e-6 absolute."""
    a, b = float(a.detach()), float(b.detach())
    return abs(a - b) / max(1.0, abs(b))


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


# -- tier 1: the plan ------------------------------------------------------------------------------------------------
def test_the_plan_hides_a_from_b_and_puts_b_after_the_prompt():
    plan = prefix.one_pair_rows([(2, 2, 1), (1, 1, 2)], width=6)
    P, A, B = prefix.PROMPT, prefix.A, prefix.B
    assert plan.branch.tolist() == [[P, P, A, A, B, -1], [P, A, B, B, -1, -1]]
    assert plan.position_ids().tolist() == [[0, 1, 2, 3, 2, 0], [0, 1, 1, 2, 0, 0]]
    assert plan.predictors()[0, 2:5].tolist() == [1, 2, 1]  # b's first token is predicted from the last prompt token
    assert plan.predictors()[1, 1:4].tolist() == [0, 0, 2]
    mask = plan.mask()[0, 0].int().tolist()
    assert mask == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],  # b: the prompt and itself, never a
        [0, 0, 0, 0, 0, 1],  # padding sees only itself
    ]
    left = prefix.one_pair_rows([(1, 1, 2)], width=6, right=False)
    assert left.position_ids().tolist() == [[0, 0, 0, 1, 1, 2]]


def test_packed_rows_restart_positions_per_pair_and_keep_each_pair_to_itself():
    plan = prefix.packed_rows([[(2, 2, 1), (1, 1, 2)], [(1, 2, 1)]], width=9)
    P, A, B = prefix.PROMPT, prefix.A, prefix.B
    assert plan.packed() and plan.pairs() == 3
    assert plan.segment.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 1], [2, 2, 2, 2, -1, -1, -1, -1, -1]]
    assert plan.branch[0].tolist() == [P, P, A, A, B, P, A, B, B]
    assert plan.position_ids().tolist() == [[0, 1, 2, 3, 2, 0, 1, 1, 2], [0, 1, 2, 1, 0, 0, 0, 0, 0]]
    # how many positions each sees, less one, as the one-pair rows define it
    assert torch.equal(plan.position_ids(), plan.mask()[:, 0].sum(dim=-1) - 1)
    assert plan.predictors()[0, 5:9].tolist() == [5, 5, 5, 7]  # the second pair's b starts from its own prompt
    mask = plan.mask()[0, 0].int()
    assert mask[5:, :5].sum() == 0 and mask[:5, 5:].sum() == 0  # no pair sees another
    assert [(r, start, end) for r, start, end, _ in plan.blocks()] == [(0, 0, 5), (0, 5, 9), (1, 0, 4)]
    for r, start, end, block in plan.blocks():
        assert torch.equal(block[0, 0], plan.mask()[r, 0, start:end, start:end])
    assert not prefix.one_pair_rows([(2, 2, 1), (1, 1, 2)], width=6).packed()


def test_shared_rows_cut_each_response_as_its_own_row_is_cut():
    batch, shared = collate(pairs(), PAD, MAX_LENGTH), collate_shared(pairs(), PAD, MAX_LENGTH)
    rows = batch["input_ids"].tolist()
    n = len(pairs())
    for i, row in enumerate(shared["input_ids"].tolist()):
        branch = shared["branch"][i].tolist()
        prompt = [t for t, b in zip(row, branch) if b == prefix.PROMPT]
        for part, own in ((prefix.A, rows[i]), (prefix.B, rows[n + i])):
            response = [t for t, b in zip(row, branch) if b == part]
            assert prompt + response == own[: len(prompt) + len(response)] and len(prompt + response) <= MAX_LENGTH
            assert all(t == PAD for t in own[len(prompt) + len(response) :])
    # the unshared batch encodes every prompt twice
    assert int(shared["attention_mask"].sum()) == int(batch["attention_mask"].sum()) - sum(
        min(len(p.prompt_ids), MAX_LENGTH) for p in pairs()
    )


# -- tier 2: exactness -----------------------------------------------------------------------------------------------
FAMILIES = ["llama-gqa", "smollm2-shape", "qwen2"]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_per_pair_logps_match_two_rows_per_pair(family, layout):
    policy = model(family).eval()
    with torch.no_grad():
        unshared, n_unshared = response_logps(policy, collate(pairs(), PAD, MAX_LENGTH))
        prefix.enable(policy)
        shared, n_shared = response_logps(policy, shared_batch(layout))
    assert n_shared.tolist() == n_unshared.tolist()
    assert note("log-probs", float((shared - unshared).abs().max())) <= LOGP_TOL


def dpo_config(loss, **extra) -> DPOTrainConfig:
    return DPOTrainConfig(
        output_dir="unused",
        model={"type": "tiny"},
        feedback={"source": "ai", "ai": "unused.jsonl"},
        max_length=MAX_LENGTH,
        loss=loss,
        **extra,
    )


LOSSES = {
    "sigmoid": SigmoidDPOLoss(beta=0.1),
    "cdpo": SigmoidDPOLoss(beta=0.5, label_smoothing=0.2),
    "length-normalised": SigmoidDPOLoss(beta=0.1, length_normalize=True),
    "ipo": IPOLoss(beta=0.1),
}


def dpo_terms(policy, reference, shared: bool, config, layout: str = "right") -> dict:
    batch = shared_batch(layout) if shared else collate(pairs(), PAD, MAX_LENGTH)
    return pair_terms(policy, reference, batch, None, config, dpo_loss_fn(config.loss))


@pytest.mark.parametrize("loss", list(LOSSES))
def test_dpo_losses_and_the_reference_logps_match(loss):
    """Every loss variant (soft labels p_a in {0, 0.3, 0.8, 1} throughout), with the reference run on the fly."""
    config = dpo_config(LOSSES[loss])
    policy, reference = model("llama-gqa", seed=0).eval(), model("llama-gqa", seed=1).eval()
    with torch.no_grad():
        unshared = dpo_terms(policy, reference, False, config)
        ref_unshared, _ = response_logps(reference, collate(pairs(), PAD, MAX_LENGTH))
        prefix.enable(policy), prefix.enable(reference)
        for layout in ("right", "packed"):
            shared = dpo_terms(policy, reference, True, config, layout)
            ref_shared, _ = response_logps(reference, shared_batch(layout))
            assert note("reference log-probs", float((ref_shared - ref_unshared).abs().max())) <= LOGP_TOL
            assert note("DPO loss", loss_error(shared["loss"], unshared["loss"])) <= LOSS_TOL
            for key in ("chosen", "rejected", "kl_data", "logps_chosen", "logps_rejected"):
                assert float(shared[key]) == pytest.approx(float(unshared[key]), abs=1e-4), key
            assert shared["correct"] == unshared["correct"] and shared["tokens"] < unshared["tokens"]


def gradients(module) -> dict[str, torch.Tensor]:
    grads = {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}
    module.zero_grad(set_to_none=True)
    return grads


@pytest.mark.parametrize("family", ["llama-gqa", "smollm2-shape"])
def test_one_dpo_step_has_the_same_gradient_for_every_parameter(family):
    config = dpo_config(LOSSES["sigmoid"])
    policy, reference = model(family, seed=0), model(family, seed=1).eval().requires_grad_(False)
    dpo_terms(policy, reference, False, config)["loss"].backward()
    unshared = gradients(policy)
    prefix.enable(policy), prefix.enable(reference)
    for layout in LAYOUTS:
        dpo_terms(policy, reference, True, config, layout)["loss"].backward()
        shared = gradients(policy)
        assert shared.keys() == unshared.keys() and len(shared) == len(list(policy.parameters()))
        worst = max(relative(shared[k], unshared[k]) for k in unshared)
        assert note("DPO gradient (relative)", worst) <= GRAD_TOL


@pytest.mark.parametrize("family", ["llama-gqa", "smollm2-shape"])
def test_one_reward_model_step_has_the_same_rewards_loss_and_gradients(family):
    config = RewardTrainConfig(
        output_dir="unused",
        model={"type": "tiny"},
        feedback={"source": "ai", "ai": "unused.jsonl"},
        loss=RewardLossConfig(margin=0.5, center_coef=0.01),
    )
    reward_model = model(family, head="score")
    from rlaif.rewards.reward_model import pair_rewards

    unshared_batch = collate(pairs(), PAD, MAX_LENGTH)
    terms = reward_terms(reward_model, unshared_batch, config)
    terms["loss"].backward()
    unshared = gradients(reward_model)
    with torch.no_grad():
        r_unshared = torch.cat(pair_rewards(reward_model, unshared_batch))
    prefix.enable(reward_model)
    for layout in LAYOUTS:
        batch = shared_batch(layout)
        shared_terms = reward_terms(reward_model, batch, config)
        shared_terms["loss"].backward()
        shared = gradients(reward_model)
        with torch.no_grad():
            r_shared = torch.cat(pair_rewards(reward_model, batch))
        assert note("rewards", float((r_shared - r_unshared).abs().max())) <= LOGP_TOL
        assert note("reward-model loss", loss_error(shared_terms["loss"], terms["loss"])) <= LOSS_TOL
        assert shared.keys() == unshared.keys() and len(shared) == len(list(reward_model.parameters()))
        worst = max(relative(shared[k], unshared[k]) for k in unshared)
        assert note("reward-model gradient (relative)", worst) <= GRAD_TOL


# -- where it is exact ------------------------------------------------------------------------------------------------
def test_auto_is_off_where_the_rows_would_not_be_exact_and_true_is_refused_there():
    rows, line = share_prefix("auto", [model("llama-gqa"), model("llama-gqa", seed=1)])
    assert rows == "shared" and "on" in line
    for unexact, why in (
        (model("mistral-sliding"), "sliding window (8 tokens)"),
        (model("llama-gqa", attn_implementation="eager"), "'eager', not sdpa"),
    ):
        rows, line = share_prefix("auto", [unexact])
        assert rows == "two" and why in line
        assert unexact.config._attn_implementation != prefix.NAME  # left as it was
        with pytest.raises(ValueError, match=f"prefix_sharing: true, but .*{why.split()[0]}"):
            share_prefix(True, [unexact])
        refused = f"packing: true needs prefix sharing, which is off here .*{re.escape(why)}"
        with pytest.raises(ValueError, match=refused):
            share_prefix("auto", [unexact], packing=True)
    assert share_prefix(False, [model("llama-gqa")]) == ("two", "prefix sharing off (prefix_sharing: false)")
    with pytest.raises(ValueError, match=r"packing: true needs prefix sharing, .*\(prefix_sharing: false\)"):
        share_prefix(False, [model("llama-gqa")], packing=True)
    assert share_prefix("auto", [model("llama-gqa")], packing=True)[0] == "packed"
    with pytest.raises(ValueError, match="packing: true needs prefix sharing, which prefix_sharing: false turns off"):
        dpo_config(LOSSES["sigmoid"], prefix_sharing=False, packing=True)  # refused when the config is read
    mistral_without_window = model("mistral-sliding")
    mistral_without_window.config.sliding_window = None
    assert share_prefix("auto", [mistral_without_window])[0] == "shared"


def test_the_attention_without_a_plan_is_the_models_own():
    """Sampling and evaluation call a model whose attention is rlaif_prefix without a plan: nothing changes."""
    policy = model("llama-gqa").eval()
    batch = collate(pairs(), PAD, MAX_LENGTH)
    with torch.no_grad():
        before = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        prefix.enable(policy)
        after = policy(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.equal(before, after)


# -- tier 5: the run ---------------------------------------------------------------------------------------------------
TINY = ROOT / "examples/tiny"


def run(kind: str, out, *overrides: str, capsys=None) -> list[dict]:
    from rlaif.config.train import load_train_config
    from rlaif.recipes import run_recipe

    config = load_train_config(
        TINY / f"{kind}.yaml", kind, [f"output_dir={out}", f"feedback.ai={TINY / 'data/labels.jsonl'}", *overrides]
    )
    run_recipe(config)
    return read_metrics(out)


def test_ten_dpo_steps_log_the_same_losses_with_fewer_tokens(tmp_path, capsys):
    common = ["max_steps=10", "batch_size=8", "save_steps=10", "eval_steps=5"]
    shared = run("dpo", tmp_path / "shared", "prefix_sharing=true", *common)
    assert "prefix sharing on" in capsys.readouterr().out
    unshared = run("dpo", tmp_path / "unshared", "prefix_sharing=false", *common)
    assert "prefix sharing off (prefix_sharing: false)" in capsys.readouterr().out
    packed = run("dpo", tmp_path / "packed", "prefix_sharing=true", "packing=true", *common)
    assert "prefix sharing on, packed" in capsys.readouterr().out
    assert [r["step"] for r in shared] == [r["step"] for r in packed] == list(range(1, 11))
    for a, p, b in zip(shared, packed, unshared):
        for key in ("loss", "eval_loss"):
            if key in b:
                assert note("DPO run loss", abs(a[key] - b[key])) <= 1e-4, (a["step"], key)
                assert note("DPO run loss", abs(p[key] - b[key])) <= 1e-4, (p["step"], key)
        assert a["step_s"] > 0 and 0 < a["tokens"] == p["tokens"] < b["tokens"]


def test_reward_steps_log_the_same_losses_and_an_old_run_without_the_field_resumes(tmp_path, capsys):
    import yaml

    shared = run("reward", tmp_path / "shared", "max_steps=2", "save_steps=2", "batch_size=8")
    assert "prefix sharing on" in capsys.readouterr().out  # auto
    unshared = run("reward", tmp_path / "unshared", "max_steps=2", "batch_size=8", "prefix_sharing=false")
    packed = run("reward", tmp_path / "packed", "max_steps=2", "batch_size=8", "packing=true")
    assert "prefix sharing on, packed" in capsys.readouterr().out
    for a, p, b in zip(shared, packed, unshared):
        for run_ in (a, p):
            assert note("reward run loss", abs(run_["loss"] - b["loss"])) <= 1e-4
        assert a["tokens"] == p["tokens"] < b["tokens"] and a["step_s"] > 0
    # a run started before the field existed: its config.yaml has no prefix_sharing, and it resumes
    saved = tmp_path / "shared" / "config.yaml"
    old = yaml.safe_load(saved.read_text())
    del old["prefix_sharing"]
    saved.write_text(yaml.safe_dump(old, sort_keys=False))
    resumed = run("reward", tmp_path / "shared", "max_steps=3", "save_steps=2", "batch_size=8")
    assert [r["step"] for r in resumed] == [1, 2, 3]
    assert "resuming at step 2" in capsys.readouterr().out
