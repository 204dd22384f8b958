"""Pairs from any input file `rlaif label` accepts (see formats.py), each row in any of the supported shapes —
prompt/response_a/response_b, TRL preference rows, Anthropic HH transcripts, chat messages — streamed as `Pair`s.

Every problem is a `DataError` naming the file and the 1-based line (or row), so a bad row in a million-line
file can be found and fixed; with `skip_invalid` such rows come back as `Pair`s marked `invalid` instead.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any, Iterator, Optional

from ..records import Message, Pair, Prompt, sha256_json
from .formats import DataError, PathLike, RowError, read_rows, type_name

HUMAN_LABELS = ("a", "b", "tie")
# Ids rlaif makes for rows it cannot read ("rlaif:line-3"). Real ids may not take this form, so the two can never
# collide in the label store (which holds one record per id).
SYNTHETIC_ID_PREFIX = "rlaif:"
_SYNTHETIC_LINE = re.compile(rf"{re.escape(SYNTHETIC_ID_PREFIX)}line-([1-9][0-9]*)")

# HH transcripts: a turn starts at "\n\nHuman:" / "\n\nAssistant:" (or at the very start of the text).
# A bare "Human:" inside a turn is text, not a turn: the real data has such slips.
_HH_ASSISTANT = "\n\nAssistant:"
_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


# ---------------------------------------------------------------------------------------------- pairs


def read_pairs(
    path: PathLike, format: Optional[str] = None, seed: int = 0, skip_invalid: bool = False, max_chars: int = 100_000
) -> Iterator[Pair]:
    """Stream the pairs in `path`, one per row, in file order.

    The format is checked now (a missing file fails at the call); rows are read as they are consumed. Rows that
    name the human's choice (chosen/rejected) are stored in a random order seeded by `seed` and the pair id.
    """
    return (pair for _, pair in pairs_with_rows(path, format, seed, skip_invalid, max_chars))


def pairs_with_rows(
    path: PathLike, format: Optional[str] = None, seed: int = 0, skip_invalid: bool = False, max_chars: int = 100_000
) -> Iterator[tuple[Any, Pair]]:
    """`read_pairs`, each pair with the row it was read from, for a reader of more of a row than its pair (the
    score job: the sample indices of `rlaif generate`'s rows)."""
    return _pairs(Path(path), read_rows(path, format), seed, skip_invalid, max_chars)


def _pairs(
    path: Path, rows: Iterator[tuple[int, Any]], seed: int, skip_invalid: bool, max_chars: int
) -> Iterator[tuple[Any, Pair]]:
    first_seen: dict[str, int] = {}  # id -> line: duplicate ids would collide in the label store
    for line, row in rows:
        try:
            if isinstance(row, RowError):
                raise row
            pair = parse_row(row, seed=seed, max_chars=max_chars)
            if pair.id in first_seen:
                raise RowError(f"duplicate id '{pair.id}' (first on line {first_seen[pair.id]})")
        except RowError as e:
            if not skip_invalid:
                raise DataError(path, line, str(e)) from None
            invalid = _invalid_pair(row, line, str(e))
            if invalid.id in first_seen:  # an unusable row repeating an id: its failed record must not be a second
                invalid.id = f"{SYNTHETIC_ID_PREFIX}line-{line}"
            first_seen.setdefault(invalid.id, line)
            yield row, invalid
            continue
        first_seen[pair.id] = line
        pair.source_line = line
        yield row, pair


def synthetic_line(pair_id: str) -> Optional[int]:
    """The input line an id rlaif made for an unreadable row stands for ("rlaif:line-3" -> 3); None for any other."""
    m = _SYNTHETIC_LINE.fullmatch(pair_id)
    return int(m.group(1)) if m else None


def _invalid_pair(row: Any, line: int, reason: str) -> Pair:
    """A stand-in for a row that could not be read, holding whatever could be, so it can be recorded as failed."""
    got = row if isinstance(row, dict) else {}

    def text(key: str) -> str:
        return got[key] if isinstance(got.get(key), str) else ""

    prompt: Prompt = text("prompt")
    if isinstance(got.get("prompt"), list):
        try:
            prompt = _messages(got["prompt"], "prompt")
        except RowError:
            pass
    row_id = _optional_id(got)
    # a duplicate keeps its own line as id: reusing the id would give two records the same id
    if row_id is None or reason.startswith("duplicate id") or row_id.startswith(SYNTHETIC_ID_PREFIX):
        row_id = f"{SYNTHETIC_ID_PREFIX}line-{line}"
    principle = got.get("principle") if isinstance(got.get("principle"), str) else None
    a, b = text("chosen"), text("rejected")
    if "prompt" not in got and (a or b):
        # without a prompt, chosen/rejected are whole HH transcripts: keep only what each one's parse gives
        prompt, a = _salvage_hh(a, prompt)
        prompt, b = _salvage_hh(b, prompt)
    return Pair(
        prompt=prompt,
        response_a=text("response_a") or a,
        response_b=text("response_b") or b,
        id=row_id,
        principle=principle,
        source_line=line,
        invalid=reason,
    )


def _salvage_hh(transcript: str, prompt: Prompt) -> tuple[Prompt, str]:
    try:
        turns, response = _hh_split(transcript, "transcript")
    except RowError:
        return prompt, ""
    return prompt or turns, response


def _optional_id(row: dict) -> Optional[str]:
    value = row.get("id")
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):  # integer ids are common in parquet data
        return str(value)
    return None


# ---------------------------------------------------------------------------------------------- row shapes


def parse_row(row: Any, seed: int = 0, max_chars: int = 100_000) -> Pair:
    """One row (a dict) as a Pair; raises RowError with a message saying what is wrong."""
    if not isinstance(row, dict):
        raise RowError(f"row must be a JSON object, not {type_name(row)}")
    # None counts as absent: parquet and datasets fill a column a row lacks with nulls
    keys = {k for k, v in row.items() if v is not None}
    has_ab = bool(keys & {"response_a", "response_b"})
    has_cr = bool(keys & {"chosen", "rejected"})
    if has_ab and has_cr:
        raise RowError("row has both response_a/response_b and chosen/rejected; use one or the other")
    if has_ab:
        pair = _ab_row(row, keys)
    elif has_cr:
        pair = _preference_row(row, keys, seed)
    else:
        want = ["response_a", "response_b"] if "prompt" in keys else ["prompt", "response_a", "response_b"]
        raise RowError(
            f"missing fields: {', '.join(want)} (or chosen and rejected); "
            f"the row has: {', '.join(sorted(keys)) or 'nothing'}"
        )
    _check_length(pair, max_chars)
    return pair


def _ab_row(row: dict, keys: set[str]) -> Pair:
    """Shapes 1 and 4: prompt + response_a + response_b, as text or chat messages, with an optional label."""
    _require(keys, "prompt", "response_a", "response_b")
    prompt = parse_prompt(row["prompt"])
    a = _single_response(row["response_a"], "response_a")
    b = _single_response(row["response_b"], "response_b")
    label = row.get("human_label")
    if label is not None and label not in HUMAN_LABELS:
        raise RowError(f"human_label must be one of {', '.join(HUMAN_LABELS)}, not {label!r}")
    conversational = isinstance(prompt, list)
    return Pair(
        prompt=prompt,
        response_a=a,
        response_b=b,
        id=row_id(row, prompt, a, b),
        human_label=label,
        conversational=conversational,
        principle=_principle(row),
    )


def _preference_row(row: dict, keys: set[str], seed: int) -> Pair:
    """Shapes 2 and 3: the human's choice as chosen/rejected; stored in a seeded random order."""
    _require(keys, "chosen", "rejected")
    chosen, rejected = row["chosen"], row["rejected"]
    if isinstance(chosen, str) and isinstance(rejected, str):
        if "prompt" in keys:
            prompt, c, r = parse_prompt(row["prompt"]), chosen, rejected
            conversational = isinstance(prompt, list)
        else:
            prompt, c, r = _hh_pair(chosen, rejected)
            conversational = False  # HH came as text; its prompt is turned into messages only to be exact
    elif isinstance(chosen, list) and isinstance(rejected, list):
        prompt, c, r = _message_pair(row.get("prompt"), chosen, rejected)
        conversational = True
    else:
        raise RowError(
            f"chosen and rejected must both be strings or both message lists, not "
            f"{type_name(chosen)} and {type_name(rejected)}"
        )
    _check_response(c, "chosen")
    _check_response(r, "rejected")
    # the id comes from the content in the row's own order, so a seed never changes it
    pair_id = row_id(row, prompt, c, r)
    swap = random.Random(f"{seed}:{pair_id}").random() < 0.5
    a, b, label = (r, c, "b") if swap else (c, r, "a")
    return Pair(
        prompt=prompt,
        response_a=a,
        response_b=b,
        id=pair_id,
        human_label=label,
        conversational=conversational,
        principle=_principle(row),
    )


def _hh_pair(chosen: str, rejected: str) -> tuple[list[Message], str, str]:
    """An Anthropic HH row: two transcripts that differ only in the last assistant turn."""
    prompt_c, c = _hh_split(chosen, "chosen")
    prompt_r, r = _hh_split(rejected, "rejected")
    if prompt_c != prompt_r:
        raise RowError("chosen and rejected do not share a conversation")
    return prompt_c, c, r


def _hh_split(transcript: str, field: str) -> tuple[list[Message], str]:
    """A transcript as (the conversation before the last assistant turn, as messages; that turn's text)."""
    cut = transcript.rfind(_HH_ASSISTANT)
    if cut < 0:
        raise RowError(f"{field} is not an HH transcript (no '\\n\\nAssistant:' turn) and the row has no prompt")
    parts = _HH_TURN.split(transcript[:cut])
    if parts[0].strip():
        raise RowError(f"{field} has text before its first 'Human:' or 'Assistant:' turn")
    # re.split with one group alternates [before, role, text, role, text, ...]
    turns = [{"role": _HH_ROLES[role], "content": text.strip()} for role, text in zip(parts[1::2], parts[2::2])]
    return turns, transcript[cut + len(_HH_ASSISTANT) :].strip()


def _message_pair(prompt_value: Any, chosen: list, rejected: list) -> tuple[list[Message], str, str]:
    """TRL conversational rows: explicit prompt + one-message completions, or whole conversations.

    Messages before the final assistant turn are part of the conversation (implicit-prompt rows put it all
    there; some datasets repeat the prompt there), and must be the same in chosen and rejected.
    """
    before_c, c = _split_completion(_messages(chosen, "chosen"), "chosen")
    before_r, r = _split_completion(_messages(rejected, "rejected"), "rejected")
    if before_c != before_r:
        raise RowError("chosen and rejected do not share a conversation")
    if prompt_value is None:
        return before_c, c, r
    prompt = parse_prompt(prompt_value)
    prompt_msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    # a completion that repeats the prompt must not repeat it in the conversation as well
    if before_c[: len(prompt_msgs)] == prompt_msgs:
        return before_c, c, r
    return prompt_msgs + before_c, c, r


def _split_completion(msgs: list[Message], field: str) -> tuple[list[Message], str]:
    if not msgs:
        raise RowError(f"{field} has no messages")
    if msgs[-1]["role"] != "assistant":
        raise RowError(f"{field} must end with an assistant message, not a '{msgs[-1]['role']}' one")
    return msgs[:-1], msgs[-1]["content"]


def _single_response(value: Any, field: str) -> str:
    """A response given as text or as a list holding one assistant message."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        before, text = _split_completion(_messages(value, field), field)
        if before:
            raise RowError(f"{field} must be a string or a single assistant message, not {len(value)} messages")
    else:
        raise RowError(f"{field} must be a string or a list of chat messages, not {type_name(value)}")
    _check_response(text, field)
    return text


# ---------------------------------------------------------------------------------------------- field checks


def _require(keys: set[str], *fields: str) -> None:
    missing = [f for f in fields if f not in keys]
    if missing:
        raise RowError(f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")


def parse_prompt(value: Any, field: str = "prompt") -> Prompt:
    """A prompt: text, or chat messages; `field` names the row's field in errors."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return _messages(value, field)
    raise RowError(f"{field} must be a string or a list of chat messages, not {type_name(value)}")


def _messages(value: list, field: str) -> list[Message]:
    """Chat messages, kept to role and content: parquet structs carry every other key as null."""
    out = []
    for i, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise RowError(f"{field}[{i}] must be a message object with string 'role' and 'content'")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _check_response(text: str, field: str) -> None:
    if not text.strip():
        raise RowError(f"{field} is empty")


def _principle(row: dict) -> Optional[str]:
    value = row.get("principle")
    if value is not None and not isinstance(value, str):
        raise RowError(f"principle must be a string (a principle id), not {type_name(value)}")
    return value or None


def row_id(row: dict, *content: Any) -> str:
    """The row's own `id` (a string or an integer), else a hash of its content (e.g. prompt and both responses)."""
    value = row.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int, type(None))):
        raise RowError(f"id must be a string or an integer, not {type_name(value)}")
    if isinstance(value, str) and value.startswith(SYNTHETIC_ID_PREFIX):
        raise RowError(
            f"id '{value}': ids starting with '{SYNTHETIC_ID_PREFIX}' are kept for rows rlaif cannot read; rename it"
        )
    return _optional_id(row) or sha256_json(list(content))[:16]


def _check_length(pair: Pair, max_chars: int) -> None:
    prompt = pair.prompt
    prompt_chars = len(prompt) if isinstance(prompt, str) else sum(len(m["content"]) for m in prompt)
    total = prompt_chars + len(pair.response_a) + len(pair.response_b)
    if total > max_chars:
        raise RowError(f"pair is {total} characters long (prompt and both responses), over max_chars={max_chars}")
