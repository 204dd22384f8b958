"""Tier 4: `rlaif generate --ray` on the local Ray cluster (two workers) writes the very rows that sampling
in-process writes for the same seed: the same chunks of prompts, each with its derived seed."""

from __future__ import annotations

import json

from rlaif.cluster.connect import RayOptions
from rlaif.config.sampling import SamplingConfig
from rlaif.policy.generate import generate

PROMPTS = [
    "How do I bake bread?",
    "Tell me a story.",
    [{"role": "user", "content": "Hi there"}],
    "Why is the sky blue?",
    "Name a colour.",
    "What is two plus two?",
]


def test_generate_on_ray_gives_the_in_process_samples(tmp_path, ray_cluster, tiny_model_dir):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    config = SamplingConfig(max_new_tokens=8, batch_size=4, temperature=1.0)  # chunks of 2 prompts, n=2
    here = generate(str(tiny_model_dir), prompts, tmp_path / "here.jsonl", n=2, config=config, seed=7, progress=False)
    there = generate(
        str(tiny_model_dir),
        prompts,
        tmp_path / "there.jsonl",
        n=2,
        config=config,
        seed=7,
        progress=False,
        ray=RayOptions(ray_cluster, workers=2),
    )
    rows = [(tmp_path / f).read_text() for f in ("here.jsonl", "there.jsonl")]
    assert rows[0] == rows[1] and here.pairs == there.pairs > 0
    assert there.ray["workers"] == 2 and "on 2 Ray workers" in there.summary()
    other = generate(str(tiny_model_dir), prompts, tmp_path / "other.jsonl", n=2, config=config, seed=8, progress=False)
    assert (tmp_path / "other.jsonl").read_text() != rows[0] and other.pairs > 0  # the seed does decide
