"""Read a YAML file into a pydantic model (or a member of a discriminated union), reporting every error as
`FILE:LINE: field: message`.

PyYAML's node tree keeps the line of every key and value, so a pydantic error location can be mapped back
to the line a user has to edit. The same tree is checked before anything is built from it: a key written twice
(YAML would silently keep the last), nesting deeper than any config needs, and aliases that expand without bound
are refused at their line, as are bytes that are not UTF-8.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from yaml.composer import ComposerError
from yaml.reader import ReaderError

from .hints import fields_at, unknown_field_message, written_loc

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


MAX_DEPTH = 100  # configs nest a few levels; PyYAML's composer recurses per level and would end in RecursionError
MAX_NODES = 1_000_000  # after aliases expand: a few nested anchors can stand for billions of nodes
_MERGE = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with the nesting depth bounded, so a file nested thousands deep is refused at its line
    instead of exhausting the interpreter's recursion."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _check_expanded(source: str | Path, root: yaml.Node) -> None:
    """Refuse aliases that make the document cyclic, or deeper than MAX_DEPTH or larger than MAX_NODES once
    expanded (a reader of the data, pydantic or a hash, walks it expanded). Iterative: the depth is what is checked."""
    done: dict[int, tuple[int, int]] = {}  # id(node) -> (depth, size) expanded
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, finishing = stack.pop()
        if id(node) in done:
            continue
        kids = _children(node)
        if not finishing:
            if id(node) in open_nodes:
                raise ConfigFileError(
                    [
                        f"{source}:{node.start_mark.line + 1}: yaml: an alias refers to the node "
                        "that contains it (the data would be infinite)"
                    ]
                )
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((k, False) for k in kids if id(k) not in done)
            continue
        open_nodes.discard(id(node))
        depth = 1 + max((done[id(k)][0] for k in kids), default=0)
        size = 1 + sum(done[id(k)][1] for k in kids)
        if depth > MAX_DEPTH or size > MAX_NODES:
            what = f"nested deeper than {MAX_DEPTH} levels" if depth > MAX_DEPTH else f"over {MAX_NODES:,} values"
            raise ConfigFileError([f"{source}:{node.start_mark.line + 1}: yaml: aliases expand this to {what}"])
        done[id(node)] = (depth, size)


def _check_duplicates(source: str | Path, node: yaml.Node, path: tuple = (), seen: set | None = None) -> None:
    """A key written twice in one mapping is an error at its second line (PyYAML would keep the last silently).
    Run before construction, which merges `<<` keys into the mapping: keys brought in by a merge may repeat."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple, int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE:
                key, line = (key_node.tag, key_node.value), key_node.start_mark.line + 1
                if key in first:
                    raise ConfigFileError(
                        [
                            f"{source}:{line}: {format_loc(path + (key_node.value,))}: duplicate "
                            f"key (first on line {first[key]}); YAML would keep only this one and "
                            "drop the first"
                        ]
                    )
                first[key] = line
            _check_duplicates(source, value_node, path + (key_node.value,), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(source, item, path + (i,), seen)


def _line_map(node: yaml.Node, path: tuple = (), out: dict | None = None, seen: set | None = None) -> dict[tuple, int]:
    """Map each path (tuple of keys/indices) in the document to its 1-based line; a node reached again through an
    alias is mapped once."""
    out = {} if out is None else out
    seen = set() if seen is None else seen
    if id(node) in seen:
        return out
    seen.add(id(node))
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = path + (key_node.value,)
            out[child] = key_node.start_mark.line + 1
            _line_map(value_node, child, out, seen)
            out[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, path + (i,), out, seen)
    return out


def _line_for(loc: tuple, lines: dict[tuple, int]) -> int:
    loc = tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
    while loc and loc not in lines:
        loc = loc[:-1]
    return lines.get(loc, 1)


def format_loc(loc: tuple) -> str:
    parts = []
    for p in loc:
        if isinstance(p, int) and not isinstance(p, bool):
            parts.append(f"[{p}]")
        else:
            text = str(p)  # a key with a newline or a control character is quoted, so a message stays one line
            parts.append(("." if parts else "") + (text if text.isprintable() else json.dumps(text)))
    return "".join(parts) or "(top level)"


def _decode(path: Path, raw: bytes) -> str:
    """The file's text; bytes that are not UTF-8 are an error at their line (a UTF-8 byte-order mark is fine)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        utf16 = " (it looks like UTF-16)" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ConfigFileError(
            [
                f"{path}:{line}: not UTF-8 text: byte 0x{raw[e.start]:02x} at column {column}"
                f"{utf16}; save the file as UTF-8"
            ]
        ) from None


def read_yaml(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Parse a YAML file; return the data and the line map. Unreadable bytes, syntax errors, a key written twice
    and nesting too deep become ConfigFileError with the line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigFileError([f"{path}: cannot read: {e.strerror or e}"]) from e
    return _parse(_decode(path, raw), path)


def yaml_value(text: str, what: str) -> Any:
    """One YAML value given on the command line, read with the checks a config file gets; errors are ValueError
    naming `what`."""
    try:
        return _parse(text, "<value>")[0]
    except ConfigFileError as e:  # "<value>:LINE: message": the line of a one-line value says nothing
        raise ValueError(f"{what}: {e.errors[0].split(': ', 1)[1]}") from None


def _parse(text: str, source: str | Path) -> tuple[Any, dict[tuple, int]]:
    """The data and the line map of YAML `text`; errors as ConfigFileError lines `SOURCE:LINE: ...`."""
    loader = None
    try:
        loader = _Loader(text)  # the reader refuses control characters here, before parsing starts
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _check_expanded(source, node)
        _check_duplicates(source, node)
        data = loader.construct_document(node)  # refuses unhashable keys, so every key below is a scalar
        return data, _line_map(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise ConfigFileError([f"{source}:{mark.line + 1 if mark else 1}: yaml: {e.problem or e.context}"]) from None
    except ReaderError as e:
        line = text.count("\n", 0, e.position) + 1
        raise ConfigFileError(
            [f"{source}:{line}: yaml: character #x{e.character:04x} is not allowed in YAML ({e.reason})"]
        ) from None
    except yaml.YAMLError as e:
        raise ConfigFileError([f"{source}:1: yaml: {' '.join(str(e).split())}"]) from None
    finally:
        if loader is not None:
            loader.dispose()


def _config_type(model: Any) -> Any:
    """The type a model argument of `load_model` validates, for the hint on an unknown key."""
    return model._type if isinstance(model, TypeAdapter) else getattr(model, "config_type", model)


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
        raise ConfigFileError(
            validation_messages(path, e, lines, tagged=union, config_type=_config_type(model), data=data)
        ) from None


def validation_messages(
    path: str | Path,
    error: ValidationError,
    lines: dict[tuple, int],
    tagged: bool = False,
    config_type: Any = None,
    data: Any = None,
) -> list[str]:
    """One `FILE:LINE: field: message` line per error; `tagged`: each location starts with a union's tag. Given
    the `config_type` validated and the `data`, an unknown key is hinted with the fields accepted in its place."""
    out = []
    for err in error.errors():
        loc = tuple(err["loc"])[1 if tagged else 0 :]
        loc = written_loc(loc, data) if data is not None else loc
        msg = " ".join(str(err["msg"]).split("\n"))
        located = (err.get("ctx") or {}).get("error")
        if isinstance(located, FieldErrors):
            for sub, sub_msg in located.items:
                full = loc + tuple(sub)
                out.append(f"{path}:{_line_for(full, lines)}: {format_loc(_clean(full))}: {sub_msg}")
            continue
        if err["type"] == "extra_forbidden" and loc:
            names = fields_at(config_type, loc[:-1], data) if config_type is not None else []
            msg = unknown_field_message(loc[-1], names)
        out.append(f"{path}:{_line_for(loc, lines)}: {format_loc(_clean(loc))}: {msg}")
    return out


def field_errors(path: str | Path, items: list[tuple[tuple, str]]) -> ConfigFileError:
    """A ConfigFileError of `FILE:LINE: field: message` lines for problems found after validation, e.g. a path a
    field names (`items`: (location, message) pairs; a field set by an override points at its section's line)."""
    lines = read_yaml(path)[1]
    return ConfigFileError([f"{path}:{_line_for(loc, lines)}: {format_loc(loc)}: {msg}" for loc, msg in items])


def _clean(loc: tuple) -> tuple:
    # drop the labels pydantic inserts for the members of a plain union (e.g. "literal['one_per_pair','all']")
    # and for validators; a discriminated union's tag is cut off by validation_messages(tagged=True)
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
