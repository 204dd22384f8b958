"""`rlaif reward score`: a saved tiny reward model scores pairs in batches; every score must equal an unbatched
forward pass over the chat-templated prompt+response (the layout training uses), p_a = σ(r_a − r_b), and the
accuracy against human labels is counted by hand."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

PAIRS = [
    {
        "id": "p1",
        "prompt": "how do i fix my car",
        "response_a": "please try this",
        "response_b": "no",
        "human_label": "a",
    },
    {
        "id": "p2",
        "prompt": [{"role": "user", "content": "make tea"}],
        "response_a": "ok",
        "response_b": "sure here is a good plan you can try now",
        "human_label": "b",
    },
    {"id": "p3", "prompt": "why", "response_a": "maybe", "response_b": "yes it will help", "human_label": "tie"},
    {"id": "p4", "prompt": "what now", "response_a": "we will help", "response_b": "thanks"},
    {
        "id": "p5",
        "prompt": "fix the door",
        "response_a": "here is the answer",
        "response_b": "i do not know",
        "human_label": "a",
    },
]


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory) -> Path:
    from rlaif.config.run import TinyModelConfig
    from rlaif.train.models import build_tiny, build_tokenizer

    vocab = yaml.safe_load((ROOT / "examples" / "tiny" / "dpo.yaml").read_text())["model"]["vocab"]
    cfg = TinyModelConfig(
        vocab=vocab, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1, seed=3
    )
    tokenizer = build_tokenizer(cfg)
    path = tmp_path_factory.mktemp("tiny-rm") / "model"
    build_tiny(cfg, tokenizer, "score").save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def unbatched_scores(model_dir: Path) -> dict[str, tuple[float, float]]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    out = {}
    for row in PAIRS:
        messages = [{"role": "user", "content": row["prompt"]}] if isinstance(row["prompt"], str) else row["prompt"]
        scores = []
        for response in (row["response_a"], row["response_b"]):
            ids = tok.apply_chat_template(
                messages + [{"role": "assistant", "content": response}], tokenize=True, return_dict=True
            )["input_ids"]
            with torch.no_grad():
                scores.append(model(input_ids=torch.tensor([ids])).logits[0, 0].item())
        out[row["id"]] = tuple(scores)
    return out


def write_pairs(path: Path) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in PAIRS))
    return path


def test_scores_match_unbatched_forward_and_accuracy(tmp_path, reward_model_dir):
    from rlaif.rewards.reward_model import score_pairs_file

    expected = unbatched_scores(reward_model_dir)
    out = tmp_path / "scores.jsonl"
    summary = score_pairs_file(reward_model_dir, write_pairs(tmp_path / "pairs.jsonl"), out, batch_size=2)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [p["id"] for p in PAIRS]
    for row in rows:
        r_a, r_b = expected[row["id"]]
        assert row["r_a"] == pytest.approx(r_a, abs=1e-5) and row["r_b"] == pytest.approx(r_b, abs=1e-5)
        assert row["p_a"] == pytest.approx(1 / (1 + math.exp(-(row["r_a"] - row["r_b"]))))
    assert len({round(r["r_a"], 6) for r in rows}) > 1  # a model that scored everything alike proves nothing
    # accuracy over the pairs with a human a/b choice (p1, p2, p5); a tie label is left out
    human = {"p1": "a", "p2": "b", "p5": "a"}
    correct = sum((expected[i][0] > expected[i][1]) == (h == "a") for i, h in human.items())
    assert summary == {
        "pairs": 5,
        "scored": 5,
        "too_long": 0,
        "human_pairs": 3,
        "human_accuracy": pytest.approx(correct / 3),
    }
    assert [r.get("human_label") for r in rows] == ["a", "b", None, None, "a"]


def test_too_long_pairs_are_reported_not_scored(tmp_path, reward_model_dir):
    from rlaif.rewards.reward_model import score_pairs_file

    out = tmp_path / "scores.jsonl"
    summary = score_pairs_file(reward_model_dir, write_pairs(tmp_path / "pairs.jsonl"), out, max_length=16)
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert summary["too_long"] >= 1 and summary["scored"] + summary["too_long"] == 5
    assert rows["p2"] == {"id": "p2", "r_a": None, "r_b": None, "p_a": None, "error": "longer than 16 tokens"}


def test_cli_reward_score(tmp_path, reward_model_dir):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    out = tmp_path / "scores.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "rlaif.cli",
        "reward",
        "score",
        "--model",
        str(reward_model_dir),
        "--pairs",
        str(pairs),
    ]
    p = subprocess.run(
        cmd + ["--out", str(out), "--batch-size", "3"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "5 of 5 pairs scored (0 too long); pairwise accuracy vs human labels:" in p.stdout
    assert "on 3 pairs" in p.stdout
    assert len(out.read_text().splitlines()) == 5
    # without --out the scores go to stdout and the summary to stderr (in-process: the same typer app)
    from typer.testing import CliRunner

    from rlaif.cli import app

    result = CliRunner().invoke(app, cmd[3:])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == [r["id"] for r in PAIRS]
    assert "pairwise accuracy" in result.stderr
    result = CliRunner().invoke(app, cmd[3:6] + [str(tmp_path)] + cmd[7:])
    assert result.exit_code == 2 and "not a saved model directory" in result.stderr
