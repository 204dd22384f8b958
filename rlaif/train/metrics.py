"""Per-step training metrics: one JSON object per optimizer step in OUT/metrics.jsonl, and, when the config names
them, TensorBoard, trackio or Weights & Biases (each imported only then). On resume the file is cut back to the
checkpoint's step, so the steps redone after a kill are logged once and no step is missing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

FILE = "metrics.jsonl"


def truncate_after(path: Path, step: int) -> int:
    """Keep the whole lines of `path` whose step is <= `step`; returns the lines kept."""
    if not path.exists():
        return 0
    kept = []
    for line in path.read_text(encoding="utf-8").split("\n"):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # an empty or half-written last line
        if row.get("step", math.inf) <= step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return len(kept)


def read_metrics(out_dir: str | Path) -> list[dict]:
    path = Path(out_dir) / FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class MetricsLog:
    """Writes metrics on the main process only (`enabled`); other processes get a no-op logger."""

    def __init__(
        self,
        out_dir: str | Path,
        report_to: list[str],
        project: str,
        config: dict,
        resume_step: int = 0,
        enabled: bool = True,
    ):
        self.enabled = enabled
        self.sinks: list = []
        if not enabled:
            return
        out_dir = Path(out_dir)
        self.path = out_dir / FILE
        truncate_after(self.path, resume_step)
        self.file = open(self.path, "a", encoding="utf-8")
        run_name = out_dir.name
        for name in report_to:
            self.sinks.append(_SINKS[name](out_dir, project, run_name, config, resume_step))

    def log(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        row = {"step": step, **{k: _plain(v) for k, v in values.items()}}
        # flushed per step: a SIGKILL loses nothing that was logged (the OS keeps the written bytes)
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        numbers = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float))}
        for sink in self.sinks:
            sink.log(step, numbers)

    def close(self) -> None:
        if not self.enabled:
            return
        self.file.close()
        for sink in self.sinks:
            sink.close()


def _plain(v):
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class _TensorBoard:
    def __init__(self, out_dir: Path, project: str, run_name: str, config: dict, resume_step: int):
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        # purge_step drops events logged after the checkpoint by the killed run
        self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None)

    def log(self, step: int, values: dict) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Trackio:
    def __init__(self, out_dir: Path, project: str, run_name: str, config: dict, resume_step: int):
        import trackio

        self.trackio = trackio
        trackio.init(project=project, name=run_name, config=config, resume="allow")

    def log(self, step: int, values: dict) -> None:
        self.trackio.log(values, step=step)

    def close(self) -> None:
        self.trackio.finish()


class _WandB:
    def __init__(self, out_dir: Path, project: str, run_name: str, config: dict, resume_step: int):
        import uuid

        import wandb

        id_file = out_dir / "wandb_run_id"  # the same W&B run continues after a resume
        if not id_file.exists():
            id_file.write_text(uuid.uuid4().hex[:16])
        self.run = wandb.init(
            project=project,
            name=run_name,
            config=config,
            dir=str(out_dir),
            id=id_file.read_text().strip(),
            resume="allow",
        )

    def log(self, step: int, values: dict) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


_SINKS = {"tensorboard": _TensorBoard, "trackio": _Trackio, "wandb": _WandB}
