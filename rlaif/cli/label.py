"""`rlaif label` (a resumable labelling job: pairs → judge in both orders → labels.jsonl) and `rlaif label merge`
(combine the folders of a sharded job)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import eprint, fail, guard, print_table

app = typer.Typer(help="Label pairs with a judge under a constitution (and merge shards).",
                  invoke_without_command=True)


# options `rlaif revise` shares
FORMAT = typer.Option(None, "--format", help="jsonl, json, parquet or hf_dataset (default: detected).")
MAX_REQUESTS = typer.Option(None, help="Cap on the requests this job sends, over all its runs (replaces the judge "
                            "config's).")
MAX_COST = typer.Option(None, help="Cap on this job's estimated cost, over all its runs (replaces the judge "
                        "config's).")
QUIET = typer.Option(False, help="No progress bar.")


def exit_if_capped(result, stats: dict, kept: str) -> None:
    """Exit 3 when the job stopped at a spending cap (a cap wins over failures: raising it is the next step either
    way), saying what was kept and how to resume."""
    if not result.stopped:
        return
    spent = (f" The cap counts this job's spending over all its runs ({stats['spent_requests']} requests, "
             f"estimated cost {stats['spent_cost']}).") if "spent_requests" in stats else ""
    eprint(f"stopped early ({result.stopped}); {kept} so far is kept.{spent} Run the same command with a higher "
           f"--max-requests / --max-cost to resume.")
    raise typer.Exit(3)


def exit_if_failed(failed: int, allow_failed: bool, stats: dict, out_dir, lacking: str, because: str,
                   fixed: str) -> None:
    """Exit 4 when the folder holds `failed` items the model failed on (unless --allow-failed), saying how many
    failed this run and before, the commonest reason, and how to try them again."""
    if not failed or allow_failed:
        return
    common = next(iter(stats["failure_reasons"]), "unknown")  # the whole reason, commonest first (top_reasons)
    eprint(f"{failed} {lacking} because {because} ({stats['failed_this_run']} this run, {stats['failed_before']} "
           f"before; most often: {common}; all reasons in {out_dir}/stats.json). Once {fixed} works, run the same "
           f"command with --retry-failed, or pass --allow-failed to accept the folder as it is.")
    raise typer.Exit(4)


def ray_rows(stats: dict, unit: str) -> list[tuple[str, object]]:
    """The summary rows of a job run on Ray: its workers (alive at the end) and each one's rate."""
    ray = stats.get("ray")
    return [("Ray workers (alive at the end)", f"{ray['workers']} ({ray['workers_alive']})" if ray else None),
            (f"{unit}/s per worker", " / ".join(str(w[f"{unit}_per_s"]) for w in ray["per_worker"]) if ray else None)]


def retry_failed_option(what: str):
    return typer.Option(False, help=f"Run again the {what} whose judge or model call failed (the new record "
                        "replaces the failed one).")


def allow_failed_option(what: str):
    return typer.Option(False, help=f"Exit 0 even when the folder holds failed {what} (otherwise exit 4).")
# help is rich markup: "[ray]" unescaped would be read as a style and left out
RAY = typer.Option(False, "--ray", help="Run the work on a Ray cluster: one worker per loaded model (for a judge, "
                   "its config's `resources` each), this process the one writer. Needs pip install 'rlaif\\[ray]'.")
RAY_ADDRESS = typer.Option(None, "--ray-address", help="With --ray: the cluster to join (default: RAY_ADDRESS, "
                           "else a cluster started on this machine).")
WORKERS = typer.Option(None, "--workers", help="With --ray: how many workers (default: as many as the cluster's "
                       "free resources hold).")


def ray_options(ray: bool, address: Optional[str], workers: Optional[int]):
    """The --ray options as the jobs take them (None without --ray); --ray-address or --workers alone is refused."""
    if not ray:
        if address is not None or workers is not None:
            fail("error: --ray-address and --workers go with --ray")
        return None
    from ..cluster.connect import RayOptions

    return guard(lambda: RayOptions(address, workers))


def require_options(command: str, options: list[tuple[str, object]]) -> None:
    """Exit 2 naming the (flag, value) options that were not given."""
    missing = [flag for flag, value in options if value is None]
    if missing:
        fail(f"error: missing {', '.join(missing)} (see {command} --help)")


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
        return i, n
    except ValueError:
        raise typer.BadParameter("use I/N, e.g. 0/4") from None


@app.callback()
def label_cmd(ctx: typer.Context,
              pairs: Optional[Path] = typer.Option(None, help="Pairs: JSONL(.gz), JSON, Parquet or a saved "
                                                   "datasets directory."),
              constitution: Optional[Path] = typer.Option(None, help="Constitution YAML."),
              judge: Optional[Path] = typer.Option(None, help="Judge YAML (judges/default.yaml: the embedded "
                                                   "SmolLM2)."),
              out_dir: Optional[Path] = typer.Option(None, "--out", help="Output directory (resumes if it "
                                                     "exists)."),
              limit: Optional[int] = typer.Option(None, help="Label only the first N pairs of the input."),
              seed: int = typer.Option(0, help="Seed for principle draws and the order of human-labelled pairs."),
              batch_size: Optional[int] = typer.Option(None, help="Pairs per judge call (default: the judge's)."),
              shard: Optional[str] = typer.Option(None, help="I/N: label a disjoint 1/N share of the pairs."),
              fmt: Optional[str] = FORMAT,
              skip_invalid: bool = typer.Option(False, help="Record invalid rows as failed and go on."),
              max_chars: int = typer.Option(100_000, help="Reject pairs longer than this many characters."),
              retry_failed: bool = retry_failed_option("pairs"), allow_failed: bool = allow_failed_option("pairs"),
              relabel_changed: bool = typer.Option(False, help="Label again a pair whose id was labelled with "
                                                   "other content; the old label moves to superseded.jsonl."),
              max_requests: Optional[int] = MAX_REQUESTS, max_cost: Optional[float] = MAX_COST,
              quiet: bool = QUIET, ray: bool = RAY, ray_address: Optional[str] = RAY_ADDRESS,
              workers: Optional[int] = WORKERS) -> None:
    """Label pairs: rlaif label --pairs FILE --constitution FILE --judge FILE --out DIR."""
    if ctx.invoked_subcommand is not None:
        return
    require_options("rlaif label", [("--pairs", pairs), ("--constitution", constitution), ("--judge", judge),
                                    ("--out", out_dir)])
    on_ray = ray_options(ray, ray_address, workers)

    def run():
        from ..labeling.job import label
        return label(pairs, constitution, judge, out_dir, limit=limit, seed=seed, batch_size=batch_size,
                     shard=_parse_shard(shard) if shard else (0, 1), format=fmt, skip_invalid=skip_invalid,
                     max_chars=max_chars, progress=not quiet, retry_failed=retry_failed,
                     relabel_changed=relabel_changed, max_requests=max_requests, max_cost=max_cost,
                     ray=on_ray)
    result = guard(run)
    from ..labeling.stats import judge_advice

    stats = result.stats
    _summary(stats, f"labels in {out_dir}")
    advice = judge_advice(stats)
    if advice:
        print(advice)
    exit_if_capped(result, stats, "everything labelled")
    exit_if_failed(stats["failed_judge"], allow_failed, stats, out_dir, "pairs have no label", "the judge failed",
                   "the judge")


def _summary(stats: dict, title: str) -> None:
    print_table(title, [
        ("pairs", stats["pairs"]), ("ok", stats["ok"]), ("failed", stats["failed"]),
        ("  in the judge / bad input", f"{stats['failed_judge']} / {stats['failed_input']}" if stats["failed"]
         else None),
        ("  this run / before", f"{stats['failed_this_run']} / {stats['failed_before']}"
         if stats["failed"] and "failed_this_run" in stats else None),
        ("retried / relabelled this run", f"{stats['retried_this_run']} / {stats['relabelled_this_run']}"
         if stats.get("retried_this_run") or stats.get("relabelled_this_run") else None),
        ("labels a / b / tie", " / ".join(str(stats["labels"][k]) for k in ("a", "b", "tie"))),
        ("position consistency", stats["position_consistency"]),
        ("agreement with human (ties = disagree)", stats.get("agreement_with_human")),
        ("agreement, single order", stats.get("agreement_single_order")),
        ("labelled this run", stats.get("labelled_now")), ("resumed (already done)", stats.get("resumed_skipped")),
        ("pairs/s", stats.get("pairs_per_s")), ("tokens/s", stats.get("tokens_per_s")), *ray_rows(stats, "pairs"),
        ("wall time s", stats.get("wall_time_s")), ("estimated cost", stats.get("estimated_cost")),
        ("spent by this job: requests", stats.get("spent_requests") or None)])


@app.command("merge")
def label_merge(dirs: List[Path] = typer.Argument(..., help="Shard output directories."),
                out_dir: Path = typer.Option(..., "--out", help="Merged output directory.")) -> None:
    """Combine shard directories into one, checking they are disjoint and complete."""
    def run():
        from ..jobs.shards import merge_shards
        from ..labeling.job import LabelJob
        return merge_shards(dirs, out_dir, LabelJob())
    stats = guard(run)
    _summary(stats, f"merged labels in {out_dir}")
