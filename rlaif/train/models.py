"""Models for training: a tiny random Llama and its tokenizer built from a config (tests and CPU examples, no
download), or a hub id / local directory loaded with transformers; as a causal LM (policy, reference) or with a
one-output score head (reward model); optionally wrapped in LoRA adapters; and whether a run's pairs are shared-
prefix rows (rlaif.models.prefix) for them.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Literal, Optional

import torch

from ..config.paths import loading
from ..config.run import LoraConfig, ModelSource, PretrainedModelConfig, TinyModelConfig
from ..models import prefix
from .data import Layout

Head = Literal["lm", "score"]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<pad>", "<|im_start|>", "<|im_end|>", "<unk>"]


def build_tokenizer(config):
    """A deterministic tokenizer for a TinyModelConfig: whole words from `vocab`, or bytes; ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if config.vocab:
        words = list(dict.fromkeys(["user", "assistant", "system", *config.vocab]))
        vocab = {tok: i for i, tok in enumerate(SPECIALS + [w for w in words if w not in SPECIALS])}
        tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
    else:
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        vocab = {tok: i for i, tok in enumerate(SPECIALS + sorted(alphabet))}
        tok = Tokenizer(models.BPE(vocab, [], unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>", unk_token="<unk>"
    )
    fast.chat_template = CHATML
    return fast


def build_tiny(config, tokenizer, head: Head):
    """A random Llama of the configured size, seeded by `config.seed` so the same config gives the same model."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=False,
        num_labels=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = LlamaForCausalLM(cfg) if head == "lm" else LlamaForSequenceClassification(cfg)
    if head == "lm":
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def load_tokenizer(source, path: Optional[Path] = None):
    """The tokenizer of a model source (or of a saved checkpoint `path`), with a pad token set."""
    from transformers import AutoTokenizer

    if path is None and isinstance(source, TinyModelConfig):
        return build_tokenizer(source)
    with loading("model.path" if path is None else "checkpoint", path or source.path):
        tok = AutoTokenizer.from_pretrained(
            str(path or source.path),
            **({} if path else {"revision": source.revision, "trust_remote_code": source.trust_remote_code}),
        )
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(source, tokenizer, head: Head, path: Optional[Path] = None, dtype: torch.dtype = torch.float32):
    """The model of a source, or the one saved in checkpoint `path` (HF format) when resuming."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if path is None and isinstance(source, TinyModelConfig):
        return build_tiny(source, tokenizer, head).to(dtype)
    auto = AutoModelForCausalLM if head == "lm" else AutoModelForSequenceClassification
    kwargs = {"dtype": dtype}
    if head == "score":
        kwargs["num_labels"] = 1
    if isinstance(source, PretrainedModelConfig):
        kwargs["trust_remote_code"] = source.trust_remote_code
        if source.attn_implementation:
            kwargs["attn_implementation"] = source.attn_implementation
        if path is None and source.revision:
            kwargs["revision"] = source.revision
    with loading("model.path" if path is None else "checkpoint", path or source.path):
        model = auto.from_pretrained(str(path or source.path), **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def add_lora(model, lora, head: Head, path: Optional[Path] = None):
    """Wrap `model` in peft LoRA adapters (fresh, or the ones saved at `path` when resuming)."""
    try:
        import peft
    except ImportError as e:
        raise RuntimeError("lora: needs peft (pip install 'rlaif[train]')") from e
    if path is not None:
        return peft.PeftModel.from_pretrained(model, str(path), is_trainable=True)
    cfg = peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM" if head == "lm" else "SEQ_CLS",
    )
    return peft.get_peft_model(model, cfg)


def load_trainable(
    source: ModelSource, lora: Optional[LoraConfig], tokenizer, head: Head, resume: Optional[Path] = None
):
    """The model a run trains: the source's model, or the one in checkpoint `resume`; under LoRA the base model
    is the source's and only the adapters come from the checkpoint."""
    if lora:
        return add_lora(load_model(source, tokenizer, head), lora, head, path=resume)
    return load_model(source, tokenizer, head, path=resume)


def load_reference(source: ModelSource, tokenizer, device, dtype: torch.dtype = torch.float32):
    """The frozen reference policy: the source's model as training starts from it, in eval mode, on `device`."""
    model = load_model(source, tokenizer, "lm", dtype=dtype).to(device).eval()
    return model.requires_grad_(False)


@contextlib.contextmanager
def reference_mode(policy, reference):
    """The frozen reference, without gradients: `reference` itself, or (reference None, under LoRA) `policy`
    with its adapters switched off — the base model is the reference."""
    with torch.no_grad():
        if reference is not None:
            yield reference
            return
        peft_model = getattr(policy, "module", policy)  # under DDP the adapters live on the wrapped module
        with peft_model.disable_adapter():
            yield policy


def share_prefix(setting, models: list, packing: bool = False) -> tuple[Layout, str]:
    """How a run lays out its pairs for `models` (the models that read its pairs: policy and reference, or the
    reward model; unwrapped; None for one it does not hold), and what the run says about it. `setting` is the
    config's prefix_sharing: auto turns it on where it is exact; true on a model it cannot make exact is refused
    (ValueError: one line, exit 2) rather than run on two rows per pair unasked. `packing` (the config's) puts a
    micro-batch's shared rows in one row; it needs prefix sharing on and is refused where it is off."""
    held = [m for m in models if m is not None]
    why = "prefix_sharing: false" if setting is False else next(filter(None, map(prefix.problem, held)), None)
    if why is not None and setting is True:
        raise ValueError(
            f"prefix_sharing: true, but shared-prefix rows would not be exact here: {why}; use auto or false"
        )
    if why is not None and packing:
        raise ValueError(f"packing: true needs prefix sharing, which is off here ({why}); set packing: false")
    if setting is False:
        return "two", "prefix sharing off (prefix_sharing: false)"
    if why is not None:
        return "two", f"prefix sharing off: not exact for this model ({why})"
    for model in held:
        prefix.enable(model)
    if packing:
        return "packed", "prefix sharing on, packed: each micro-batch's pairs in one row, each prompt encoded once"
    return "shared", "prefix sharing on: one row per pair, its prompt encoded once"
