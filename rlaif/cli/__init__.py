"""The `rlaif` command line: one module per command group, each parsing options, calling one library function
and printing its result. Heavy packages are imported inside the commands, so `rlaif --help` never imports torch.

`rlaif.cli:main` is the console script; `python -m rlaif.cli` runs the same (the accelerate command uses it).
"""

from __future__ import annotations

import os
import sys

import typer
from typer.core import TyperGroup

from . import (
    annotate,
    calibrate,
    constitution,
    eval,
    export,
    generate,
    human,
    label,
    model,
    revise,
    reward,
    score,
    serve,
    train,
)
from .common import DEBUG_ENV, fail, guard


class _Guarded(TyperGroup):
    """Every command runs through the one error path (cli/common.py), also where a command has no guard of its own:
    click would otherwise print a traceback, or a bare "Aborted!" for an EOFError from a truncated file."""

    def invoke(self, ctx):
        if _empty_out(ctx.args):
            fail("error: --out is empty: name the folder or file to write (--out . for the working directory)")
        return guard(lambda: super(_Guarded, self).invoke(ctx))


def _empty_out(args: list[str]) -> bool:
    """Whether a command's arguments give `--out ""`. Every command's --out is a path, and typer reads an empty
    path as ".": the job would write into the working directory without being asked to, so it is refused here,
    once for every command, before the value is lost."""
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--out=" or (arg == "--out" and args[i + 1 : i + 2] == [""]):
            return True
    return False


app = typer.Typer(
    cls=_Guarded,
    help="Reinforcement learning from AI feedback: constitutions, debiased judges, labels.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help=f"Show the traceback of an error (as {DEBUG_ENV}=1)."),
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


app.add_typer(constitution.app, name="constitution")
app.add_typer(label.app, name="label")
app.add_typer(score.app, name="score")
app.command("export")(export.export_cmd)
app.add_typer(annotate.app, name="annotate")
app.add_typer(human.app, name="human")
app.add_typer(calibrate.app, name="calibrate")
app.add_typer(train.app, name="train")
app.command("loop", epilog=train.EXIT_CODES)(train.loop_cmd)
app.command("generate")(generate.generate_cmd)
app.command("revise")(revise.revise_cmd)
app.add_typer(eval.app, name="eval")
app.add_typer(serve.app, name="serve")
app.add_typer(reward.app, name="reward")
app.add_typer(model.app, name="model")


def main() -> None:
    """Run the command line. A usage error (an unknown option or command, a missing value) is one line on stderr
    that names the command and its --help, with exit code 2, as for every other bad input."""
    try:  # typer vendors its own click (typer._click) since 0.2x; older typer uses click itself
        from typer._click import exceptions as errors
    except ImportError:
        from click import exceptions as errors

    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name="rlaif", standalone_mode=False)
    except errors.NoArgsIsHelpError as e:  # `rlaif` or `rlaif train` alone: its help, as click prints it
        print(e.ctx.get_help())
        code = 2
    except errors.UsageError as e:
        path = e.ctx.command_path if e.ctx is not None else "rlaif"
        print(f"error: {path}: {e.format_message()} (see '{path} --help')", file=sys.stderr)
        code = 2
    except (typer.Abort, KeyboardInterrupt):
        print("aborted", file=sys.stderr)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
