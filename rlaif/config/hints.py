"""The hint on an unknown key in a config file: the fields the config accepts at that place, and the closest one.

pydantic reports an unknown key with its location only, not the model it was checked against, so the location is
walked down the config's type (models, unions, lists, dicts) beside the document itself; the document's own tags
(`type:`, `method:`, `backend:`, `source:`) pick the member of a union. Every config file gets a hint that fits it.
"""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Iterator, Literal, Union, get_args, get_origin

from pydantic import BaseModel, RootModel


def _alternatives(tp: Any) -> list:
    """The types an annotation allows, with Annotated, Optional, unions and root models opened."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _alternatives(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [alt for arg in get_args(tp) for alt in _alternatives(arg)]
    if isinstance(tp, type) and issubclass(tp, RootModel):
        return _alternatives(tp.model_fields["root"].annotation)
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _inside(tp: Any, part: Any, data: Any) -> list:
    """The types `data[part]` may have when `data` has type `tp`."""
    out = []
    for alt in _alternatives(tp):
        origin = get_origin(alt)
        if isinstance(data, dict):
            if _is_model(alt) and part in alt.model_fields:
                out.append(alt.model_fields[part].annotation)
            elif origin is dict:
                out.append(get_args(alt)[1])
        elif isinstance(data, list) and origin in (list, tuple):
            args = [a for a in get_args(alt) if a is not Ellipsis]
            out.extend(args[:1] if origin is list or len(args) == 1 else args[part : part + 1])
    return out


def _tags_match(model: type[BaseModel], data: dict) -> bool:
    """Whether the single-value Literal fields of `model` (its union tags) agree with the document."""
    for name, field in model.model_fields.items():
        values = get_args(field.annotation) if get_origin(field.annotation) is Literal else ()
        if len(values) == 1 and name in data and data[name] != values[0]:
            return False
    return True


def _matching(tp: Any, data: Any) -> list:
    """The alternatives of `tp` whose tags agree with `data` (all of them when none does)."""
    alts = _alternatives(tp)
    if not isinstance(data, dict):
        return alts
    return [a for a in alts if not _is_model(a) or _tags_match(a, data)] or alts


def _keys(loc: tuple, data: Any) -> Iterator[tuple[Any, Any]]:
    """The parts of `loc` that are keys (or indices) of the document, each with the data under it; the labels
    pydantic puts in a location for a union's member (its tag, e.g. `model.tiny.vocab`, or its type) are skipped."""
    for part in loc:
        if not isinstance(data, (dict, list)):
            return
        try:
            here = part in data if isinstance(data, dict) else isinstance(part, int) and 0 <= part < len(data)
        except TypeError:  # an unhashable part
            here = False
        if here:
            data = data[part]
            yield part, data


def written_loc(loc: tuple, data: Any) -> tuple:
    """`loc` as the user wrote it, union labels left out. The last part is kept: it may name a missing field."""
    return tuple(part for part, _ in _keys(loc[:-1], data)) + loc[-1:]


def fields_at(config_type: Any, loc: tuple, data: Any) -> list[str]:
    """The field names `config_type` accepts at `loc` (a location in `data`, as pydantic reports it). Empty when
    the place is not a config section."""
    candidates = [config_type]
    for part, inner in _keys(loc, data):
        # each level's tags pick its union members before going down (a dpo config's `feedback:` is not the loop's)
        candidates = [t for c in candidates for alt in _matching(c, data) for t in _inside(alt, part, data)]
        data = inner
    models = [m for c in candidates for m in _alternatives(c) if _is_model(m)]
    if isinstance(data, dict):
        models = [m for m in models if _tags_match(m, data)] or models
    return list(dict.fromkeys(name for m in models for name in m.model_fields))


def unknown_field_message(key: Any, names: list[str]) -> str:
    """'unknown field', with the closest accepted name and the list of accepted ones."""
    close = difflib.get_close_matches(str(key), names, n=1)
    listed = f"fields here: {', '.join(names)}" if names else ""
    if close:
        return f"unknown field; did you mean '{close[0]}'?" + (f" ({listed})" if listed else "")
    return f"unknown field (check the spelling{'; ' + listed if listed else ''})"
