"""Checks on the paths a user names, in a config or on the command line, made before any work starts: an output
file that is a folder, a run folder that is a file, a model that is neither a model folder nor a hub id that can
be reached. Each returns what is wrong in one line (or None), so a command refuses at once, in the user's words,
instead of after an hour of sampling or with a loader's traceback.

Slim like the rest of rlaif/config: huggingface_hub is imported only to look a hub id up in its cache.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator, Literal, Optional

# Files a tokenizer can be loaded from; a model folder without any of them makes transformers try to convert a
# slow tokenizer and fail with a message about sentencepiece or tiktoken.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")
_TRUE = {"1", "on", "yes", "true"}


def require(what: str, problem: Optional[str]) -> None:
    """Raise ValueError('WHAT: PROBLEM') when there is a problem; `what` names the option or field."""
    if problem:
        raise ValueError(f"{what}: {problem}")


def _blocking_ancestor(path: Path) -> Optional[str]:
    """What stops `path` being created below its nearest existing ancestor (a file there, or no permission)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, so {path} cannot be created under it"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"cannot write in {parent} (permission denied)"
            return None
    return None


def output_file_problem(path: str | os.PathLike) -> Optional[str]:
    """What stops `path` being written as a file, or None."""
    p = Path(path)
    if p.is_dir():
        return f"{p} is a folder; give a file name (e.g. {p / 'out.jsonl'})"
    if p.exists() and not os.access(p, os.W_OK):
        return f"cannot write {p} (permission denied)"
    return None if p.exists() else _blocking_ancestor(p)


def output_dir_problem(path: str | os.PathLike) -> Optional[str]:
    """What stops `path` being used as an output folder (created if missing), or None."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            return f"{p} is a file; give a folder (it is created if missing)"
        return None if os.access(p, os.W_OK | os.X_OK) else f"cannot write in {p} (permission denied)"
    return _blocking_ancestor(p)


def _offline() -> bool:
    return any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hub_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
        return True
    except HFValidationError:
        return False


def _in_hub_cache(repo_id: str, revision: Optional[str]) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(
        isinstance(try_to_load_from_cache(repo_id, f, revision=revision), str)
        for f in ("config.json", "adapter_config.json")
    )


def _folder_problem(p: Path, head: Optional[Literal["score"]]) -> Optional[str]:
    if not p.is_dir():
        return f"{p} is a file, not a model folder"
    if not (p / "config.json").exists() and not (p / "adapter_config.json").exists():
        why = "an empty folder" if not any(p.iterdir()) else "no config.json"
        return (
            f"{p} is not a saved model directory ({why}): give a folder written by save_pretrained (e.g. a "
            "training run's OUT/model) or a hub id"
        )
    if not any((p / f).exists() for f in TOKENIZER_FILES):
        return (
            f"{p} has no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, ...): save the tokenizer beside the model"
        )
    if head == "score" and (p / "config.json").exists():
        try:
            architectures = json.loads((p / "config.json").read_text(encoding="utf-8")).get("architectures") or []
        except (ValueError, AttributeError):
            return f"{p / 'config.json'} is not a JSON object of model settings"
        if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
            return (
                f"{p} holds a {architectures[0]}, not a reward model with a score head: give the model/ folder "
                "`rlaif train reward` writes"
            )
    return None


def model_problem(
    path: str, revision: Optional[str] = None, head: Optional[Literal["score"]] = None, local_only: bool = False
) -> Optional[str]:
    """What is wrong with a model named by a local folder or a hub id, found without loading it (or None). A hub
    id that is not cached is looked up on the hub (unless HF_HUB_OFFLINE is set, when it is refused at once).
    `head="score"`: the folder must hold a sequence classifier (a reward model)."""
    local = Path(path).expanduser()
    if local.exists():
        return _folder_problem(local, head)
    if local_only or not _hub_id(str(path)):
        return f"no such folder: {path}"
    if _in_hub_cache(str(path), revision):
        return None
    if _offline():
        return (
            f"'{path}' is not a local folder, and not in the Hugging Face cache while HF_HUB_OFFLINE is set: "
            "download it once with the hub reachable, or give a local folder"
        )
    return _hub_problem(str(path), revision)


def _hub_problem(repo_id: str, revision: Optional[str]) -> Optional[str]:
    """Ask the hub once about a model that is not cached: one short request, where transformers' download would
    retry for most of a minute when the hub cannot be reached and then print a paragraph."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        HfApi().model_info(repo_id, revision=revision, timeout=10)
    except GatedRepoError:
        return f"'{repo_id}' is gated on the hub: accept its terms on its page and log in (`hf auth login`)"
    except RepositoryNotFoundError:
        return (
            f"'{repo_id}' is not a local folder, and the hub has no model of that name (a private one needs "
            "`hf auth login`)"
        )
    except RevisionNotFoundError:
        return f"the hub has no revision '{revision}' of '{repo_id}'"
    except Exception as e:  # noqa: BLE001 - DNS, proxy, TLS, timeout, a server error: the hub cannot be used now
        reason = " ".join(str(e).split()) or type(e).__name__
        return (
            f"'{repo_id}' is not a local folder or in the Hugging Face cache, and the hub cannot be reached "
            f"({reason}): connect, or give a local folder"
        )
    return None


@contextlib.contextmanager
def loading(what: str, path: str | os.PathLike) -> Iterator[None]:
    """Around a `from_pretrained` call: the OSError transformers raises for a model it cannot find or fetch (a
    paragraph with no errno) becomes one line naming `what`. A real I/O error (disk full) passes unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno is not None:
            raise
        first = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise ValueError(f"{what}: cannot load {path}: {first}") from e


def is_loopback(host: str) -> bool:
    """Whether a server's --host keeps it on this machine (127.0.0.0/8, ::1, localhost); "" means every
    interface."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # another host name, or "" (every interface)
        return False


def remote_host_refusal(host: str, what: str, risk: str, allow_remote: bool) -> Optional[str]:
    """The one line that refuses a --host beyond loopback without --allow-remote (None when it is allowed)."""
    if allow_remote or is_loopback(host):
        return None
    return (
        f"--host {host or repr(host)} would serve {what} beyond this machine over plain HTTP, {risk}. Keep "
        f"--host 127.0.0.1 behind a reverse proxy that adds TLS (Caddy, nginx), or pass --allow-remote to "
        f"listen anyway."
    )
