"""`rlaif generate`: prompts from any input file, N samples per prompt from a tiny saved policy, written as pairs
that `rlaif label` reads and labels (end to end with the python rule judge, in-process and through the CLI)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlaif.config.sampling import SamplingConfig
from rlaif.data.pairs import DataError, read_pairs
from rlaif.data.prompts import read_prompts
from rlaif.policy.generate import generate, pair_rows
from rlaif.policy.sampling import Sample
from tests.helpers import ROOT

FAST = SamplingConfig(max_new_tokens=6, batch_size=8)
CHAT = [{"role": "user", "content": "Hi there"}]


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def prompts_file(tmp_path):
    return _jsonl(
        tmp_path / "prompts.jsonl",
        [
            {"prompt": "How do I bake bread?"},
            {"prompt": CHAT},
            {"prompt": "How do I bake bread?", "id": "again"},
            {"prompt": "Tell me a story."},
        ],
    )


def test_read_prompts_from_prompt_pair_and_label_files(tmp_path, prompts_file):
    assert read_prompts(prompts_file) == ["How do I bake bread?", CHAT, "Tell me a story."]
    demo = read_prompts(ROOT / "examples" / "pairs.jsonl")  # chosen/rejected rows with a prompt
    assert len(demo) == len({json.dumps(p) for p in demo}) > 3
    hh = _jsonl(
        tmp_path / "hh.jsonl",
        [
            {"chosen": "\n\nHuman: Hi?\n\nAssistant: Hello.", "rejected": "\n\nHuman: Hi?\n\nAssistant: Go away."},
            {"prompt": "Q", "response_a": "a", "response_b": "b"},
        ],
    )
    assert read_prompts(hh) == [[{"role": "user", "content": "Hi?"}], "Q"]
    labels = tmp_path / "run"
    labels.mkdir()
    _jsonl(
        labels / "labels.jsonl",
        [{"id": "1", "prompt": "Q1", "response_a": "a", "response_b": "b", "p_a": 0.5, "label": "tie", "status": "ok"}],
    )
    assert read_prompts(labels) == ["Q1"]


def test_read_prompts_names_file_and_line(tmp_path):
    bad = _jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok"}, {"question": "where is the prompt?"}])
    with pytest.raises(DataError, match=r"bad.jsonl:2: row has no prompt; it has: question"):
        read_prompts(bad)
    empty = _jsonl(tmp_path / "empty.jsonl", [{"prompt": "  "}])
    with pytest.raises(DataError, match="empty.jsonl:1: prompt is empty"):
        read_prompts(empty)


def _s(text: str) -> Sample:
    return Sample("p", [1], [2], text, True)


def test_pair_rows_are_every_pair_and_skip_empty_responses():
    rows, empty = pair_rows(["p"], [[_s("x"), _s("y"), _s("z")]], {"policy": "m"})
    assert [(r["sample_a"], r["sample_b"]) for r in rows] == [(0, 1), (0, 2), (1, 2)]
    assert [(r["response_a"], r["response_b"]) for r in rows] == [("x", "y"), ("x", "z"), ("y", "z")]
    assert empty == 0 and all(r["policy"] == "m" for r in rows) and len({r["id"] for r in rows}) == 3
    rows, empty = pair_rows(["p", "q"], [[_s("x"), _s(" ")], [_s("same"), _s("same")]])
    assert empty == 1 and len(rows) == 1 and rows[0]["prompt"] == "q"  # identical samples still make a pair


def test_generate_writes_pairs_that_label_reads(tiny_model_dir, prompts_file, tmp_path):
    from rlaif.labeling.job import label

    out = tmp_path / "pairs.jsonl"
    result = generate(str(tiny_model_dir), prompts_file, out, n=3, config=FAST, seed=3, progress=False)
    assert (result.prompts, result.samples, result.pairs) == (3, 9, 9 - result.empty_pairs)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {json.dumps(r["prompt"]) for r in rows} <= {json.dumps(p) for p in read_prompts(prompts_file)}
    assert rows[0]["policy"] == str(tiny_model_dir)
    assert rows[0]["sampling"] == {**FAST.model_dump(), "n": 3, "seed": 3}
    pairs = list(read_pairs(out))
    assert [p.id for p in pairs] == [r["id"] for r in rows]
    assert any(p.conversational for p in pairs)
    job = label(
        out,
        ROOT / "constitutions" / "helpful.yaml",
        ROOT / "judges" / "rule-length.yaml",
        tmp_path / "labels",
        progress=False,
    )
    assert job.stats["pairs"] == job.stats["ok"] == len(rows)
    # the same seed draws the same samples; another seed draws others
    again = tmp_path / "again.jsonl"
    generate(str(tiny_model_dir), prompts_file, again, n=3, config=FAST, seed=3, progress=False)
    assert again.read_text() == out.read_text()
    other = tmp_path / "other.jsonl"
    generate(str(tiny_model_dir), prompts_file, other, n=3, config=FAST, seed=4, progress=False)
    assert other.read_text() != out.read_text()


def test_generate_needs_two_samples(tiny_model_dir, prompts_file, tmp_path):
    with pytest.raises(ValueError, match="at least 2"):
        generate(str(tiny_model_dir), prompts_file, tmp_path / "o.jsonl", n=1, progress=False)


def test_generate_then_label_through_the_cli(tiny_model_dir, prompts_file, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    sampling = tmp_path / "sampling.yaml"
    sampling.write_text("temperature: 0.7\nmax_new_tokens: 20\nbatch_size: 4\n")
    out = tmp_path / "pairs.jsonl"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlaif.cli",
            "generate",
            "--policy",
            str(tiny_model_dir),
            "--prompts",
            str(prompts_file),
            "--n",
            "2",
            "--out",
            str(out),
            "--config",
            str(sampling),
            "--max-new-tokens",
            "5",
            "--seed",
            "1",
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    m = re.search(r"(\d+) pairs from 3 prompts \(6 samples, .* (\d+) pairs left out", p.stdout)
    assert m and str(out) in p.stdout, p.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == int(m.group(1)) == 3 - int(m.group(2))
    assert rows[0]["sampling"]["temperature"] == 0.7 and rows[0]["sampling"]["max_new_tokens"] == 5
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlaif.cli",
            "label",
            "--pairs",
            str(out),
            "--constitution",
            str(ROOT / "constitutions" / "helpful.yaml"),
            "--judge",
            str(ROOT / "judges" / "rule-length.yaml"),
            "--out",
            str(tmp_path / "labels"),
            "--quiet",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert len((tmp_path / "labels" / "labels.jsonl").read_text().splitlines()) == len(rows)


def test_generate_cli_reports_bad_prompts_cleanly(tmp_path):
    from rlaif.cli import app

    bad = _jsonl(tmp_path / "bad.jsonl", [{"text": "no prompt here"}])
    result = CliRunner().invoke(
        app, ["generate", "--policy", "unused", "--prompts", str(bad), "--out", str(tmp_path / "o.jsonl")]
    )
    assert result.exit_code == 2 and "bad.jsonl:1: row has no prompt" in result.output
    result = CliRunner().invoke(
        app, ["generate", "--policy", "unused", "--prompts", str(bad), "--n", "1", "--out", str(tmp_path / "o.jsonl")]
    )
    assert result.exit_code == 2
