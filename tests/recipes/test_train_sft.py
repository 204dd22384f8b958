"""Tiers 1, 2, 4 and 5 for `rlaif train sft`: the masked loss by hand, one step against TRL's SFTTrainer on the
same tiny model and batch, resume after a SIGKILL of a real subprocess at the checkpoint step, and a learning test:
trained on revisions that say "please" (rlaif.rules:keyword_reviser through `rlaif revise`), the policy says it
measurably more often."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from rlaif.config.train import load_train_config
from rlaif.train.losses import sft_loss
from rlaif.train.metrics import read_metrics
from tests.helpers import ROOT, keyword_share, kill_then_resume, rlaif_command

CAI = ROOT / "examples/tiny/cai"
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def sft_rows(tmp_path_factory) -> Path:
    """SFT rows from `rlaif revise` with the rule reviser over the tiny example's prompts (the export's own
    route: revise → export --format sft)."""
    from rlaif.revision.export import export_revisions
    from rlaif.revision.job import revise

    tmp = tmp_path_factory.mktemp("sft-rows")
    revise(CAI / "prompts.jsonl", CAI / "constitution.yaml", CAI / "reviser.yaml", tmp / "revisions", progress=False)
    export_revisions(tmp / "revisions", tmp / "sft.jsonl", "sft")
    return tmp / "sft.jsonl"


def tiny_config(out: Path, rows: Path, *overrides: str):
    """examples/tiny/cai/sft.yaml, starting from the tiny policy examples/tiny/dpo.yaml builds (no saved start)."""
    model = load_train_config(ROOT / "examples/tiny/dpo.yaml", "dpo").model.model_dump()
    return load_train_config(
        CAI / "sft.yaml", "sft", [f"output_dir={out}", f"data.paths=[{rows}]", f"model={json.dumps(model)}", *overrides]
    )


def run(config) -> list[dict]:
    from rlaif.recipes.sft import train

    train(config)
    return read_metrics(config.output_dir)


def test_the_masked_loss_by_hand():
    logits = torch.tensor(
        [[[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0]], [[0.3, 0.1, -0.2], [1.5, 0.0, 0.0], [-2.0, 1.0, 0.0]]]
    )
    targets = torch.tensor([[1, 2, 0], [0, 0, 1]])
    mask = torch.tensor([[0, 1, 1], [1, 0, 0]])  # the prompt's positions and padding carry no loss
    by_hand = 0.0
    for i in range(2):
        for t in range(3):
            if mask[i, t]:
                z = logits[i, t].tolist()
                by_hand -= z[targets[i, t]] - math.log(sum(math.exp(v) for v in z))
    assert sft_loss(logits, targets, mask, mask.sum()).item() == pytest.approx(by_hand / 3, abs=1e-6)
    assert sft_loss(logits, targets, mask, 1.0).item() == pytest.approx(by_hand, abs=1e-6)  # the sum


def test_the_terms_of_a_batch_are_the_masked_loss_of_a_plain_forward(tiny_model_dir):
    """sft_terms (logits only from the first response position on) against a plain forward over every position,
    shifted and masked by hand."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlaif.train.sft import SFTExample, encode_examples, example_batch, sft_terms

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    examples, dropped = encode_examples(
        tok,
        [
            SFTExample("How do I bake bread?", "Mix, knead, rest and bake."),
            SFTExample([{"role": "user", "content": "Hi"}], "Hello!"),
        ],
        512,
    )
    batch = example_batch(examples, [0, 1], tok.pad_token_id, 512, "cpu")
    with torch.no_grad():
        terms = sft_terms(model, batch)
        logp = torch.log_softmax(
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1], dim=-1
        )
    picked = logp.gather(-1, batch["input_ids"][:, 1:, None])[..., 0]
    mask = batch["completion_mask"][:, 1:]
    n_responses = sum(len(e.response_ids) for e in examples)
    assert dropped == 0 and terms["response_tokens"].item() == mask.sum().item() == n_responses
    assert terms["tokens"].item() == batch["attention_mask"].sum().item() > n_responses  # prompts too
    assert terms["loss"].item() == pytest.approx(-(picked * mask).sum().item(), abs=1e-4)


def test_first_steps_match_trl_sft_trainer(tmp_path, sft_rows):
    """TRL 1.16's SFTTrainer (prompt-completion rows, so its loss is on the completion only, as ours) and ours on
    the same tiny model and batch of 8: the same loss and gradient norm at steps 1 and 2 (step 2 follows one AdamW
    update, so it checks the gradient, not only the forward)."""
    trl = pytest.importorskip("trl", reason="trl is a test-only dependency (pip install -e '.[dev]')")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlaif.train.models import build_tiny, build_tokenizer

    model_config = tiny_config(tmp_path / "unused", sft_rows).model
    tok = build_tokenizer(model_config)
    build_tiny(model_config, tok, "lm").save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    rows = [json.loads(line) for line in sft_rows.read_text().splitlines()[:8]]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    trl_rows = [{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in rows]
    args = trl.SFTConfig(
        output_dir=str(tmp_path / "trl"),
        per_device_train_batch_size=8,
        max_steps=2,
        bf16=False,
        gradient_checkpointing=False,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        learning_rate=1e-3,
        lr_scheduler_type="linear",
        warmup_steps=0,
        max_grad_norm=1.0,
        seed=0,
        max_length=64,
    )
    trainer = trl.SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tmp_path / "m", dtype=torch.float32),
        args=args,
        train_dataset=Dataset.from_list(trl_rows),
        processing_class=AutoTokenizer.from_pretrained(tmp_path / "m"),
    )
    trainer.train()
    theirs = [h for h in trainer.state.log_history if "loss" in h]

    ours = run(
        tiny_config(
            tmp_path / "ours",
            tmp_path / "rows.jsonl",
            "max_steps=2",
            "batch_size=8",
            "optim.warmup_steps=0",
            "optim.lr=1e-3",
            "optim.scheduler=linear",
            "optim.max_grad_norm=1.0",
            "data.eval_fraction=0",
            f"model={{type: pretrained, path: {tmp_path / 'm'}}}",
        )
    )
    assert len(theirs) == len(ours) == 2
    for t, o in zip(theirs, ours):
        assert o["loss"] == pytest.approx(t["loss"], abs=1e-5)
        assert o["grad_norm"] == pytest.approx(t["grad_norm"], abs=1e-5)
    assert ours[1]["loss"] < ours[0]["loss"]  # the second step really is after an update


@pytest.mark.slow
def test_sigkill_then_same_command_resumes_at_the_checkpoint_step(tmp_path, sft_rows):
    out, steps = tmp_path / "run", 16
    config = tiny_config(out, sft_rows, f"max_steps={steps}", "save_steps=5", "eval_steps=8", "batch_size=8")
    (tmp_path / "sft.yaml").write_text(json.dumps(config.model_dump(mode="json")))
    resumed = kill_then_resume(
        rlaif_command("train", "sft", "--config", tmp_path / "sft.yaml"), out, steps, kill_after=8
    )
    straight = run(config.model_copy(update={"output_dir": str(tmp_path / "straight")}))
    for a, b in zip(resumed, straight):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5), a["step"]
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)
    assert resumed[-1]["eval_loss"] == pytest.approx(straight[-1]["eval_loss"], abs=1e-5)


@pytest.mark.slow
def test_sft_on_revisions_makes_the_policy_say_please_more_often(tmp_path, sft_rows):
    """Learning test: the final revisions of the rule reviser all say "please"; after SFT on them the share of
    policy samples containing it rises well above the starting policy's, on held-out prompts."""
    from transformers import AutoModelForCausalLM

    from rlaif.train.models import build_tiny, build_tokenizer

    config = tiny_config(tmp_path / "run", sft_rows, "max_steps=30", "save_steps=30", "eval_steps=30")
    rows = run(config)
    tok = build_tokenizer(config.model)
    prompts = [json.loads(line)["prompt"] for line in (CAI / "heldout.jsonl").read_text().splitlines()]
    before = keyword_share(build_tiny(config.model, tok, "lm"), tok, prompts)
    after = keyword_share(AutoModelForCausalLM.from_pretrained(tmp_path / "run/model"), tok, prompts)
    print(
        f"share of samples containing 'please': before {before:.3f}, after {after:.3f}; "
        f"loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}, eval_loss {rows[-1]['eval_loss']:.4f}"
    )
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.3
    assert after >= before + 0.3, (before, after)
    # every method logs step_s and tokens: here the prompts' tokens as well as the responses'
    assert all(r["step_s"] > 0 and r["tokens"] > r["response_tokens"] > 0 for r in rows)


def test_lora_trains_adapters_only(tmp_path, sft_rows):
    rows = run(
        tiny_config(
            tmp_path / "lora",
            sft_rows,
            "max_steps=2",
            "batch_size=8",
            "lora={r: 4, alpha: 8}",
            "optim.lr=1e-2",
            "optim.warmup_steps=0",
        )
    )
    assert (tmp_path / "lora/model/adapter_config.json").exists()
    assert not (tmp_path / "lora/model/model.safetensors").exists()
    assert rows[1]["loss"] < rows[0]["loss"] and "eval_loss" in rows[-1]


@pytest.mark.slow
def test_two_processes_and_gradient_accumulation_match_one_batch(tmp_path, sft_rows):
    """The token mean is over the global batch: two processes (torchrun, gloo) of 4 examples each, and one
    process of 2 micro-batches of 4, log the losses and gradient norms of one batch of 8."""
    import os
    import subprocess
    import sys

    common = ["max_steps=3", "save_steps=3", "eval_steps=3"]
    one = run(tiny_config(tmp_path / "one", sft_rows, "batch_size=8", *common))
    accumulated = run(tiny_config(tmp_path / "accum", sft_rows, "batch_size=4", "grad_accum=2", *common))
    config = tiny_config(tmp_path / "ddp", sft_rows, "batch_size=4", *common)
    (tmp_path / "ddp.yaml").write_text(json.dumps(config.model_dump(mode="json")))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "rlaif.cli",
            "train",
            "sft",
            "--config",
            str(tmp_path / "ddp.yaml"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 steps of 8 examples" in done.stdout  # 4 examples per process × 2 processes
    ddp = read_metrics(tmp_path / "ddp")
    for rows in (accumulated, ddp):
        assert [r["step"] for r in rows] == [1, 2, 3]
        for a, b in zip(rows, one):
            assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
            assert a["grad_norm"] == pytest.approx(b["grad_norm"], abs=1e-5)
        assert rows[-1]["eval_loss"] == pytest.approx(one[-1]["eval_loss"], abs=1e-5)


@pytest.mark.parametrize(
    "row, error",
    [
        (
            {"messages": [{"role": "user"}, {"role": "assistant", "content": "ok"}]},
            "messages[0] must be a message object with string 'role' and 'content'",
        ),  # the field as written, not prompt
        ({"messages": 7}, "messages must be a list of chat messages ending with the assistant's turn"),
        ({"prompt": "p", "completion": ""}, "completion is empty: an example needs a response to train on"),
        (
            {"prompt": "p", "completion": 3},
            "completion must be the response text (or one assistant message), not a number",
        ),
    ],
)
def test_a_bad_row_is_named_at_its_line_in_its_own_words(tmp_path, row, error):
    from rlaif.data.formats import DataError
    from rlaif.train.sft import read_examples

    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "fine"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError) as e:
        read_examples([str(path)])
    assert str(e.value).startswith(f"{path}:2: {error}")


def test_too_few_examples_for_a_batch_are_called_examples(tmp_path, sft_rows):
    rows = tmp_path / "three.jsonl"
    rows.write_text("".join(sft_rows.read_text().splitlines(keepends=True)[:3]))
    with pytest.raises(ValueError, match=r"^3 training examples are fewer than one global batch of 8 "):
        run(tiny_config(tmp_path / "run", rows, "batch_size=8", "data.eval_fraction=0"))
