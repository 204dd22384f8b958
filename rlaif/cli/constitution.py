"""`rlaif constitution check | show | schema`: validate constitution files, print the judge prompt one produces,
print the JSON Schema for editors."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ..config.yamlfile import ConfigFileError
from ..constitution import constitution_schema as schema
from ..constitution import load_constitution
from ..judges.prompting import sample_prompt
from .common import BAD_INPUT, eprint, guard

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

    def run():

        return sample_prompt(file, judge, principle)

    print(guard(run))


@app.command("schema")
def constitution_schema() -> None:
    """Print the JSON Schema of the constitution format (for editors)."""

    print(schema())
