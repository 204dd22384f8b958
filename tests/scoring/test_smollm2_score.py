"""Tier 3: the embedded judge (SmolLM2-135M-Instruct) in score mode on a handful of pairs, end to end through
`rlaif score`, then the same responses rated in-process against the scale's maths."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import requires_smollm2
from tests.helpers import ROOT

pytestmark = [requires_smollm2, pytest.mark.slow]


def test_embedded_judge_rates_bundled_pairs(tmp_path):
    judge = ROOT / "judges" / "default-score.yaml"  # the shipped score judge: default.yaml's model in score mode
    config, score_config = (yaml.safe_load((ROOT / "judges" / n).read_text()) for n in ("default.yaml", judge.name))
    assert {k: score_config[k] for k in ("model", "model_package", "gguf_file")} == {
        k: config[k] for k in ("model", "model_package", "gguf_file")
    }
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "rlaif.cli",
        "score",
        "--pairs",
        ROOT / "examples" / "pairs.jsonl",
        "--constitution",
        ROOT / "constitutions" / "harmless.yaml",
        "--judge",
        judge,
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
    recs = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(recs) == 6 and {r["side"] for r in recs} == {"a", "b"}
    for r in recs:
        dist = [r["distribution"][str(s)] for s in range(1, 11)]
        assert r["status"] == "ok" and r["score_source"] == "logprobs"
        assert math.isclose(sum(dist), 1.0, abs_tol=1e-6) and all(p >= 0 for p in dist)
        assert r["score"] == pytest.approx(sum(s * p for s, p in zip(range(1, 11), dist)))
        sign = -1 if r["invert"] else 1
        assert r["reward"] == pytest.approx(sign * (2 * (r["score"] - 1) / 9 - 1))
        assert 0.0 < r["score_mass"] <= 1.0 + 1e-4
        assert r["judge"]["mode"] == "score" and r["judge"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert all(
        len({r["principle_id"] for r in recs if r["pair_id"] == pid}) == 1 for pid in {r["pair_id"] for r in recs}
    )
