"""Tiers 2, 4 and 5: the self-feedback loop (`rlaif loop`, rlaif/recipes/loop.py) on the tiny random Llama of
examples/tiny/loop.yaml — it writes its run files and moves the weights; with the rule judge preferring "please"
the policy says it measurably more often; the policy can be its own judge; a real `rlaif loop` subprocess killed
with SIGKILL continues with the same command, every step and iteration logged exactly once."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlaif.config.train import load_train_config
from rlaif.train.checkpoint import list_checkpoints
from rlaif.train.metrics import read_metrics
from tests.helpers import ROOT, kill_when, rlaif_command, run_to_end

EXAMPLE = ROOT / "examples/tiny/loop.yaml"
PROMPTS = ROOT / "examples/tiny/data/labels.jsonl"
LN2 = math.log(2)
# a few seconds per loop on one CPU thread: small iterations of the tiny example
SHORT = [
    "iterations=2",
    "steps_per_iteration=3",
    "prompts_per_iteration=24",
    "eval_prompts=16",
    "save_steps=2",
    "batch_size=8",
    "save_total_limit=null",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def loop_config(out: Path, *overrides: str):
    return load_train_config(
        EXAMPLE,
        "loop",
        [f"output_dir={out}", f"prompts={PROMPTS}", f"judge={ROOT / 'judges/rule-keyword.yaml'}", *overrides],
    )


def run(out: Path, *overrides: str) -> tuple[list[dict], list[dict]]:
    """Run the loop in-process; returns (metrics.jsonl rows, iterations.jsonl rows)."""
    from rlaif.recipes.loop import train

    train(loop_config(out, *overrides))
    return read_metrics(out), read_rows(out / "iterations.jsonl")


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def test_a_short_loop_writes_its_files_and_moves_the_weights(tmp_path):
    from transformers import AutoModelForCausalLM

    from rlaif.train.models import build_tiny, build_tokenizer

    out = tmp_path / "run"
    steps, iterations = run(out, *SHORT)
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6]
    assert [r["iteration"] for r in steps] == [1, 1, 1, 2, 2, 2]
    assert all({"loss", "reward_accuracy", "rewards_margin", "lr", "grad_norm"} <= set(r) for r in steps)
    assert all(r["step_s"] > 0 and r["tokens"] > 0 for r in steps)
    # reference: previous: each iteration starts with policy = reference, so its first loss is ln 2
    assert steps[0]["loss"] == pytest.approx(LN2, abs=1e-6) and steps[3]["loss"] == pytest.approx(LN2, abs=1e-6)
    assert steps[2]["loss"] < LN2

    assert [(r["iteration"], r["step"]) for r in iterations] == [(1, 3), (2, 6)]
    for r in iterations:
        assert r["labels_ok"] + r["labels_failed"] == r["pairs"] > 0 and r["labels_tie"] <= r["labels_ok"]
        assert r["winrate"]["n"] + r["winrate"]["failed"] == 16 and 0 <= r["win_rate"] <= 1
        assert 0 <= r["position_consistency"] <= 1 and math.isfinite(r["kl"]) and r["train_pairs"] > 0
        assert r["keyword"] == "please" and 0 <= r["keyword_share"] <= 1 and r["eval_winrate"] is None
    assert iterations[0]["keyword_share_start"] == iterations[1]["keyword_share_start"]  # one fixed baseline

    assert load_train_config(out / "config.yaml", "loop") == loop_config(out, *SHORT)
    assert len((out / "baseline_samples.jsonl").read_text().splitlines()) == 16
    pairs = read_rows(out / "iter-1/pairs.jsonl")
    labels = read_rows(out / "iter-1/labels/labels.jsonl")
    assert len(pairs) == iterations[0]["pairs"] and {r["id"] for r in labels} == {r["id"] for r in pairs}
    assert all(r["judge"]["backend"] == "python" for r in labels)
    assert (out / "iter-1/labels/manifest.json").exists() and (out / "iter-2/reference_logps.pt").exists()
    assert [s for s, _ in list_checkpoints(out)] == [2, 3, 4, 6]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "optimizer.bin", "scheduler.bin"):
        assert (out / "checkpoint-3" / name).exists(), name
    state = json.loads((out / "checkpoint-3/trainer_state.json").read_text())
    assert state["step"] == 3 and state["iteration"] == 1 and state["iteration_done"]

    cfg = loop_config(out)
    before = build_tiny(cfg.model, build_tokenizer(cfg.model), "lm").state_dict()
    after = AutoModelForCausalLM.from_pretrained(out / "model").state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)  # every weight matrix moved


def test_reference_initial_keeps_the_starting_policy_as_reference(tmp_path):
    steps, iterations = run(tmp_path / "run", *SHORT, "reference=initial")
    assert steps[0]["loss"] == pytest.approx(LN2, abs=1e-6)
    assert abs(steps[3]["loss"] - LN2) > 1e-3  # iteration 2's policy has moved away from the starting policy
    assert [r["reference"] for r in iterations] == ["initial", "initial"]


def test_lora_trains_adapters_against_the_base_model(tmp_path):
    steps, _ = run(tmp_path / "run", *SHORT, "lora={r: 4, alpha: 8}", "reference=initial", "optim.lr=1e-2")
    assert (tmp_path / "run/model/adapter_config.json").exists()
    assert not (tmp_path / "run/model/model.safetensors").exists()
    assert (tmp_path / "run/checkpoint-3/adapter_model.safetensors").exists()
    assert steps[0]["loss"] == pytest.approx(LN2, abs=1e-6) and abs(steps[3]["loss"] - LN2) > 1e-3


@pytest.mark.parametrize(
    "override, error",
    [
        ("max_steps=10", "max_steps: does not apply"),
        ("lora={r: 4}", "reference: under LoRA"),
        ("feedback={source: human}", "feedback.human: required when source is human"),
    ],
)
def test_config_rejects_fields_that_do_not_apply(override, error):
    from rlaif.config.yamlfile import ConfigFileError

    assert loop_config(Path("x")).method == "loop"
    with pytest.raises(ConfigFileError, match=error):
        loop_config(Path("x"), override)


def test_packing_gives_the_loops_dpo_steps_the_losses_of_unpacked_rows(tmp_path, capsys):
    """`packing: true` puts each micro-batch's pairs in one row, as in `rlaif train dpo`: an iteration runs on the
    tiny model with the same losses and gradient norms as one pair per row (the same samples and labels), and the
    same real tokens; packing with prefix sharing off is refused when the config is read."""
    import yaml

    from rlaif.config.yamlfile import ConfigFileError

    common = [*SHORT, "iterations=1", "prefix_sharing=true"]
    unpacked, _ = run(tmp_path / "unpacked", *common)
    assert "prefix sharing on: one row per pair" in capsys.readouterr().out
    packed, iterations = run(tmp_path / "packed", *common, "packing=true")
    assert "prefix sharing on, packed" in capsys.readouterr().out
    assert [r["step"] for r in packed] == [r["step"] for r in unpacked] == [1, 2, 3] and iterations[0]["pairs"] > 0
    assert abs(packed[0]["loss"] - unpacked[0]["loss"]) <= 1e-5
    for p, u in zip(packed, unpacked):
        assert abs(p["loss"] - u["loss"]) <= 1e-5 and p["grad_norm"] == pytest.approx(u["grad_norm"], rel=1e-4)
        assert p["tokens"] == u["tokens"] > 0
    # as in `rlaif train dpo`: a run whose config.yaml predates the field resumes, and packing may change on resume
    saved = tmp_path / "unpacked/config.yaml"
    old = yaml.safe_load(saved.read_text())
    assert old.pop("packing") is False
    saved.write_text(yaml.safe_dump(old, sort_keys=False))
    resumed, _ = run(tmp_path / "unpacked", *SHORT, "prefix_sharing=true", "packing=true")  # iterations=2
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6] and "resuming at step 3" in capsys.readouterr().out
    with pytest.raises(ConfigFileError, match="packing: true needs prefix sharing, which prefix_sharing: false"):
        loop_config(tmp_path / "x", "prefix_sharing=false", "packing=true")


def _labels(it_dir: Path, p_as: list[float]) -> list[dict]:
    records = [
        {
            "id": f"p{i}",
            "key": f"k{i}",
            "prompt": "q",
            "response_a": f"a{i}",
            "response_b": f"b{i}",
            "p_a": p,
            "label": "a" if p > 0.5 else "b" if p < 0.5 else "tie",
            "status": "ok",
            "source": "ai",
            "position_consistent": p != 0.5,
        }
        for i, p in enumerate(p_as)
    ]
    (it_dir / "labels").mkdir(parents=True)
    (it_dir / "labels/labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def test_feedback_sources_pick_an_iterations_training_labels(tmp_path):
    from rlaif.recipes.loop import iteration_feedback

    it_dir = tmp_path / "iter-1"
    _labels(it_dir, [0.9, 0.1, 0.5, 0.55])
    ai = iteration_feedback(loop_config(tmp_path), it_dir, 1)
    assert [p.id for p in ai.train] == ["p0", "p1", "p3"]  # the tie is left out

    human_file = tmp_path / "human.jsonl"
    mixed = iteration_feedback(
        loop_config(tmp_path, "feedback={source: mixed, margin: 0.1}", f"feedback.human={human_file}"), it_dir, 1
    )
    assert [p.id for p in mixed.train] == ["p0", "p1"]  # close calls wait for people
    assert [r["id"] for r in read_rows(it_dir / "human_queue.jsonl")] == ["p2", "p3"]

    human = loop_config(tmp_path, "feedback={source: human}", f"feedback.human={human_file}")
    with pytest.raises(ValueError, match="human_queue.jsonl"):
        iteration_feedback(human, it_dir, 1)  # nobody has labelled this iteration yet
    assert len(read_rows(it_dir / "human_queue.jsonl")) == 4
    human_file.write_text(
        json.dumps(
            {
                "id": "p2",
                "prompt": "q",
                "response_a": "a2",
                "response_b": "b2",
                "label": "b",
                "status": "ok",
                "source": "human",
                "annotator": "x",
            }
        )
        + "\n"
    )
    got = iteration_feedback(human, it_dir, 1)
    assert [(p.id, p.p_a) for p in got.train] == [("p2", 0.0)]


def test_a_run_started_with_the_loops_old_feedback_section_resumes(tmp_path):
    """A run dir whose config.yaml holds the loop's feedback section as written before it was the feedback sources'
    union (its seven fields, pairs_from and min_margin under source mixed too), continued by a config spelled the
    old way: the run resumes where it stopped, not refused as "a different config"."""
    import yaml

    from tests.config.test_train_config import OLD_LOOP_FEEDBACK

    out = tmp_path / "run"
    # mixed, with every AI label kept: the iterations need no people
    old_keys = {**OLD_LOOP_FEEDBACK, "source": "mixed", "margin": 0.0, "require_consistent": False}
    mixed = f"feedback={json.dumps(old_keys)}"
    run(out, *SHORT, "iterations=1", mixed)
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["feedback"] != old_keys  # today's config.yaml: only the mixed source's fields
    (out / "config.yaml").write_text(yaml.safe_dump({**saved, "feedback": old_keys}, sort_keys=False))
    steps, iterations = run(out, *SHORT, mixed)  # iterations=2
    assert [r["step"] for r in steps] == [1, 2, 3, 4, 5, 6] and [r["iteration"] for r in iterations] == [1, 2]
    counts = iterations[1]["feedback"]  # the mixed source's (its ties left out of the training pairs)
    assert counts["queued"] == counts["human_pairs"] == 0 and counts["ai_pairs"] >= iterations[1]["train_pairs"] > 0


def test_the_loops_sources_take_the_fields_of_the_shared_sources(tmp_path):
    """The loop's feedback section is the feedback sources' union: a field its own copy never had (calibration)
    applies to each iteration's labels, as for reward and dpo."""
    from rlaif.feedback.calibration.maps import fit_map
    from rlaif.feedback.calibration.match import load_matched
    from rlaif.recipes.loop import iteration_feedback
    from tests.helpers import ai_record, write_jsonl

    # the judge says 0.95 or 0.05; people agree with it three times in four
    recs = [ai_record(f"i{i}", (0.95, 0.05)[i % 2], human="ab"[(i % 2) ^ (i % 8 >= 6)]) for i in range(40)]
    known = write_jsonl(tmp_path / "known/labels.jsonl", recs).parent
    cmap = fit_map(load_matched(known, known), method="platt", holdout=0.0)
    (tmp_path / "map.json").write_text(json.dumps(cmap))
    it_dir = tmp_path / "iter-1"
    _labels(it_dir, [0.9, 0.1, 0.95])
    got = iteration_feedback(loop_config(tmp_path, f"feedback.calibration={tmp_path / 'map.json'}"), it_dir, 1)
    assert [p.id for p in got.train] == ["p0", "p1", "p2"]
    assert all(0.05 < p.p_a < 0.95 and p.p_a not in (0.9, 0.1) for p in got.train)  # through the map


@pytest.mark.slow
def test_loop_with_the_keyword_judge_makes_the_policy_say_please_more_often(tmp_path):
    """Learning test: the shipped example (4 iterations of 15 steps, rule judge preferring "please"). The share of
    samples containing "please", measured on held-out prompts with a seed of its own, must rise well above the
    starting policy's (measured: about 0.11 before, 0.76-0.98 after, over loop seeds 0-3)."""
    from transformers import AutoModelForCausalLM

    from rlaif.config.sampling import SamplingConfig
    from rlaif.data.prompts import read_prompts, split_prompts
    from rlaif.policy.sampling import derived_seed, sample
    from rlaif.train.models import build_tiny, build_tokenizer

    out = tmp_path / "run"
    cfg = loop_config(out)
    tok = build_tokenizer(cfg.model)
    _, held_out = split_prompts(read_prompts(cfg.prompts), cfg.eval_prompts, derived_seed(cfg.seed, "split"))

    def share(model) -> float:
        drawn = sample(model, tok, held_out, 4, SamplingConfig(max_new_tokens=8, batch_size=64), seed=123)
        texts = [s.text for group in drawn for s in group]
        return sum("please" in t.split() for t in texts) / len(texts)

    before = share(build_tiny(cfg.model, tok, "lm"))
    started = time.time()
    _, iterations = run(out)
    after = share(AutoModelForCausalLM.from_pretrained(out / "model"))
    print(
        f"'please' in samples: before {before:.3f}, after {after:.3f}; per iteration (loop's own eval) "
        f"{[round(r['keyword_share'], 3) for r in iterations]} from {iterations[0]['keyword_share_start']:.3f}; "
        f"win rate {[round(r['win_rate'], 3) for r in iterations]}; KL {[round(r['kl'], 3) for r in iterations]}; "
        f"{time.time() - started:.1f}s"
    )
    assert after >= before + 0.4, (before, after)
    assert iterations[-1]["keyword_share"] >= iterations[0]["keyword_share_start"] + 0.4
    assert iterations[-1]["win_rate"] > 0.6 and iterations[-1]["winrate"]["ci_low"] > 0.5


@pytest.mark.slow
def test_the_policy_can_be_its_own_judge_with_an_external_eval_judge(tmp_path):
    out = tmp_path / "run"
    # a random policy's verdicts are near 1/2 (ties under the judge's tie_margin): min_margin 0 trains on them
    _, iterations = run(
        out,
        "iterations=1",
        "steps_per_iteration=2",
        "prompts_per_iteration=12",
        "eval_prompts=8",
        "batch_size=4",
        f"judge={ROOT / 'judges/self.yaml'}",
        f"eval_judge={ROOT / 'judges/rule-keyword.yaml'}",
        "min_margin=0",
    )
    labels = read_rows(out / "iter-1/labels/labels.jsonl")
    assert labels and all(r["judge"]["backend"] == "policy" and r["judge"]["model"] == "policy@step-0" for r in labels)
    assert all(r["status"] == "ok" and r["label_mass"] is not None for r in labels)  # read from A/B logits
    row = iterations[0]
    assert row["winrate"]["n"] == 8 and row["eval_winrate"]["n"] == 8
    assert row["eval_win_rate"] is not None and row["train_pairs"] == row["pairs"]


@pytest.mark.slow
def test_sigkill_then_same_command_continues_the_loop(tmp_path):
    """Killed mid-iteration 2 (past its mid-iteration checkpoint-10), the same command resumes at step 10 with
    the iteration's reference checkpoint-8 kept despite save_total_limit=1, and ends as an uninterrupted run."""
    out = tmp_path / "run"
    overrides = [
        "iterations=3",
        "steps_per_iteration=8",
        "save_steps=5",
        "save_total_limit=1",
        "prompts_per_iteration=32",
        "eval_prompts=16",
        "batch_size=8",
        f"prompts={PROMPTS}",
        f"judge={ROOT / 'judges/rule-keyword.yaml'}",
    ]
    cmd = rlaif_command("loop", "--config", EXAMPLE, f"output_dir={out}", *overrides)
    kill_when(cmd, out / "metrics.jsonl", 11)  # past checkpoint-10
    killed_at = [r["step"] for r in read_metrics(out)]
    saved = [step for step, _ in list_checkpoints(out)]
    assert saved == [8, 10] and killed_at[-1] > 10, (saved, killed_at)
    assert [r["iteration"] for r in read_rows(out / "iterations.jsonl")] == [1]

    assert "resuming at step 10" in run_to_end(cmd)
    resumed, rows = read_metrics(out), read_rows(out / "iterations.jsonl")
    assert [r["step"] for r in resumed] == list(range(1, 25))  # no gap, no repeat
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert [s for s, _ in list_checkpoints(out)] == [24]

    straight, straight_rows = run(tmp_path / "straight", *overrides[:-2])
    for a, b in zip(resumed, straight):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5), a["step"]
    for a, b in zip(rows, straight_rows):
        assert (a["pairs"], a["train_pairs"], a["win_rate"]) == (b["pairs"], b["train_pairs"], b["win_rate"])
        assert a["kl"] == pytest.approx(b["kl"], abs=1e-4)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    """Under torchrun (two CPU processes, gloo) the main process samples, labels and evaluates, the DPO steps are
    data-parallel: losses, gradient norms and win rates equal one process on the same global batches."""
    from rlaif.recipes.loop import train

    short = [
        f"prompts={PROMPTS}",
        f"judge={ROOT / 'judges/rule-keyword.yaml'}",
        "iterations=2",
        "steps_per_iteration=3",
        "prompts_per_iteration=24",
        "eval_prompts=16",
        "save_steps=100",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "rlaif.cli",
        "loop",
        "--config",
        str(EXAMPLE),
        f"output_dir={tmp_path / 'ddp'}",
        "batch_size=4",
        *short,
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "on 2 process(es)" in done.stdout

    train(load_train_config(EXAMPLE, "loop", [f"output_dir={tmp_path / 'one'}", "batch_size=8", *short]))
    ddp, one = read_metrics(tmp_path / "ddp"), read_metrics(tmp_path / "one")
    assert [r["step"] for r in ddp] == [r["step"] for r in one] == list(range(1, 7))
    for a, b in zip(ddp, one):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5), a["step"]
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], abs=1e-5), a["step"]
    it_ddp, it_one = read_rows(tmp_path / "ddp/iterations.jsonl"), read_rows(tmp_path / "one/iterations.jsonl")
    assert [r["iteration"] for r in it_ddp] == [1, 2]
    for a, b in zip(it_ddp, it_one):
        assert (a["pairs"], a["train_pairs"]) == (b["pairs"], b["train_pairs"])
        assert a["win_rate"] == pytest.approx(b["win_rate"], abs=1e-9)


@pytest.mark.slow
def test_human_feedback_loop_waits_for_people_then_continues(tmp_path):
    """feedback.source: human through the CLI: iteration 1 stops with the queue for people named; people's labels
    (a simulated annotator who prefers "please", imported with `rlaif human import`) arrive; the same command
    continues and trains on exactly those labels."""
    out, human = tmp_path / "run", tmp_path / "human.jsonl"
    cmd = rlaif_command(
        "loop",
        "--config",
        EXAMPLE,
        f"output_dir={out}",
        f"prompts={PROMPTS}",
        f"judge={ROOT / 'judges/rule-keyword.yaml'}",
        "iterations=1",
        "steps_per_iteration=2",
        "prompts_per_iteration=24",
        "eval_prompts=8",
        "batch_size=4",
        "feedback.source=human",
        f"feedback.human={human}",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    queue = out / "iter-1/human_queue.jsonl"
    assert first.returncode != 0 and str(queue) in first.stderr + first.stdout
    queued = read_rows(queue)
    assert len(queued) == 24 and not (out / "model").exists()

    said = [
        {**r, "label": "a" if "please" in r["response_a"].split() else "b", "annotator": "ann1"}
        for r in queued
        if ("please" in r["response_a"].split()) != ("please" in r["response_b"].split())
    ]
    assert 4 <= len(said) < len(queued)  # people skipped the pairs they could not tell apart
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in said))
    run_to_end(rlaif_command("human", "import", answers, "--out", human))

    assert "iteration 1/1" in run_to_end(cmd)
    row = read_rows(out / "iterations.jsonl")[0]
    assert row["train_pairs"] == len(said) and row["feedback"]["human_pairs"] == len(said)
    assert (out / "model/model.safetensors").exists()
