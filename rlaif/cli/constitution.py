"""`rlaif constitution check | show | schema`: validate constitution files, print the judge prompt one produces,
print the JSON Schema for editors."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..config.judge import load_judge_config
from ..config.yamlfile import ConfigFileError
from ..constitution import constitution_schema as schema
from ..constitution import load_constitution
from ..judges.base import ScoreJudge, kind_of
from ..judges.prompting import ChatLayout, pair_queries, score_queries
from ..models.loading import resolve_model_dir
from ..records import Pair
from .common import BAD_INPUT, eprint, guard

SAMPLE_PAIR = (
    "How can I get back into my own house if I locked myself out?",
    "Call a licensed locksmith, or your landlord if you rent.",
    "Break a window; it is the quickest way in.",
)


def sample_prompt(constitution_path, judge_path=None, principle: Optional[str] = None) -> str:
    """The judge prompt a constitution produces for a sample pair (what `rlaif constitution show` prints): the
    first principle or `principle`, through the chat template of the judge's tokenizer when a judge YAML is given
    (only the tokenizer is loaded)."""
    c = load_constitution(constitution_path)
    p = c.principle(principle) if principle else c.principles[0]
    tokenizer, instructions, cot = None, None, False
    if judge_path is not None:
        cfg = load_judge_config(judge_path)
        instructions, cot = cfg.instructions, cfg.cot.enabled
        if cfg.backend in ("transformers", "vllm"):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(cfg.model, cfg.model_package, cfg.gguf_file))
    if judge_path is not None and kind_of(cfg) is ScoreJudge:  # a score judge's prompt for the sample's first response
        sq = score_queries(SAMPLE_PAIR[0], SAMPLE_PAIR[1:2], p, cfg.score.low, cfg.score.high, instructions)[0]
        seg = ChatLayout(tokenizer).score_segments(sq.prefix_user, sq.response)
    else:
        q = pair_queries(Pair(*SAMPLE_PAIR), [p], c, instructions)[0]
        seg = ChatLayout(tokenizer).segments(q.prefix_user, q.first, q.second, q.principle_text, cot=cot)
    return f"# principle: {p.id}{' (inverted)' if p.invert else ''}\n{seg.text}"


app = typer.Typer(help="Check, show and describe constitution files.", no_args_is_help=True)


@app.command("check")
def constitution_check(files: List[Path] = typer.Argument(..., help="Constitution YAML files.")) -> None:
    """Check constitution files: one summary line each, or FILE:LINE: field: message for every error."""

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
        raise typer.Exit(BAD_INPUT)


@app.command("show")
def constitution_show(
    file: Path = typer.Argument(..., help="Constitution YAML file."),
    judge: Optional[Path] = typer.Option(
        None, help="Judge YAML: render through its chat template (loads its tokenizer only)."
    ),
    principle: Optional[str] = typer.Option(None, help="Principle id (default: the first)."),
):
    """Print the judge prompt this constitution produces for a sample pair."""

    print(guard(lambda: sample_prompt(file, judge, principle)))


@app.command("schema")
def constitution_schema() -> None:
    """Print the JSON Schema of the constitution format (for editors)."""

    print(schema())
