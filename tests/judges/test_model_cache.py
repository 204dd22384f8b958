"""The GGUF conversion cache (rlaif/models/loading.py) on a tiny llama-architecture GGUF file written here with the
`gguf` package: a 2-layer, 32-wide model with a byte-level BPE tokenizer in its metadata. Conversion shows as one
line of our own; two real processes converting at once both succeed and share one cache entry.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CHATML
from tests.helpers import ROOT

gguf = pytest.importorskip("gguf")

HIDDEN, FFN, LAYERS, HEADS, KV_HEADS = 32, 64, 2, 4, 2


def byte_tokens() -> list[str]:
    """GPT-2's byte-to-unicode table: one printable character per byte, the base vocabulary of a byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def write_tiny_gguf(path: Path):
    """A tiny llama GGUF (float32 tensors) that transformers' GGUF loader accepts; returns the token embedding."""
    import numpy as np

    tokens = ["<pad>", "<|im_start|>", "<|im_end|>", *byte_tokens(), "Re", "Res"]
    vocab, head_dim = len(tokens), HIDDEN // HEADS
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(LAYERS)
    w.add_context_length(256)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3] + [1] * (vocab - 3))  # 3: control tokens, 1: normal
    w.add_token_merges(["R e", "Re s"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_pad_token_id(0)
    w.add_chat_template(CHATML)
    rng = np.random.default_rng(0)

    def weight(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    embedding = weight(vocab, HIDDEN)
    w.add_tensor("token_embd.weight", embedding)
    w.add_tensor("output_norm.weight", np.ones(HIDDEN, np.float32))
    w.add_tensor("output.weight", weight(vocab, HIDDEN))
    for i in range(LAYERS):
        for name, shape in (
            ("attn_q", (HIDDEN, HIDDEN)),
            ("attn_k", (KV_HEADS * head_dim, HIDDEN)),
            ("attn_v", (KV_HEADS * head_dim, HIDDEN)),
            ("attn_output", (HIDDEN, HIDDEN)),
            ("ffn_gate", (FFN, HIDDEN)),
            ("ffn_up", (FFN, HIDDEN)),
            ("ffn_down", (HIDDEN, FFN)),
        ):
            w.add_tensor(f"blk.{i}.{name}.weight", weight(*shape))
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(HIDDEN, np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(HIDDEN, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return embedding


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-gguf")
    embedding = write_tiny_gguf(folder / "tiny.gguf")
    return folder, embedding


def assert_converted(path: str, embedding) -> None:
    """The cache entry loads as an ordinary checkpoint holding the GGUF's weights and tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path)
    assert torch.equal(model.get_input_embeddings().weight, torch.from_numpy(embedding))
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.convert_ids_to_tokens(tok("Res").input_ids) == ["Res"]


def test_conversion_is_one_line_of_ours_then_silent(tiny_gguf, tmp_path, capfd):
    from rlaif.models.loading import resolve_model_dir

    folder, embedding = tiny_gguf
    path = resolve_model_dir(str(folder), gguf_file="tiny.gguf", cache_dir=str(tmp_path))
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rlaif: converting the judge model tiny.gguf once into "), err
    assert path in err and " done in " in err
    assert_converted(path, embedding)
    capfd.readouterr()
    assert resolve_model_dir(str(folder), gguf_file="tiny.gguf", cache_dir=str(tmp_path)) == path
    assert capfd.readouterr().err == ""  # the cached copy is used as it is


# Each racer imports everything first, then waits for the starting gun (a file), so both convert at once.
RACER = """
import sys, time
from pathlib import Path
import torch, transformers
from rlaif.models.loading import resolve_model_dir
folder, cache, gun = sys.argv[1:]
while not Path(gun).exists():
    time.sleep(0.001)
print(resolve_model_dir(folder, gguf_file="tiny.gguf", cache_dir=cache))
"""


@pytest.mark.slow
def test_two_processes_converting_at_once_both_succeed(tiny_gguf, tmp_path):
    from rlaif.models.loading import conversion_dir

    folder, embedding = tiny_gguf
    cache, gun = tmp_path / "cache", tmp_path / "go"
    entry = conversion_dir(str(folder), "tiny.gguf", str(cache))
    stale = entry.with_name(entry.name + ".tmp4194304")  # left by a conversion killed mid-write
    (stale / "half").mkdir(parents=True)
    (stale / "half" / "model.safetensors").write_bytes(b"\0" * 100)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(folder), str(cache), str(gun)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    time.sleep(1.0)  # let both finish importing torch (they wait for the gun either way)
    gun.touch()
    results = [r.communicate(timeout=300) for r in racers]
    for racer, (out, err) in zip(racers, results):
        assert racer.returncode == 0, err[-3000:]
        assert out.strip() == str(entry)
        assert all(line.startswith("rlaif: ") for line in err.splitlines()), err  # no tqdm, no warnings
    errs = [err for _, err in results]
    assert sum(e.count("rlaif: converting") for e in errs) == 1  # one converted, the other used its copy
    assert sorted(p.name for p in cache.iterdir()) == [entry.name, entry.name + ".lock"]  # stale .tmp cleaned
    assert_converted(str(entry), embedding)
