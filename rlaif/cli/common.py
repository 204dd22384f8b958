"""What every command module shares: the one error guard (the library's user-facing errors become clean lines and
an exit code, never a traceback), plain stderr lines (so no terminal width re-wraps a FILE:LINE message), and the
one table printer."""

from __future__ import annotations

import sys
from typing import Callable, Iterable, Sequence, TypeVar

import typer

T = TypeVar("T")


def eprint(line: str) -> None:
    print(line, file=sys.stderr)


def fail(lines, code: int = 2) -> None:
    for line in ([lines] if isinstance(lines, str) else lines):
        eprint(line)
    raise typer.Exit(code)


def guard(fn: Callable[[], T], code: int = 2) -> T:
    """Run `fn`; a bad config, bad input or a refused job exits with `code` and one line per problem."""
    from ..config.yamlfile import ConfigFileError

    try:
        return fn()
    except ConfigFileError as e:
        fail(e.errors, code)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        fail(f"error: {e}", code)


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
