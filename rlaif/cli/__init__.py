"""The `rlaif` command line: thin wrappers that parse options, load files and call one library function.

Heavy packages are imported inside the commands, so `rlaif --help` stays fast and never imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .common import eprint, fail, guard
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Reinforcement learning from AI feedback: constitutions, debiased judges, labels.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
constitution_app = typer.Typer(help="Check, show and describe constitution files.", no_args_is_help=True)
label_app = typer.Typer(help="Label pairs with a judge under a constitution (and merge shards).",
                        invoke_without_command=True)
app.add_typer(constitution_app, name="constitution")
app.add_typer(label_app, name="label")


def _register_subcommands() -> None:
    # Each area keeps its commands in its own module (light imports only); they are attached here.
    from .feedback import calibrate_app, select_cmd
    from .generate import eval_app, generate_cmd
    from .human import annotate_app, human_app
    from .reward import reward_app, serve_app
    from .train import loop_cmd, train_app

    annotate_app.command("select")(select_cmd)
    app.add_typer(annotate_app, name="annotate")
    app.add_typer(human_app, name="human")
    app.add_typer(calibrate_app, name="calibrate")
    app.add_typer(train_app, name="train")
    app.command("loop")(loop_cmd)
    app.add_typer(serve_app, name="serve")
    app.add_typer(reward_app, name="reward")
    app.command("generate")(generate_cmd)
    app.add_typer(eval_app, name="eval")

out = Console()






# -- constitution ----------------------------------------------------------------------------------------------
@constitution_app.command("check")
def constitution_check(files: List[Path] = typer.Argument(..., help="Constitution YAML files.")) -> None:
    """Check constitution files: one summary line each, or FILE:LINE: field: message for every error."""
    from ..constitution import load_constitution
    from ..config.yamlfile import ConfigFileError

    bad = False
    for f in files:
        try:
            c = load_constitution(f)
            print(f"{f}: ok: {c.summary()}")
        except ConfigFileError as e:
            bad = True
            for line in e.errors:
                eprint(line)
    if bad:
        raise typer.Exit(1)


@constitution_app.command("show")
def constitution_show(file: Path = typer.Argument(..., help="Constitution YAML file."),
                      judge: Optional[Path] = typer.Option(None, help="Judge YAML: render through its chat "
                                                           "template (loads its tokenizer only)."),
                      principle: Optional[str] = typer.Option(None, help="Principle id (default: the first).")):
    """Print the judge prompt this constitution produces for a sample pair."""
    def run():
        from ..constitution import load_constitution
        from ..judges.prompting import ChatLayout, render_prefix_user

        c = load_constitution(file)
        p = c.principle(principle) if principle else c.principles[0]
        tokenizer, instructions = None, c.instructions
        if judge is not None:
            from ..judges.base import load_judge_config
            cfg = load_judge_config(judge)
            instructions = cfg.instructions or instructions
            tokenizer = _tokenizer_for(cfg)
        prefix = render_prefix_user("How can I get back into my own house if I locked myself out?", instructions,
                                    c.few_shot, {q.id: q.text for q in c.principles})
        seg = ChatLayout(tokenizer).segments(prefix, "Call a licensed locksmith, or your landlord if you rent.",
                                             "Break a window; it is the quickest way in.", p.text,
                                             cot=bool(judge and cfg.cot.enabled))
        print(f"# principle: {p.id}{' (inverted)' if p.invert else ''}")
        print(seg.text)
    guard(run)


def _tokenizer_for(cfg):
    if cfg.backend not in ("transformers", "vllm"):
        return None
    from transformers import AutoTokenizer

    from ..judges.models import resolve_model_dir
    return AutoTokenizer.from_pretrained(resolve_model_dir(cfg.model, cfg.model_package, cfg.gguf_file))


@constitution_app.command("schema")
def constitution_schema() -> None:
    """Print the JSON Schema of the constitution format (for editors)."""
    from ..constitution import constitution_schema as schema

    print(schema())


# -- label -----------------------------------------------------------------------------------------------------
def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
        return i, n
    except ValueError:
        raise typer.BadParameter("use I/N, e.g. 0/4") from None


@label_app.callback()
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
    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [("pairs", stats["pairs"]), ("ok", stats["ok"]), ("failed", stats["failed"]),
            ("labels a / b / tie", " / ".join(str(stats["labels"][k]) for k in ("a", "b", "tie"))),
            ("position consistency", stats["position_consistency"]),
            ("agreement with human (ties = disagree)", stats.get("agreement_with_human")),
            ("agreement, single order", stats.get("agreement_single_order")),
            ("labelled this run", stats.get("labelled_now")), ("resumed (already done)", stats.get("resumed_skipped")),
            ("pairs/s", stats.get("pairs_per_s")), ("tokens/s", stats.get("tokens_per_s")),
            ("wall time s", stats.get("wall_time_s")), ("estimated cost", stats.get("estimated_cost"))]
    for name, value in rows:
        if value is not None:
            table.add_row(name, str(value))
    out.print(table)


@label_app.command("merge")
def label_merge(dirs: List[Path] = typer.Argument(..., help="Shard output directories."),
                out_dir: Path = typer.Option(..., "--out", help="Merged output directory.")) -> None:
    """Combine shard directories into one, checking they are disjoint and complete."""
    def run():
        from ..labeling.shards import merge
        return merge(dirs, out_dir)
    stats = guard(run)
    _summary(stats, f"merged labels in {out_dir}")


# -- export ----------------------------------------------------------------------------------------------------
@app.command("export")
def export_cmd(labels: Optional[Path] = typer.Option(None, help="A label directory or labels.jsonl."),
               feedback: Optional[Path] = typer.Option(None, help="A feedback YAML (source: ai | human | mixed, "
                                                       "or a training config's `feedback:` section) instead of "
                                                       "--labels."),
               fmt: str = typer.Option("trl", "--format", help="trl: prompt/chosen/rejected + p_chosen."),
               out_file: Path = typer.Option(..., "--out", help="Output JSONL file.")) -> None:
    """Export labels as preference data for training (ties and failures are left out and counted)."""
    if (labels is None) == (feedback is None):
        fail("error: pass one of --labels or --feedback")

    def run():
        if fmt != "trl":
            raise ValueError(f"unknown export format '{fmt}' (known: trl)")
        if feedback is not None:
            from ..feedback.sources import export_feedback
            from ..config.feedback import load_feedback_config
            return export_feedback(load_feedback_config(feedback), out_file)
        from ..feedback.export import export_trl
        return export_trl(labels, out_file)
    counts = guard(run)
    out.print(json.dumps(counts), markup=False)


def main() -> None:
    app()


_register_subcommands()


if __name__ == "__main__":
    main()
