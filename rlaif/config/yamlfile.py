"""Read a YAML file into a pydantic model (or a member of a discriminated union), reporting every error as
`FILE:LINE: field: message`.

PyYAML's node tree keeps the line of every key and value, so a pydantic error location can be mapped back
to the line a user has to edit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(ValueError):
    """A config file that cannot be used; `errors` holds one `FILE:LINE: field: message` string per problem."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("\n".join(errors))


class FieldErrors(ValueError):
    """Raised by a model validator to report cross-field problems at their own fields, so each gets its own
    `FILE:LINE: field: message` line; `items` holds (loc relative to the model, message) pairs."""

    def __init__(self, items: list[tuple[tuple, str]]):
        self.items = items
        super().__init__("; ".join(f"{format_loc(loc)}: {msg}" for loc, msg in items))


def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """Map each path (tuple of keys/indices) in the document to its 1-based line."""
    out = {} if out is None else out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (key_node.value,)
            out[child] = key_node.start_mark.line + 1
            _line_map(value_node, child, out)
            out[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, path + (i,), out)
    return out


def _line_for(loc: tuple, lines: dict[tuple, int]) -> int:
    loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def format_loc(loc: tuple) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def read_yaml(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML text; return the data and the line map. Syntax errors become ConfigFileError with the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigFileError([f"{path}: cannot read: {e.strerror or e}"]) from e
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        line = (e.problem_mark or e.context_mark).line + 1 if (e.problem_mark or e.context_mark) else 1
        raise ConfigFileError([f"{path}:{line}: yaml: {e.problem or e}"]) from e
    return data, (_line_map(node) if node is not None else {})


def load_model(path: str | Path, model: type[M] | TypeAdapter[M], overrides: dict[str, Any] | None = None) -> M:
    """Validate the YAML file at `path` against `model`: a pydantic model, or a TypeAdapter over a discriminated
    union of models (whose tag pydantic puts first in every error location; it is left out of the messages)."""
    data, lines = read_yaml(path)
    if data is None:
        raise ConfigFileError([f"{path}:1: (top level): the file is empty"])
    if not isinstance(data, dict):
        raise ConfigFileError([f"{path}:1: (top level): expected a mapping of fields, got {type(data).__name__}"])
    if overrides:
        data = {**data, **overrides}
    union = isinstance(model, TypeAdapter)
    try:
        return model.validate_python(data) if union else model.model_validate(data)
    except ValidationError as e:
        raise ConfigFileError(validation_messages(path, e, lines, tagged=union)) from None


def validation_messages(path: str | Path, error: ValidationError, lines: dict[tuple, int],
                        tagged: bool = False) -> list[str]:
    """One `FILE:LINE: field: message` line per error; `tagged`: each location starts with a union's tag."""
    out = []
    for err in error.errors():
        loc = tuple(err["loc"])[1 if tagged else 0:]
        msg = err["msg"]
        located = (err.get("ctx") or {}).get("error")
        if isinstance(located, FieldErrors):
            for sub, sub_msg in located.items:
                full = loc + tuple(sub)
                out.append(f"{path}:{_line_for(full, lines)}: {format_loc(_clean(full))}: {sub_msg}")
            continue
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see `rlaif constitution schema`)"
        out.append(f"{path}:{_line_for(loc, lines)}: {format_loc(_clean(loc))}: {msg}")
    return out


def _clean(loc: tuple) -> tuple:
    # drop the labels pydantic inserts for the members of a plain union (e.g. "literal['one_per_pair','all']")
    # and for validators; a discriminated union's tag is cut off by validation_messages(tagged=True)
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
