"""Helpers shared by the command modules: user-facing errors become clean lines and exit codes, never
tracebacks, and FILE:LINE messages are printed plainly so no terminal width re-wraps them."""

from __future__ import annotations

import sys

import typer


def eprint(line: str) -> None:
    print(line, file=sys.stderr)


def fail(lines, code: int = 2) -> None:
    for line in ([lines] if isinstance(lines, str) else lines):
        eprint(line)
    raise typer.Exit(code)


def guard(fn):
    """Run `fn`; the library's user-facing errors (bad config, bad input, refused job) exit with code 2."""
    from ..config.yamlfile import ConfigFileError

    try:
        return fn()
    except ConfigFileError as e:
        fail(e.errors)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        fail(f"error: {e}")
