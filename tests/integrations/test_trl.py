"""Tier 2: rlaif.integrations.trl on tiny random Llamas built from examples/tiny (no download). `rlaif export
--format trl` writes the rows; TRL's own data path (the tokenising map, remove_unused_columns, the collator)
carries `p_chosen` to the loss; the first logged loss equals `rlaif train`'s on the same model and batch to 1e-6,
and differs from what TRL's own trainer computes from the same rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlaif.config.train import load_train_config
from rlaif.train.metrics import read_metrics
from tests.helpers import ROOT, run_cli

trl = pytest.importorskip("trl", reason="trl is a test-only dependency (pip install -e '.[dev]')")
datasets = pytest.importorskip("datasets")

from rlaif.integrations.trl import SoftDPOTrainer, SoftRewardTrainer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

TINY = ROOT / "examples/tiny"
N = 8  # one batch: every step of either side sees the same pairs
P_CHOSEN = [0.95, 0.6, 0.75, 0.55, 0.9, 0.7, 0.85, 0.65]  # distinct soft labels, none of them 1


def conversational_labels(path: Path) -> Path:
    """The first N decided tiny labels as conversations (the tiny tokenizer's chat template encodes them on both
    sides alike) with distinct soft labels, in a's favour or b's as their label says."""
    records = [json.loads(line) for line in (TINY / "data/labels.jsonl").read_text().splitlines()]
    records = [r for r in records if r["label"] in ("a", "b")][:N]
    for r, p in zip(records, P_CHOSEN):
        r.update(
            prompt=[{"role": "user", "content": r["prompt"]}],
            conversational=True,
            p_a=p if r["label"] == "a" else 1.0 - p,
        )
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def export_rows(labels: Path, out: Path):
    done = run_cli("export", "--labels", labels, "--format", "trl", "--out", out)
    assert done.returncode == 0, done.stderr
    return datasets.load_dataset("json", data_files=str(out), split="train")


def saved_tiny(path: Path, method: str, head: str) -> Path:
    from rlaif.train.models import build_tiny, build_tokenizer

    cfg = load_train_config(TINY / f"{method}.yaml", method)
    tok = build_tokenizer(cfg.model)
    build_tiny(cfg.model, tok, head).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def ours(method: str, out: Path, model: Path, labels: Path, *overrides: str) -> list[dict]:
    """`rlaif train METHOD` (the recipe) on the saved model: every step one batch of all N pairs."""
    from rlaif.recipes import run_recipe

    run_recipe(
        load_train_config(
            TINY / f"{method}.yaml",
            method,
            [
                f"output_dir={out}",
                f"feedback.ai={labels}",
                f"model={{type: pretrained, path: {model}}}",
                f"batch_size={N}",
                "pairs.eval_fraction=0",
                "optim.warmup_steps=0",
                *overrides,
            ],
        )
    )
    return read_metrics(out)


def trl_args(config_class, out: Path, **kw):
    return config_class(
        **{
            **dict(
                output_dir=str(out),
                per_device_train_batch_size=N,
                max_steps=1,
                learning_rate=0.0,
                bf16=False,
                gradient_checkpointing=False,
                logging_steps=1,
                report_to=[],
                use_cpu=True,
                save_strategy="no",
                seed=0,
            ),
            **kw,
        }
    )


def first_loss(trainer) -> float:
    trainer.train()
    return next(h["loss"] for h in trainer.state.log_history if "loss" in h)


def test_export_names_the_integration_for_trl_users(tmp_path):
    labels = conversational_labels(tmp_path / "labels.jsonl")
    done = run_cli("export", "--labels", labels, "--format", "trl", "--out", tmp_path / "rows.jsonl")
    assert done.returncode == 0 and json.loads(done.stdout)["written"] == N  # stdout stays one JSON object
    notes = [line for line in done.stderr.splitlines() if "p_chosen" in line]
    assert len(notes) == 1 and "ignore" in notes[0] and "rlaif.integrations.trl" in notes[0]


def test_soft_dpo_in_trl_matches_rlaif_train_dpo_and_differs_from_trl_dpo(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    labels = conversational_labels(tmp_path / "labels.jsonl")
    rows = export_rows(labels, tmp_path / "rows.jsonl")
    start = saved_tiny(tmp_path / "start", "dpo", "lm")
    # two steps of ours: step 2's loss is the policy after one update against the starting reference (Δ ≠ 0)
    metrics = ours(
        "dpo", tmp_path / "ours", start, labels, "max_steps=2", "save_steps=1", "optim.lr=1e-2", "loss.beta=0.1"
    )
    policy_dir = tmp_path / "ours/checkpoint-1"

    def trainer(cls, dataset, **kw):
        return cls(
            model=AutoModelForCausalLM.from_pretrained(policy_dir, dtype=torch.float32),
            ref_model=AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32),
            args=trl_args(trl.DPOConfig, tmp_path / "trl", beta=0.1, **kw),
            train_dataset=dataset,
            processing_class=AutoTokenizer.from_pretrained(start),
        )

    soft = trainer(SoftDPOTrainer, rows)
    batch = next(iter(soft.get_train_dataloader()))  # through the map, remove_unused_columns and the collator
    assert sorted(batch["p_chosen"].tolist()) == pytest.approx(sorted(P_CHOSEN))
    soft_loss = first_loss(soft)
    assert soft_loss == pytest.approx(metrics[1]["loss"], abs=1e-6)
    hard_loss = first_loss(trainer(trl.DPOTrainer, rows))
    assert abs(soft_loss - hard_loss) > 1e-3  # TRL's own trainer reads the same rows as p_chosen = 1
    # at p_chosen = 1 the soft loss is TRL's, with TRL's reference log-probs precomputed this time
    ones = rows.map(lambda r: {"p_chosen": 1.0})
    assert first_loss(trainer(SoftDPOTrainer, ones, precompute_ref_log_probs=True)) == pytest.approx(
        hard_loss, abs=1e-6
    )


def test_soft_reward_trainer_matches_rlaif_train_reward_and_differs_from_trl(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    labels = conversational_labels(tmp_path / "labels.jsonl")
    rows = export_rows(labels, tmp_path / "rows.jsonl")
    start = saved_tiny(tmp_path / "start", "reward", "score")
    metrics = ours("reward", tmp_path / "ours", start, labels, "max_steps=1")

    def trainer(cls, dataset):
        return cls(
            model=AutoModelForSequenceClassification.from_pretrained(start, num_labels=1, dtype=torch.float32),
            args=trl_args(trl.RewardConfig, tmp_path / "trl"),
            train_dataset=dataset,
            processing_class=AutoTokenizer.from_pretrained(start),
        )

    soft = trainer(SoftRewardTrainer, rows)
    assert sorted(next(iter(soft.get_train_dataloader()))["p_chosen"].tolist()) == pytest.approx(sorted(P_CHOSEN))
    soft_loss = first_loss(soft)
    assert soft_loss == pytest.approx(metrics[0]["loss"], abs=1e-6)
    hard_loss = first_loss(trainer(trl.RewardTrainer, rows))
    assert abs(soft_loss - hard_loss) > 1e-3
    assert first_loss(trainer(SoftRewardTrainer, rows.map(lambda r: {"p_chosen": 1.0}))) == pytest.approx(
        hard_loss, abs=1e-6
    )


def test_rows_without_p_chosen_and_unsupported_settings_are_refused(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = export_rows(conversational_labels(tmp_path / "labels.jsonl"), tmp_path / "rows.jsonl")
    start = saved_tiny(tmp_path / "start", "dpo", "lm")

    def build(dataset, **kw):
        return SoftDPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(start),
            train_dataset=dataset,
            args=trl_args(trl.DPOConfig, tmp_path / "trl", **kw),
            processing_class=AutoTokenizer.from_pretrained(start),
        )

    with pytest.raises(ValueError, match="train_dataset has no 'p_chosen' column"):
        build(rows.remove_columns("p_chosen"))
    with pytest.raises(ValueError, match="loss_type"):
        build(rows, loss_type=["ipo"])
    with pytest.raises(ValueError, match=r"p_chosen must be a probability in \[0, 1\], got 1.5"):
        first_loss(build(rows.map(lambda r: {"p_chosen": 1.5})))


def test_a_diverging_trl_run_stops_before_the_step_and_never_saves_infinite_weights(tmp_path):
    """lr 1e30: step 2's loss is NaN, and SoftDPOTrainer stops before applying it, checkpoint-1 the last one kept.
    lr 1e300: step 1 (finite loss and gradients) turns the weights infinite; save_model refuses to write them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlaif.integrations.trl import StopOnDivergence
    from rlaif.numbers import TrainingDiverged

    rows = export_rows(conversational_labels(tmp_path / "labels.jsonl"), tmp_path / "rows.jsonl")
    start = saved_tiny(tmp_path / "start", "dpo", "lm")

    def build(out: Path, lr: float, steps: int, **kw):
        return SoftDPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(start),
            train_dataset=rows,
            args=trl_args(trl.DPOConfig, out, learning_rate=lr, max_steps=steps, lr_scheduler_type="constant", **kw),
            processing_class=AutoTokenizer.from_pretrained(start),
        )

    out = tmp_path / "nan"
    trainer = build(out, 1e30, 3, save_strategy="steps", save_steps=1)
    assert any(isinstance(c, StopOnDivergence) for c in trainer.callback_handler.callbacks)
    # the loss or the gradient, whichever is not finite first (here: the gradient)
    with pytest.raises(
        TrainingDiverged,
        match=rf"^step 2/3: (loss is nan|the gradient of [\w.]+ is not finite) "
        rf"\(lr 1e\+30\); .*: {out}/checkpoint-1 stays the last checkpoint, "
        r"the one trainer.train\(resume_from_checkpoint=True\) resumes from$",
    ):
        trainer.train()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]

    trainer = build(tmp_path / "inf", 1e300, 1)
    trainer.train()
    with pytest.raises(TrainingDiverged, match=r"^step 1/1: the weights after it are not finite"):
        trainer.save_model(str(tmp_path / "final"))
    assert not (tmp_path / "final").exists()
