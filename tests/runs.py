"""Helpers shared by the training tests: a real `rlaif …` subprocess killed with SIGKILL once its metrics file has
enough lines, then run again to completion with the same command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def rlaif_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "rlaif.cli", *map(str, args)]


def kill_when(cmd: list[str], watch: Path, lines: int, timeout: float = 240) -> None:
    """Start `cmd`, SIGKILL it as soon as `watch` has `lines` lines (it must still be running then)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while _lines(watch) < lines and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def run_to_end(cmd: list[str], timeout: float = 300) -> str:
    """Run `cmd` to completion (it must succeed); returns its stdout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout
