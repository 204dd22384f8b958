"""Progress for long jobs: a rich bar (pairs/s, ETA) on a terminal, periodic plain lines in logs and CI."""

from __future__ import annotations

import sys
import time
from typing import Optional


class _Lines:
    """Non-terminal fallback: one line every `every` seconds and at the end, so logs show a job is alive."""

    def __init__(self, description: str, total: Optional[int], every: float = 30.0, unit: str = "pairs"):
        self.description, self.total, self.every, self.unit = description, total, every, unit
        self.done = 0
        self.note = ""
        self.start = self.last = time.time()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if time.time() - self.last >= self.every:
            self._line()

    def set_note(self, note: str) -> None:
        self.note = note

    def _line(self) -> None:
        self.last = time.time()
        rate = self.done / max(self.last - self.start, 1e-9)
        eta = f", ETA {(self.total - self.done) / rate:.0f}s" if self.total and rate > 0 else ""
        print(
            f"{self.description}: {self.done}/{self.total if self.total is not None else '?'} "
            f"({rate:.2f} {self.unit}/s{eta}{', ' + self.note if self.note else ''})",
            file=sys.stderr,
            flush=True,
        )

    def stop(self) -> None:
        self._line()


class _Bar:
    def __init__(self, description: str, total: Optional[int], unit: str = "pairs"):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        class Rate(TextColumn):
            def render(self, task):
                speed = task.finished_speed or task.speed
                return super().render(task) if speed is None else f"{speed:.2f} {unit}/s"

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            Rate(""),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=Console(stderr=True),
        )
        self.task = self.bar.add_task(description, total=total, note="")
        self.bar.start()

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.task, n)

    def set_note(self, note: str) -> None:
        """A few words after the rate, e.g. how many of a cluster's workers are alive."""
        self.bar.update(self.task, note=note)

    def stop(self) -> None:
        self.bar.stop()


def progress(description: str, total: Optional[int], enabled: bool = True, unit: str = "pairs"):
    """A progress reporter with advance(n), set_note(text) and stop(); None when disabled. `unit`
    names what is counted, in the rate ("pairs/s")."""
    if not enabled:
        return None
    return _Bar(description, total, unit) if sys.stderr.isatty() else _Lines(description, total, unit=unit)
