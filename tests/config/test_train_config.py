"""Training configs and preference data: the shipped examples parse, overrides and errors behave, the config
module stays free of torch, and label records become the right soft preferences, token ids and batches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlaif.config.feedback import FeedbackConfig
from rlaif.config.run import PairsConfig
from rlaif.config.train import load_train_config, parse_overrides
from rlaif.config.yamlfile import ConfigFileError
from rlaif.train.data import read_feedback
from tests.helpers import ROOT

EXAMPLES = sorted((ROOT / "examples").glob("*/*.yaml"))


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.parent.name in ("tiny", "gpu")], ids=lambda p: str(p))
def test_example_configs_parse(path):
    cfg = load_train_config(path, path.stem)
    assert cfg.method == path.stem and cfg.output_dir


@pytest.mark.parametrize("method", ["reward", "dpo", "ppo", "loop"])
def test_gpu_examples_use_a_real_model_and_bf16(method):
    assert sorted(p.stem for p in (ROOT / "examples/gpu").glob("*.yaml")) == ["dpo", "loop", "ppo", "reward"]
    cfg = load_train_config(ROOT / "examples/gpu" / f"{method}.yaml", method)
    assert cfg.model.type == "pretrained" and cfg.precision in ("auto", "bf16")


def test_accelerate_configs_are_yaml_for_accelerate():
    import yaml

    found = sorted((ROOT / "examples/accelerate").glob("*.yaml"))
    assert {p.stem for p in found} >= {"ddp", "fsdp", "zero2", "zero3"}
    for p in found:
        assert yaml.safe_load(p.read_text())["distributed_type"] in ("MULTI_GPU", "FSDP", "DEEPSPEED")


def test_dotted_overrides_deep_merge_and_are_typed():
    cfg = load_train_config(
        ROOT / "examples/tiny/dpo.yaml",
        "dpo",
        ["output_dir=/tmp/x", "optim.lr=3e-4", "loss.beta=0.5", "pairs.soft=false"],
    )
    assert cfg.output_dir == "/tmp/x" and cfg.optim.lr == 3e-4 and cfg.optim.warmup_steps == 10
    assert cfg.loss.beta == 0.5 and cfg.loss.type == "sigmoid" and cfg.pairs.soft is False
    switched = load_train_config(
        ROOT / "examples/tiny/dpo.yaml", "dpo", ["model={type: pretrained, path: m}", "loss={type: ipo}"]
    )
    assert switched.model.path == "m" and switched.loss.type == "ipo" and switched.loss.length_normalize
    # a feedback section whose source changes is replaced too: the ai source's path is not carried over
    human = load_train_config(ROOT / "examples/tiny/dpo.yaml", "dpo", ["feedback.source=human", "feedback.human=h"])
    assert human.feedback.source == "human" and human.feedback.root.human == "h"
    assert parse_overrides(["a.b.c=1", "a.d=[x, y]"]) == {"a": {"b": {"c": 1}, "d": ["x", "y"]}}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["lr"])


def test_unknown_fields_and_wrong_method_are_file_line_errors(tmp_path):
    bad = tmp_path / "dpo.yaml"
    bad.write_text(
        "method: dpo\noutput_dir: o\nmodel: {type: tiny}\nfeedback:\n  source: ai\n  ai: x\npairs:\n  sauce: 1\n"
    )
    with pytest.raises(ConfigFileError) as e:
        load_train_config(bad, "dpo")
    # the hint lists the fields of the section the key is in, not another file's schema
    assert e.value.errors == [
        f"{bad}:8: pairs.sauce: unknown field (check the spelling; fields here: soft, "
        "min_margin, eval_paths, eval_fraction)"
    ]
    with pytest.raises(ConfigFileError, match="this is a 'dpo' config"):
        load_train_config(bad, "reward")
    with pytest.raises(ConfigFileError, match="optim.lr"):
        load_train_config(ROOT / "examples/tiny/dpo.yaml", "dpo", ["optim.lr=-1"])


@pytest.mark.parametrize(
    "override, error",
    [
        ("optim.lr=.inf", "optim.lr: Input should be a finite number"),
        ("optim.lr=0", "optim.lr: Input should be greater than 0"),
        ("optim.eps=.nan", "optim.eps: Input should be a finite number"),
        ("optim.weight_decay=-0.1", "optim.weight_decay: Input should be greater than or equal to 0"),
        ("optim.max_grad_norm=0", "optim.max_grad_norm: Input should be greater than 0"),
        # at β = 1 Adam's bias correction divides by 0
        ("optim.betas=[0.9, 1.0]", "optim.betas[1]: 1.0 is outside [0, 1): each beta is a decay rate below 1"),
        ("optim.betas=[-0.5, 0.999]", "optim.betas[0]: -0.5 is outside [0, 1): each beta is a decay rate below 1"),
    ],
)
def test_optimiser_numbers_are_finite_and_in_range_at_their_line(tmp_path, override, error):
    config = tmp_path / "dpo.yaml"
    name, value = override.removeprefix("optim.").split("=", 1)
    config.write_text(
        f"method: dpo\noutput_dir: o\nmodel: {{type: tiny}}\nfeedback: {{source: ai, ai: x}}\n"
        f"optim:\n  scheduler: linear\n  {name}: {value}\n"
    )
    with pytest.raises(ConfigFileError) as e:
        load_train_config(config, "dpo")
    assert e.value.errors == [f"{config}:7: {error}"]


def test_importing_the_config_modules_does_not_import_torch():
    code = (
        "import sys, rlaif.config.train, rlaif.config.sampling, rlaif.config.devices, rlaif.recipes, "
        "rlaif.rewards, rlaif.cli.train; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


# -- preferences from label records ------------------------------------------------------------------------------
def _record(i, p_a, label, source="ai", status="ok", human=None):
    r = {
        "id": f"r{i}",
        "key": f"k{i}",
        "prompt": f"q{i}",
        "response_a": "yes please",
        "response_b": "no",
        "p_a": p_a,
        "label": label,
        "status": status,
        "source": source,
    }
    if human:
        r["human_label"] = human
    return r


def _write(path: Path, records) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_read_feedback_keeps_soft_p_and_leaves_out_ties_and_failures(tmp_path):
    f = _write(
        tmp_path / "l.jsonl",
        [
            _record(0, 0.9, "a"),
            _record(1, 0.2, "b", human="a"),
            _record(2, 0.5, "tie"),
            _record(3, None, None, status="failed"),
            _record(4, 0.0, "b"),
        ],
    )
    data = read_feedback(FeedbackConfig(source="ai", ai=f), PairsConfig(eval_fraction=0))
    assert [(p.id, p.p_a, p.human_label) for p in data.train] == [
        ("r0", 0.9, None),
        ("r1", 0.2, "a"),
        ("r4", 0.0, None),
    ]
    assert data.counts["left_out"] == {"tie": 1, "failed": 1}
    hard = read_feedback(FeedbackConfig(source="ai", ai=f), PairsConfig(eval_fraction=0, soft=False, min_margin=0.25))
    assert [(p.id, p.p_a) for p in hard.train] == [("r0", 1.0), ("r1", 0.0), ("r4", 0.0)]
    # an ok record without a preference probability is no training target: refused, naming the line
    bad = _write(tmp_path / "bad.jsonl", [_record(0, 0.9, "a"), _record(1, None, "b")])
    with pytest.raises(ValueError, match=r"bad.jsonl:2: p_a is null, not a finite number"):
        read_feedback(FeedbackConfig(source="ai", ai=bad), PairsConfig(eval_fraction=0))


def test_human_source_trains_on_the_human_choices(tmp_path):
    f = _write(tmp_path / "h.jsonl", [_record(0, 1.0, "a", source="human"), _record(1, 0.0, "b", source="human")])
    data = read_feedback(FeedbackConfig(source="human", human=f), PairsConfig(eval_fraction=0))
    assert [(p.id, p.p_a, p.human_label) for p in data.train] == [("r0", 1.0, "a"), ("r1", 0.0, "b")]


def test_held_out_split_is_disjoint_and_eval_files_win(tmp_path):
    f = _write(tmp_path / "l.jsonl", [_record(i, 0.9, "a") for i in range(20)])
    data = read_feedback(FeedbackConfig(source="ai", ai=f), PairsConfig(eval_fraction=0.25), seed=3)
    assert len(data.eval) == 5 and len(data.train) == 15
    assert not {p.id for p in data.eval} & {p.id for p in data.train}
    held = _write(tmp_path / "e.jsonl", [_record(99, 1.0, "a", source="human")])
    data = read_feedback(FeedbackConfig(source="ai", ai=f), PairsConfig(eval_paths=[held]))
    assert len(data.train) == 20 and [(p.id, p.human_label) for p in data.eval] == [("r99", "a")]
    ties = _write(tmp_path / "t.jsonl", [_record(0, 0.5, "tie")])
    with pytest.raises(ValueError, match="no usable ai preferences"):
        read_feedback(FeedbackConfig(source="ai", ai=ties), PairsConfig())


def test_encoding_uses_the_chat_template_and_batches_a_then_b():
    from rlaif.config.run import TinyModelConfig
    from rlaif.policy.chat import encode
    from rlaif.train.data import EncodedPair, Preference, collate, encode_pairs
    from rlaif.train.models import build_tokenizer

    tok = build_tokenizer(TinyModelConfig(vocab=["yes", "no", "please", "q"]))
    prompt_ids, response_ids = encode(tok, "q", "yes please")
    assert tok.decode(prompt_ids) == "<|im_start|> user q <|im_end|> <|im_start|> assistant"
    assert tok.decode(response_ids) == "yes please <|im_end|>"
    pairs, dropped = encode_pairs(tok, [Preference("x", "q", "yes please", "no", 0.9)], 64, whole=True)
    assert dropped == 0 and pairs[0].prompt_ids == prompt_ids and pairs[0].a_ids == response_ids
    batch = collate(pairs + [EncodedPair([1, 2], [3], [4, 5, 6], 0.2, 1)], tok.pad_token_id, 64)
    assert batch["input_ids"].shape == (4, len(prompt_ids) + 3)
    assert batch["completion_mask"][3].tolist()[:5] == [0, 0, 1, 1, 1]  # second pair's b response
    assert batch["p_a"].tolist() == pytest.approx([0.9, 0.2]) and batch["human"].tolist() == [-1, 1]
    assert batch["attention_mask"][1].sum() == 3 and batch["input_ids"][1, 3] == tok.pad_token_id
    _, dropped = encode_pairs(tok, [Preference("x", "q", "yes please", "no", 0.9)], len(prompt_ids), whole=False)
    assert dropped == 1  # the prompt alone fills max_length


def test_step_order_is_a_seeded_permutation_per_epoch():
    from rlaif.train.data import micro_batches, step_indices

    epoch0 = [i for s in range(5) for i in step_indices(s, 20, 4, seed=1)]
    assert sorted(epoch0) == list(range(20))
    assert step_indices(7, 20, 4, seed=1) == step_indices(7, 20, 4, seed=1) != step_indices(2, 20, 4, seed=1)
    assert micro_batches(list(range(8)), rank=1, world=2, grad_accum=2) == [[1, 3], [5, 7]]


BAD_REWARD = "method: reward\noutput_dir: o\nmodel: {type: tiny}\nfeedback: {source: ai, ai: x}\nlr: 1\n"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["train", "reward", "--config", "{bad}", "batch_size=2"], "{bad}:5: lr: unknown field"),
        (["train", "dpo", "--config", "{bad}"], "use `rlaif train reward`"),
        (
            ["train", "dpo", "--config", str(ROOT / "examples/tiny/loop.yaml")],
            "this is a 'loop' config; use `rlaif loop`",
        ),
        (["train", "reward", "--config", "{bad}", "oops"], "not key=value"),
    ],
    ids=["unknown-field", "wrong-command", "loop-config", "bad-override"],
)
def test_cli_reports_config_errors_with_file_and_line(tmp_path, args, expected):
    from typer.testing import CliRunner

    from rlaif.cli import app

    bad = tmp_path / "reward.yaml"
    bad.write_text(BAD_REWARD)
    result = CliRunner().invoke(app, [a.format(bad=bad) for a in args])
    assert result.exit_code == 2 and expected.format(bad=bad) in result.output


def test_a_run_dir_written_before_feedback_sources_split_still_resumes(tmp_path):
    """config.yaml of a run started when every feedback field was written out compares equal to today's."""
    from rlaif.config.dpo import DPOTrainConfig
    from rlaif.train.run import _normalised

    cfg = load_train_config(ROOT / "examples/tiny/dpo.yaml", "dpo", [f"output_dir={tmp_path}"])
    old = cfg.model_dump(mode="json")
    old["feedback"] = {
        "source": "ai",
        "ai": cfg.feedback.root.ai,
        "human": None,
        "calibration": None,
        "margin": 0.1,
        "require_consistent": True,
        "queue": None,
        "pending": "drop",
        "human_combine": "mean",
    }
    assert old != cfg.model_dump(mode="json")
    assert _normalised(DPOTrainConfig, old) == cfg.model_dump(mode="json")


# the loop's `feedback:` section before it was the feedback sources' union: its own seven fields, every one written
# into a run's config.yaml whatever the source
OLD_LOOP_FEEDBACK = {
    "source": "ai",
    "human": None,
    "margin": 0.1,
    "require_consistent": True,
    "pending": "drop",
    "pairs_from": "best-vs-worst",
    "min_margin": 0.0,
}


@pytest.mark.parametrize(
    "feedback",
    [
        {},
        {"source": "ai", "pairs_from": "all-above-margin", "min_margin": 2.0},
        {"source": "human", "human": "h.jsonl"},
        {"source": "mixed", "human": "h.jsonl", "margin": 0.2, "require_consistent": False, "pending": "ai"},
    ],
    ids=["ai", "ai-score", "human", "mixed"],
)
def test_a_loop_config_from_before_the_shared_feedback_sources_loads_and_resumes(tmp_path, feedback):
    """A loop config written with the loop's old feedback keys (all seven, as a saved config.yaml held them) loads
    to the same config as one naming only its source's, and a run dir holding it compares equal (so it resumes)."""
    import yaml

    from rlaif.config.loop import LoopConfig
    from rlaif.train.run import _normalised

    new = load_train_config(ROOT / "examples/tiny/loop.yaml", "loop", [f"feedback={json.dumps(feedback)}"])
    old = {**new.model_dump(mode="json"), "feedback": {**OLD_LOOP_FEEDBACK, **feedback}}
    assert old != new.model_dump(mode="json")
    saved = tmp_path / "config.yaml"
    saved.write_text(yaml.safe_dump(old, sort_keys=False))
    assert load_train_config(saved, "loop") == new
    assert _normalised(LoopConfig, old) == new.model_dump(mode="json")
    if feedback.get("source", "ai") != "ai":  # a score judge's settings away from their defaults stay refused
        with pytest.raises(ConfigFileError, match="feedback.pairs_from: not used by source"):
            load_train_config(saved, "loop", ["feedback.pairs_from=best-vs-random"])


def test_seed_and_method_are_checked_where_they_are_written(tmp_path):
    bad = tmp_path / "dpo.yaml"
    bad.write_text("output_dir: o\nmodel: {type: tiny}\nfeedback: {source: ai, ai: x}\nseed: -1\n")
    with pytest.raises(ConfigFileError) as e:  # numpy's seeding would refuse it only once the run had started
        load_train_config(bad, "dpo")
    assert e.value.errors == [f"{bad}:4: seed: Input should be greater than or equal to 0"]
    bad.write_text("output_dir: o\nmethod: kto\n")
    with pytest.raises(ConfigFileError) as e:  # not "use `rlaif train kto`", a command that does not exist
        load_train_config(bad, "dpo")
    assert e.value.errors == [f"{bad}:2: method: must be one of reward, dpo, ppo, loop, sft, got 'kto'"]
    bad.write_text("output_dir: o\nmethod: sft\n")
    with pytest.raises(ConfigFileError) as e:
        load_train_config(bad, "dpo")
    assert e.value.errors == [f"{bad}:2: method: this is a 'sft' config; use `rlaif train sft`"]
