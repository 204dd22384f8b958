"""Checkpoints a run can resume from: OUT/checkpoint-STEP/ holds the model and tokenizer in Hugging Face format
(loadable with from_pretrained, or peft adapters under LoRA) plus the optimiser, scheduler and every process's
RNG state (written by accelerate) and trainer_state.json. A checkpoint is written under a .tmp name and renamed
when complete, so a run killed mid-save resumes from the previous one.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Optional

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in `out_dir`, oldest first."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = []
    for p in out_dir.iterdir():
        m = _NAME.match(p.name)
        if m and (p / STATE_FILE).exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(out_dir: str | Path) -> Optional[Path]:
    found = list_checkpoints(out_dir)
    return found[-1][1] if found else None


def remove_partial(out_dir: str | Path) -> None:
    """Delete checkpoint-*.tmp folders left by a run killed while saving."""
    for p in Path(out_dir).glob("checkpoint-*.tmp"):
        shutil.rmtree(p, ignore_errors=True)


class Checkpointer:
    """Saves and restores a run's state through an `accelerate.Accelerator` (so DDP, FSDP and ZeRO work alike).

    The model is written by `save_pretrained` on the main process, so accelerate's own copy of the weights is
    skipped (save hook) and, on resume, the model is expected to have been built from the checkpoint already
    (load hook).
    """

    def __init__(self, accelerator, out_dir: str | Path, tokenizer, keep: Optional[int] = None):
        self.acc, self.out_dir, self.tokenizer, self.keep = accelerator, Path(out_dir), tokenizer, keep
        accelerator.register_save_state_pre_hook(lambda models, weights, d: weights.clear())
        accelerator.register_load_state_pre_hook(lambda models, d: models.clear())

    def save(self, model, step: int, state: dict) -> Path:
        acc = self.acc
        final = self.out_dir / f"checkpoint-{step}"
        tmp = self.out_dir / f"checkpoint-{step}.tmp"
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        weights = acc.get_state_dict(model)  # gathers shards under FSDP / ZeRO-3; every process must call it
        if acc.is_main_process:
            acc.unwrap_model(model).save_pretrained(tmp, state_dict=weights, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)
        acc.save_state(str(tmp))
        acc.wait_for_everyone()
        if acc.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps({"step": step, **state}, indent=2) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
            self._prune()
        acc.wait_for_everyone()
        return final

    def load(self, path: Path) -> dict:
        """Restore optimiser, scheduler and RNG state from `path`; returns its trainer_state.json."""
        self.acc.load_state(str(path))
        return json.loads((path / STATE_FILE).read_text())

    def _prune(self) -> None:
        if self.keep is None:
            return
        for _, p in list_checkpoints(self.out_dir)[: -self.keep]:
            shutil.rmtree(p, ignore_errors=True)
