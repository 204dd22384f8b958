"""What every command module shares: the one error path (a user-facing error becomes one clean line and an exit
code, never a traceback; `--debug` or RLAIF_DEBUG=1 shows the traceback), plain stderr lines (so no terminal
width re-wraps a FILE:LINE message), the exits of a job that stopped at a cap or holds failures, the one table
printer and the rows every job's summary ends with, and the `merge` of a sharded job.

Exit codes, for every command: 0 ok; 2 bad input or a refused job; 3 a spending cap stopped the job; 4 judge
failures were recorded (unless --allow-failed); 5 training diverged (a non-finite loss or gradient norm); 1 an
internal error (a bug: please report it with the traceback).
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Iterable, List, Sequence, TypeVar

import typer
from typer.exceptions import TyperException

from ..config.yamlfile import ConfigFileError
from ..jobs.shards import merge_shards
from ..numbers import TrainingDiverged

T = TypeVar("T")

BAD_INPUT, INTERNAL, CAPPED, FAILED, DIVERGED = 2, 1, 3, 4, 5
DEBUG_ENV = "RLAIF_DEBUG"


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def eprint(line: str) -> None:
    print(line, file=sys.stderr)


def fail(lines, code: int = BAD_INPUT) -> None:
    for line in [lines] if isinstance(lines, str) else lines:
        eprint(line)
    raise typer.Exit(code)


def error_lines(e: BaseException, code: int = BAD_INPUT) -> tuple[list[str], int]:
    """What the user sees for an exception, and the exit code: one line per problem."""

    if isinstance(e, ConfigFileError):
        return list(e.errors), code
    if isinstance(e, TrainingDiverged):
        return [f"error: training diverged: {_one_line(str(e))}"], DIVERGED
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {e.filename}" if e.filename else ""
        return [
            f"error: no space left on the device{where}. Everything written before is kept: free some space "
            f"and run the same command again to resume."
        ], code
    if type(e).__name__ == "OutOfMemoryError":  # torch's, named without importing torch
        return [
            "error: out of memory on the accelerator: lower batch_size or max_length (a training run resumes "
            "from its last checkpoint)"
        ], code
    # a bare RuntimeError from torch or another library (a shape mismatch) is a bug to report, not bad input
    user_facing = isinstance(e, (ValueError, RuntimeError, OSError)) and (
        type(e) is not RuntimeError or _raised_by_rlaif(e)
    )
    if user_facing:
        text = (
            str(e)
            if not isinstance(e, OSError) or not e.strerror
            else f"{e.strerror}{': ' + str(e.filename) if e.filename else ''}"
        )
        return [f"error: {_one_line(text)}"], code
    return [
        f"internal error: {type(e).__name__}: {_one_line(str(e))} (run with --debug or {DEBUG_ENV}=1 for the "
        f"traceback, and please report it)"
    ], INTERNAL


def _raised_by_rlaif(e: BaseException) -> bool:
    """Whether the innermost frame that raised `e` is rlaif's own code (its RuntimeErrors describe input or a
    refused job; a library's bare RuntimeError is an internal error)."""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_globals.get("__name__", "").split(".")[0] == "rlaif"


def _one_line(text: str) -> str:
    """A library's paragraph-long message (transformers writes several lines) as one line: the output stays one
    line per problem, whatever raised it."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def guard(fn: Callable[[], T], code: int = BAD_INPUT) -> T:
    """Run `fn`; a bad config, bad input or a refused job exits with `code` and one line per problem."""
    try:
        return fn()
    except (TyperException, typer.Exit, typer.Abort, KeyboardInterrupt):
        raise  # typer's (and its click's) own: exit codes, usage errors (exit 2), Ctrl-C
    except Exception as e:  # noqa: BLE001 - this is the one place errors become lines
        if debug_enabled():
            traceback.print_exc()
        lines, exit_code = error_lines(e, code)
        fail(lines, exit_code)


def exit_if_capped(result, stats: dict, kept: str) -> None:
    """Exit 3 when the job stopped at a spending cap (a cap wins over failures: raising it is the next step either
    way), saying what was kept and how to resume."""
    if not result.stopped:
        return
    spent = (
        (
            f" The cap counts this job's spending over all its runs ({stats['spent_requests']} requests, "
            f"estimated cost {stats['spent_cost']})."
        )
        if "spent_requests" in stats
        else ""
    )
    eprint(
        f"stopped early ({result.stopped}); {kept} so far is kept.{spent} Run the same command with a higher "
        f"--max-requests / --max-cost to resume."
    )
    raise typer.Exit(CAPPED)


def exit_if_failed(
    failed: int, allow_failed: bool, stats: dict, out_dir, lacking: str, because: str, fixed: str
) -> None:
    """Exit 4 when the folder holds `failed` items the model failed on (unless --allow-failed), saying how many
    failed this run and before, the commonest reason, and how to try them again."""
    if not failed or allow_failed:
        return
    common = next(iter(stats["failure_reasons"]), "unknown")  # the whole reason, commonest first (top_reasons)
    eprint(
        f"{failed} {lacking} because {because} ({stats['failed_this_run']} this run, {stats['failed_before']} "
        f"before; most often: {common}; all reasons in {out_dir}/stats.json). Once {fixed} works, run the same "
        f"command with --retry-failed, or pass --allow-failed to accept the folder as it is."
    )
    raise typer.Exit(FAILED)


def run_rows(stats: dict, job, *own: tuple[str, object]) -> list[tuple[str, object]]:
    """The rows a job's summary ends with (`job`, its JobSpec, names the figures): what this run did, with the job's
    `own` figures of it, the rates, the wall time, the Ray workers (alive at the end) and each one's rate, the
    estimated cost and what the job has spent. A merged folder has no run: its rows are left out."""
    ray = stats.get("ray")
    workers = ray["per_worker"] if ray else []
    return [
        (f"{job.done} this run", stats.get(f"{job.done}_now")),
        ("resumed (already done)", stats.get("resumed_skipped")),
        *own,
        (f"{job.rate}/s", stats.get(f"{job.rate}_per_s")),
        ("tokens/s", stats.get("tokens_per_s") or None),
        ("wall time s", stats.get("wall_time_s")),
        ("Ray workers (alive at the end)", f"{ray['workers']} ({ray['workers_alive']})" if ray else None),
        (f"{job.unit}/s per worker", " / ".join(str(w[f"{job.unit}_per_s"]) for w in workers) or None),
        ("estimated cost", stats.get("estimated_cost")),
        ("spent by this job: requests", stats.get("spent_requests") or None),
    ]


def merge_command(app: typer.Typer, job, summary: Callable[[dict, str], None]) -> None:
    """Give a job's command group (`rlaif label`, `rlaif score`) its `merge`: the folders of a sharded job combined
    into one (rlaif.jobs.shards.merge_shards, `job` its JobSpec), then the job's `summary` of the merged folder."""

    @app.command(
        "merge",
        help=f"Combine the folders of a sharded {job.kind.job} job into one, checking they are "
        "from one job, complete and disjoint.",
    )
    def merge(
        dirs: List[Path] = typer.Argument(..., help="Shard output directories."),
        out_dir: Path = typer.Option(..., "--out", help="Merged output directory."),
    ) -> None:
        summary(guard(lambda: merge_shards(dirs, out_dir, job())), f"merged {job.kind.records} in {out_dir}")


def print_table(title: str, rows: Iterable[Sequence], header: Sequence[str] = ("figure", "value")) -> None:
    """A table on stdout: the first column left-aligned, the others right; cells are plain text, not markup
    (principle ids may hold brackets). Rows whose value is None are left out."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right")
    for row in rows:
        if len(row) == 2 and row[1] is None:
            continue
        table.add_row(*(Text(str(x)) for x in row))
    Console().print(table)
