"""Helpers shared by the tests: where the repository and the shared data are, the CLI as a subprocess, and a real
`rlaif …` subprocess killed with SIGKILL once a file it writes has enough lines, then run again to completion."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# ../shared beside the repository root (CI puts it there); never an absolute path of one machine
SHARED_DATA = ROOT.parent / "shared" / "data"
HH_HARMLESS_TEST = SHARED_DATA / "hh-rlhf-harmless-test.jsonl.gz"


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


def kill_then_resume(cmd: list[str], out: Path, steps: int, kill_after: int = 12) -> list[dict]:
    """SIGKILL `cmd` once OUT/metrics.jsonl has `kill_after` lines (past a checkpoint), check some logged steps
    were past the newest checkpoint, run the same command again, and check it resumed there and logged every
    step exactly once. Returns the resumed run's metrics."""
    from rlaif.train.checkpoint import list_checkpoints
    from rlaif.train.metrics import read_metrics

    kill_when(cmd, out / "metrics.jsonl", kill_after)
    killed_at = [r["step"] for r in read_metrics(out)]
    saved = [step for step, _ in list_checkpoints(out)]
    assert saved and max(saved) < steps and killed_at[-1] > max(saved)  # some logged steps are past the checkpoint
    assert f"resuming at step {max(saved)}" in run_to_end(cmd)
    resumed = read_metrics(out)
    assert [r["step"] for r in resumed] == list(range(1, steps + 1))  # no gap, no repeat
    return resumed


def keyword_share(
    model, tokenizer, prompts: list, keyword: str = "please", n: int = 4, max_new_tokens: int = 8, seed: int = 0
) -> float:
    """Share of sampled replies (temperature 1, no truncation) that contain `keyword` as a word."""
    from rlaif.policy.sampling import SamplingConfig, sample

    groups = sample(
        model, tokenizer, prompts, n, SamplingConfig(max_new_tokens=max_new_tokens, batch_size=64), seed=seed
    )
    replies = [s.text.split() for g in groups for s in g]
    return sum(keyword in words for words in replies) / len(replies)


def shares_before_after(model_config, run_dir: Path, labels: Path, n_prompts: int = 50) -> tuple[float, float]:
    """The keyword share of the starting tiny policy and of the trained one saved in RUN/model, on the first
    `n_prompts` prompts of a label file."""
    import json

    from transformers import AutoModelForCausalLM

    from rlaif.train.models import build_tiny, build_tokenizer

    tok = build_tokenizer(model_config)
    prompts = [json.loads(line)["prompt"] for line in labels.read_text().splitlines()][:n_prompts]
    before = keyword_share(build_tiny(model_config, tok, "lm"), tok, prompts)
    return before, keyword_share(AutoModelForCausalLM.from_pretrained(run_dir / "model"), tok, prompts)


# ---------------------------------------------------------------------------------------------- feedback records
# Label records as `rlaif label` and people write them, the files that hold them, and `rlaif …` run as a
# subprocess: shared by tests/feedback, tests/human and tests/eval. Self-contained (imports inside the helpers).


def run_cli(*args, timeout: float = 180) -> subprocess.CompletedProcess:
    """`rlaif ARGS` as a subprocess from the repository root; the result is returned whatever its exit code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(rlaif_command(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def write_jsonl(path: Path, records) -> Path:
    """Write `records` as JSON lines (creating the folder); returns the path."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def ai_record(
    pid: str,
    p_a,
    *,
    orders=None,
    human=None,
    principle="p1",
    per_principle=None,
    status="ok",
    a="short",
    b="a longer reply",
    error=None,
    **extra,
) -> dict:
    """An AI label record as `rlaif label` writes it (only the fields calibration reads, plus the required)."""
    from rlaif.preference import label_for

    if orders is None and p_a is not None:
        orders = [p_a, p_a]
    r = {
        "id": pid,
        "key": f"k-{pid}",
        "prompt": f"question {pid}",
        "response_a": a,
        "response_b": b,
        "p_a": p_a,
        "label": None if p_a is None else label_for(p_a, 0.05),
        "status": status,
        "p_a_orders": orders,
        "principle_id": principle,
        "source": "ai",
        "judge": {"backend": "python", "model": "test", "settings_sha256": "0" * 64},
        "constitution_sha256": "c" * 64,
        **extra,
    }
    if orders is not None:
        r["position_consistent"] = (orders[0] - 0.5) * (orders[1] - 0.5) > 0
    if per_principle:
        r["per_principle"] = per_principle
    if human:
        r["human_label"] = human
    if error:
        r["error"] = error
    return {k: v for k, v in r.items() if v is not None or k in ("p_a", "label")}


def human_record(pid: str, label: str, annotator: str, **extra) -> dict:
    """A human label record of the same pair `ai_record(pid, …)` makes, by `annotator`."""
    from rlaif.records import HUMAN_P

    return {
        "id": pid,
        "key": f"h-{pid}-{annotator}",
        "prompt": f"question {pid}",
        "response_a": "short",
        "response_b": "a longer reply",
        "p_a": HUMAN_P[label],
        "label": label,
        "status": "ok",
        "source": "human",
        "annotator": annotator,
        "shown_order": "ab",
        "created_at": "2026-01-01T00:00:00Z",
        **extra,
    }
