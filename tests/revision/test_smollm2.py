"""Tier 3: `rlaif revise` with the real embedded model (SmolLM2-135M-Instruct, judges/default.yaml) on 3 prompts
under constitutions/harmless.yaml: every chain completes with its provenance, and the batch's KV cache kept across
rounds gives exactly the chains of the naive loop that encodes every step anew (a real chat template and BPE)."""

from __future__ import annotations

import json

import pytest

from rlaif.config.judge import load_judge_config
from rlaif.config.sampling import SamplingConfig
from rlaif.constitution import load_constitution
from rlaif.data.prompts import read_prompt_rows
from rlaif.revision.chain import ChainSettings, plan_chain, run_chains
from rlaif.revision.generators import generation_settings, generation_sha256
from rlaif.revision.hf import CachedSession
from rlaif.revision.job import revise
from rlaif.revision.registry import build_generator
from tests.conftest import requires_smollm2
from tests.helpers import ROOT

pytestmark = [requires_smollm2, pytest.mark.slow, pytest.mark.usefixtures("one_thread")]


def test_the_embedded_model_revises_three_prompts_and_the_cache_changes_nothing(tmp_path):
    sampling = SamplingConfig(temperature=0, max_new_tokens=8)
    harmless = ROOT / "constitutions/harmless.yaml"
    generator = build_generator(load_judge_config(ROOT / "judges/default.yaml"), sampling)
    result = revise(
        ROOT / "examples/pairs.jsonl",
        harmless,
        generator,
        tmp_path / "out",
        rounds=1,
        limit=3,
        sampling=sampling,
        progress=False,
    )
    records = [json.loads(line) for line in (tmp_path / "out/revisions.jsonl").read_text().splitlines()]
    assert result.revised_now == 3 and len(records) == 3
    for r in records:
        assert r["status"] == "ok" and r["initial"] and r["final"] == r["rounds"][0]["revision"]
        assert r["model"]["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and r["completion_tokens"] > 0
        assert {r["initial_finish"], r["rounds"][0]["critique_finish"], r["rounds"][0]["revision_finish"]} <= {
            "eos",
            "length",
        }
    assert result.stats["tokens_per_s"] > 0 and result.stats["mean_final_chars"] > 0

    c = load_constitution(harmless)
    settings = ChainSettings(c, 1, 0, generator.info, generation_settings(sampling), generation_sha256(sampling))
    rows = list(read_prompt_rows(ROOT / "examples/pairs.jsonl"))[:3]
    naive = CachedSession(generator, reuse=False)  # every step's whole conversation encoded anew
    again = run_chains(
        naive,
        [plan_chain(row, c, 1, 0, generator.info.settings_sha256, settings.generation_sha256) for row in rows],
        settings,
    )
    assert [r.to_json() for r in again] == records
