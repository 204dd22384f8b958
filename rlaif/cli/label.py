"""`rlaif label` (a resumable labelling job: pairs → judge in both orders → labels.jsonl) and `rlaif label merge`
(combine the folders of a sharded job)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .common import eprint, fail, guard, print_table

app = typer.Typer(help="Label pairs with a judge under a constitution (and merge shards).",
                  invoke_without_command=True)


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
              fmt: Optional[str] = typer.Option(None, "--format", help="jsonl, json, parquet or hf_dataset "
                                                "(default: detected)."),
              skip_invalid: bool = typer.Option(False, help="Record invalid rows as failed and go on."),
              max_chars: int = typer.Option(100_000, help="Reject pairs longer than this many characters."),
              quiet: bool = typer.Option(False, help="No progress bar.")) -> None:
    """Label pairs: rlaif label --pairs FILE --constitution FILE --judge FILE --out DIR."""
    if ctx.invoked_subcommand is not None:
        return
    missing = [n for n, v in (("--pairs", pairs), ("--constitution", constitution), ("--judge", judge),
                              ("--out", out_dir)) if v is None]
    if missing:
        fail(f"error: missing {', '.join(missing)} (see rlaif label --help)")

    def run():
        from ..labeling.job import label
        return label(pairs, constitution, judge, out_dir, limit=limit, seed=seed, batch_size=batch_size,
                     shard=_parse_shard(shard) if shard else (0, 1), format=fmt, skip_invalid=skip_invalid,
                     max_chars=max_chars, progress=not quiet)
    result = guard(run)
    _summary(result.stats, f"labels in {out_dir}")
    if result.stopped:
        eprint(f"stopped early ({result.stopped}); everything labelled so far is kept. Run the same command "
               f"again (after raising the cap) to resume.")
        raise typer.Exit(3)


def _summary(stats: dict, title: str) -> None:
    print_table(title, [
        ("pairs", stats["pairs"]), ("ok", stats["ok"]), ("failed", stats["failed"]),
        ("labels a / b / tie", " / ".join(str(stats["labels"][k]) for k in ("a", "b", "tie"))),
        ("position consistency", stats["position_consistency"]),
        ("agreement with human (ties = disagree)", stats.get("agreement_with_human")),
        ("agreement, single order", stats.get("agreement_single_order")),
        ("labelled this run", stats.get("labelled_now")), ("resumed (already done)", stats.get("resumed_skipped")),
        ("pairs/s", stats.get("pairs_per_s")), ("tokens/s", stats.get("tokens_per_s")),
        ("wall time s", stats.get("wall_time_s")), ("estimated cost", stats.get("estimated_cost"))])


@app.command("merge")
def label_merge(dirs: List[Path] = typer.Argument(..., help="Shard output directories."),
                out_dir: Path = typer.Option(..., "--out", help="Merged output directory.")) -> None:
    """Combine shard directories into one, checking they are disjoint and complete."""
    def run():
        from ..labeling.shards import merge
        return merge(dirs, out_dir)
    stats = guard(run)
    _summary(stats, f"merged labels in {out_dir}")
