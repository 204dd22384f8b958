"""Readers for every input `rlaif label` accepts: JSON Lines (plain or gzip'd), a JSON list, parquet and a
`datasets` save_to_disk directory, each row in any of the supported shapes (prompt/response_a/response_b,
TRL preference rows, Anthropic HH transcripts, chat messages), streamed one row at a time as `Pair`s.

Every problem is a `DataError` naming the file and the 1-based line (or row), so a bad row in a million-line
file can be found and fixed; with `skip_invalid` such rows come back as `Pair`s marked `invalid` instead.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from ..records import Message, Pair, Prompt, sha256_json

FORMATS = ("jsonl", "json", "parquet", "hf_dataset")
HUMAN_LABELS = ("a", "b", "tie")
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
# files `datasets.Dataset.save_to_disk` / `DatasetDict.save_to_disk` always write
_HF_MARKERS = ("state.json", "dataset_info.json", "dataset_dict.json")
_PARQUET_BATCH = 1024

# HH transcripts: a turn starts at "\n\nHuman:" / "\n\nAssistant:" (or at the very start of the text).
# A bare "Human:" inside a turn is text, not a turn: the real data has such slips.
_HH_ASSISTANT = "\n\nAssistant:"
_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}

PathLike = Union[str, Path]


class DataError(ValueError):
    """A problem with an input file. `line` is the 1-based line (JSONL) or row (other formats); None when the
    problem is with the file as a whole."""

    def __init__(self, path: PathLike, line: Optional[int], message: str):
        self.path = str(path)
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"


class _RowError(Exception):
    """A problem with one row; the reader adds the path and line to make it a DataError."""


# ---------------------------------------------------------------------------------------------- formats


def detect_format(path: PathLike) -> str:
    """The format of `path`, one of FORMATS: by its name first, then by its first bytes.

    ".json"/".json.gz" files are looked into because many of them are really JSON Lines.
    """
    p = Path(path)
    if p.is_dir():
        if any((p / m).exists() for m in _HF_MARKERS):
            return "hf_dataset"
        raise DataError(p, None, "is a directory but not one written by datasets' save_to_disk")
    if not p.exists():
        raise DataError(p, None, "no such file")
    name = p.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    with open(p, "rb") as f:
        if f.read(4) == _PARQUET_MAGIC:
            return "parquet"
    first = _first_char(p)
    if first == "[":
        return "json"
    if first == "{" or first == "":
        return "jsonl"
    raise DataError(p, None, "cannot tell the format from the name or the content; pass format= one of "
                    + ", ".join(FORMATS))


def _first_char(path: Path) -> str:
    """The first non-whitespace character of a (possibly gzip'd) text file, '' if none or unreadable."""
    try:
        with _open_binary(path) as f:
            while True:
                chunk = f.read(4096)
                if not chunk:
                    return ""
                text = chunk.lstrip().lstrip(b"\xef\xbb\xbf").lstrip()  # a UTF-8 BOM is not content
                if text:
                    return chr(text[0])
    except (OSError, EOFError):
        return ""


def _open_binary(path: Path):
    """Open a file for reading bytes, decompressing when it is gzip'd (judged by content, not name)."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _resolve_format(path: PathLike, format: Optional[str]) -> str:
    if format is None:
        return detect_format(path)
    if format not in FORMATS:
        raise DataError(path, None, f"unknown format '{format}' (choose from {', '.join(FORMATS)})")
    if not Path(path).exists():
        raise DataError(path, None, "no such file")
    return format


# ---------------------------------------------------------------------------------------------- raw rows
# Each reader gives (line, row-or-_RowError) pairs: a row that could not even be parsed still has a line
# number, so skip_invalid can report it and carry on. Parquet and datasets readers open the file at once, so a
# file that cannot be read fails at the call; JSONL and JSON readers open it only when the first row is asked for.


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    line = 0
    with _open_binary(path) as f:
        try:
            for line, raw in enumerate(f, 1):
                if not raw.strip():
                    continue  # blank lines (a trailing newline, hand-edited files) are not rows
                yield line, _parse_json_line(raw, first=line == 1)
        except (EOFError, OSError) as e:  # a truncated or corrupt gzip stream
            raise DataError(path, line + 1, f"cannot read on past this point: {e}") from e


def _parse_json_line(raw: bytes, first: bool) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return _RowError(f"not valid UTF-8 ({e.reason} at byte {e.start})")
    if first:
        text = text.lstrip("\ufeff")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        return _RowError(f"malformed JSON: {e.msg} (column {e.colno})")


def _json_list_rows(path: Path) -> Iterator[tuple[int, Any]]:
    # A JSON list cannot be read a row at a time with the standard library; such files are small in practice
    # (large data comes as JSONL or parquet), so it is loaded whole.
    try:
        with _open_binary(path) as f:
            data = json.loads(f.read().decode("utf-8-sig"))
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, f"malformed JSON: {e.msg} (column {e.colno})") from e
    except (UnicodeDecodeError, OSError, EOFError) as e:
        raise DataError(path, None, f"cannot read: {e}") from e
    if not isinstance(data, list):
        raise DataError(path, 1, f"a JSON file must hold a list of rows, not {_type_name(data)}")
    yield from enumerate(data, 1)


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a file that is not parquet
        raise DataError(path, None, f"not a readable parquet file: {e}") from e
    return _parquet_batches(path, pf)


def _parquet_batches(path: Path, pf) -> Iterator[tuple[int, Any]]:
    n = 0
    batches = pf.iter_batches(batch_size=_PARQUET_BATCH)
    while True:
        try:
            batch = next(batches, None)
        except Exception as e:  # a corrupt page: nothing after it can be read
            raise DataError(path, n + 1, f"cannot read on past this point: {e}") from e
        if batch is None:
            return
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _load_hf_dataset(path: Path):
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise DataError(path, None, f"not a readable datasets directory: {e}") from e
    if isinstance(ds, datasets.DatasetDict):
        if len(ds) != 1:
            raise DataError(path, None, f"holds the splits {', '.join(ds)}; pass the directory of one of them "
                            f"(e.g. {Path(path) / next(iter(ds))})")
        ds = next(iter(ds.values()))
    return ds


def _hf_rows(path: Path) -> Iterator[tuple[int, Any]]:
    # load_from_disk memory-maps the arrow files, so iterating does not load the dataset into memory
    return enumerate(_load_hf_dataset(path), 1)


_READERS = {"jsonl": _jsonl_rows, "json": _json_list_rows, "parquet": _parquet_rows, "hf_dataset": _hf_rows}


def count_pairs(path: PathLike, format: Optional[str] = None) -> int:
    """The number of rows in `path` (valid or not), for a progress bar: no row is parsed."""
    p = Path(path)
    fmt = _resolve_format(p, format)
    if fmt == "jsonl":
        with _open_binary(p) as f:
            return sum(1 for raw in f if raw.strip())
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(p).metadata.num_rows
        except Exception as e:
            raise DataError(p, None, f"not a readable parquet file: {e}") from e
    if fmt == "hf_dataset":
        return _load_hf_dataset(p).num_rows
    return sum(1 for _ in _json_list_rows(p))


# ---------------------------------------------------------------------------------------------- pairs


def read_pairs(path: PathLike, format: Optional[str] = None, seed: int = 0, skip_invalid: bool = False,
               max_chars: int = 100_000) -> Iterator[Pair]:
    """Stream the pairs in `path`, one per row, in file order.

    The format is checked now (a missing file fails at the call); rows are read as they are consumed. Rows that
    name the human's choice (chosen/rejected) are stored in a random order seeded by `seed` and the pair id.
    """
    p = Path(path)
    rows = _READERS[_resolve_format(p, format)](p)
    return _pairs(p, rows, seed, skip_invalid, max_chars)


def _pairs(path: Path, rows: Iterator[tuple[int, Any]], seed: int, skip_invalid: bool,
           max_chars: int) -> Iterator[Pair]:
    first_seen: dict[str, int] = {}  # id -> line: duplicate ids would collide in the label store
    for line, row in rows:
        try:
            if isinstance(row, _RowError):
                raise row
            pair = _parse_row(row, seed=seed, max_chars=max_chars)
            if pair.id in first_seen:
                raise _RowError(f"duplicate id '{pair.id}' (first on line {first_seen[pair.id]})")
        except _RowError as e:
            if not skip_invalid:
                raise DataError(path, line, str(e)) from None
            yield _invalid_pair(row, line, str(e))
            continue
        first_seen[pair.id] = line
        pair.source_line = line
        yield pair


def _invalid_pair(row: Any, line: int, reason: str) -> Pair:
    """A stand-in for a row that could not be read, holding whatever could be, so it can be recorded as failed."""
    got = row if isinstance(row, dict) else {}

    def text(key: str) -> str:
        return got[key] if isinstance(got.get(key), str) else ""

    prompt: Prompt = text("prompt")
    if isinstance(got.get("prompt"), list):
        try:
            prompt = _messages(got["prompt"], "prompt")
        except _RowError:
            pass
    row_id = _optional_id(got)
    # a duplicate keeps its own line as id: reusing the id would give two records the same id
    if row_id is None or reason.startswith("duplicate id"):
        row_id = f"line-{line}"
    principle = got.get("principle") if isinstance(got.get("principle"), str) else None
    a, b = text("chosen"), text("rejected")
    if "prompt" not in got and (a or b):
        # without a prompt, chosen/rejected are whole HH transcripts: keep only what each one's parse gives
        prompt, a = _salvage_hh(a, prompt)
        prompt, b = _salvage_hh(b, prompt)
    return Pair(prompt=prompt, response_a=text("response_a") or a, response_b=text("response_b") or b, id=row_id,
                principle=principle, source_line=line, invalid=reason)


def _salvage_hh(transcript: str, prompt: Prompt) -> tuple[Prompt, str]:
    try:
        turns, response = _hh_split(transcript, "transcript")
    except _RowError:
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


def _parse_row(row: Any, seed: int = 0, max_chars: int = 100_000) -> Pair:
    """One row (a dict) as a Pair; raises _RowError with a message saying what is wrong."""
    if not isinstance(row, dict):
        raise _RowError(f"row must be a JSON object, not {_type_name(row)}")
    # None counts as absent: parquet and datasets fill a column a row lacks with nulls
    keys = {k for k, v in row.items() if v is not None}
    has_ab = bool(keys & {"response_a", "response_b"})
    has_cr = bool(keys & {"chosen", "rejected"})
    if has_ab and has_cr:
        raise _RowError("row has both response_a/response_b and chosen/rejected; use one or the other")
    if has_ab:
        pair = _ab_row(row, keys)
    elif has_cr:
        pair = _preference_row(row, keys, seed)
    else:
        want = ["response_a", "response_b"] if "prompt" in keys else ["prompt", "response_a", "response_b"]
        raise _RowError(f"missing fields: {', '.join(want)} (or chosen and rejected); "
                        f"the row has: {', '.join(sorted(keys)) or 'nothing'}")
    _check_length(pair, max_chars)
    return pair


def _ab_row(row: dict, keys: set[str]) -> Pair:
    """Shapes 1 and 4: prompt + response_a + response_b, as text or chat messages, with an optional label."""
    _require(keys, "prompt", "response_a", "response_b")
    prompt = _prompt(row["prompt"])
    a = _single_response(row["response_a"], "response_a")
    b = _single_response(row["response_b"], "response_b")
    label = row.get("human_label")
    if label is not None and label not in HUMAN_LABELS:
        raise _RowError(f"human_label must be one of {', '.join(HUMAN_LABELS)}, not {label!r}")
    conversational = isinstance(prompt, list)
    return Pair(prompt=prompt, response_a=a, response_b=b, id=_row_id(row, prompt, a, b), human_label=label,
                conversational=conversational, principle=_principle(row))


def _preference_row(row: dict, keys: set[str], seed: int) -> Pair:
    """Shapes 2 and 3: the human's choice as chosen/rejected; stored in a seeded random order."""
    _require(keys, "chosen", "rejected")
    chosen, rejected = row["chosen"], row["rejected"]
    if isinstance(chosen, str) and isinstance(rejected, str):
        if "prompt" in keys:
            prompt, c, r = _prompt(row["prompt"]), chosen, rejected
            conversational = isinstance(prompt, list)
        else:
            prompt, c, r = _hh_pair(chosen, rejected)
            conversational = False  # HH came as text; its prompt is turned into messages only to be exact
    elif isinstance(chosen, list) and isinstance(rejected, list):
        prompt, c, r = _message_pair(row.get("prompt"), chosen, rejected)
        conversational = True
    else:
        raise _RowError(f"chosen and rejected must both be strings or both message lists, not "
                        f"{_type_name(chosen)} and {_type_name(rejected)}")
    _check_response(c, "chosen")
    _check_response(r, "rejected")
    # the id comes from the content in the row's own order, so a seed never changes it
    pair_id = _row_id(row, prompt, c, r)
    swap = random.Random(f"{seed}:{pair_id}").random() < 0.5
    a, b, label = (r, c, "b") if swap else (c, r, "a")
    return Pair(prompt=prompt, response_a=a, response_b=b, id=pair_id, human_label=label,
                conversational=conversational, principle=_principle(row))


def _hh_pair(chosen: str, rejected: str) -> tuple[list[Message], str, str]:
    """An Anthropic HH row: two transcripts that differ only in the last assistant turn."""
    prompt_c, c = _hh_split(chosen, "chosen")
    prompt_r, r = _hh_split(rejected, "rejected")
    if prompt_c != prompt_r:
        raise _RowError("chosen and rejected do not share a conversation")
    return prompt_c, c, r


def _hh_split(transcript: str, field: str) -> tuple[list[Message], str]:
    """A transcript as (the conversation before the last assistant turn, as messages; that turn's text)."""
    cut = transcript.rfind(_HH_ASSISTANT)
    if cut < 0:
        raise _RowError(f"{field} is not an HH transcript (no '\\n\\nAssistant:' turn) and the row has no prompt")
    parts = _HH_TURN.split(transcript[:cut])
    if parts[0].strip():
        raise _RowError(f"{field} has text before its first 'Human:' or 'Assistant:' turn")
    # re.split with one group alternates [before, role, text, role, text, ...]
    turns = [{"role": _HH_ROLES[role], "content": text.strip()} for role, text in zip(parts[1::2], parts[2::2])]
    return turns, transcript[cut + len(_HH_ASSISTANT):].strip()


def _message_pair(prompt_value: Any, chosen: list, rejected: list) -> tuple[list[Message], str, str]:
    """TRL conversational rows: explicit prompt + one-message completions, or whole conversations.

    Messages before the final assistant turn are part of the conversation (implicit-prompt rows put it all
    there; some datasets repeat the prompt there), and must be the same in chosen and rejected.
    """
    before_c, c = _split_completion(_messages(chosen, "chosen"), "chosen")
    before_r, r = _split_completion(_messages(rejected, "rejected"), "rejected")
    if before_c != before_r:
        raise _RowError("chosen and rejected do not share a conversation")
    if prompt_value is None:
        return before_c, c, r
    prompt = _prompt(prompt_value)
    prompt_msgs = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    # a completion that repeats the prompt must not repeat it in the conversation as well
    if before_c[:len(prompt_msgs)] == prompt_msgs:
        return before_c, c, r
    return prompt_msgs + before_c, c, r


def _split_completion(msgs: list[Message], field: str) -> tuple[list[Message], str]:
    if not msgs:
        raise _RowError(f"{field} has no messages")
    if msgs[-1]["role"] != "assistant":
        raise _RowError(f"{field} must end with an assistant message, not a '{msgs[-1]['role']}' one")
    return msgs[:-1], msgs[-1]["content"]


def _single_response(value: Any, field: str) -> str:
    """A response given as text or as a list holding one assistant message."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, list):
        before, text = _split_completion(_messages(value, field), field)
        if before:
            raise _RowError(f"{field} must be a string or a single assistant message, not {len(value)} messages")
    else:
        raise _RowError(f"{field} must be a string or a list of chat messages, not {_type_name(value)}")
    _check_response(text, field)
    return text


# ---------------------------------------------------------------------------------------------- field checks


def _require(keys: set[str], *fields: str) -> None:
    missing = [f for f in fields if f not in keys]
    if missing:
        raise _RowError(f"missing field{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")


def _prompt(value: Any) -> Prompt:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return _messages(value, "prompt")
    raise _RowError(f"prompt must be a string or a list of chat messages, not {_type_name(value)}")


def _messages(value: list, field: str) -> list[Message]:
    """Chat messages, kept to role and content: parquet structs carry every other key as null."""
    out = []
    for i, m in enumerate(value):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise _RowError(f"{field}[{i}] must be a message object with string 'role' and 'content'")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _check_response(text: str, field: str) -> None:
    if not text.strip():
        raise _RowError(f"{field} is empty")


def _principle(row: dict) -> Optional[str]:
    value = row.get("principle")
    if value is not None and not isinstance(value, str):
        raise _RowError(f"principle must be a string (a principle id), not {_type_name(value)}")
    return value or None


def _row_id(row: dict, prompt: Prompt, first: str, second: str) -> str:
    value = row.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int, type(None))):
        raise _RowError(f"id must be a string or an integer, not {_type_name(value)}")
    return _optional_id(row) or sha256_json([prompt, first, second])[:16]


def _check_length(pair: Pair, max_chars: int) -> None:
    prompt = pair.prompt
    prompt_chars = len(prompt) if isinstance(prompt, str) else sum(len(m["content"]) for m in prompt)
    total = prompt_chars + len(pair.response_a) + len(pair.response_b)
    if total > max_chars:
        raise _RowError(f"pair is {total} characters long (prompt and both responses), over max_chars={max_chars}")


def _type_name(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def read_prompts(path: str | Path, format: Optional[str] = None) -> list[Prompt]:
    """The distinct prompts of a file, in file order. A row gives its `prompt` field, or (rows without one:
    HH transcripts, chat-message pairs) the conversation its chosen/rejected share."""
    p = Path(path)
    if p.is_dir() and (p / "labels.jsonl").exists():
        p = p / "labels.jsonl"
    rows = _READERS[_resolve_format(p, format)](p)
    seen: set[str] = set()
    out: list[Prompt] = []
    for line, row in rows:
        try:
            if isinstance(row, _RowError):
                raise row
            if not isinstance(row, dict):
                raise _RowError("row must be a JSON object with a prompt")
            if row.get("prompt") is not None:
                prompt = _prompt(row["prompt"])
            elif row.get("chosen") is not None and row.get("rejected") is not None:
                prompt = _parse_row(row).prompt  # HH transcripts, chat-message pairs: the shared conversation
            else:
                raise _RowError(f"row has no prompt; it has: {', '.join(sorted(row)) or 'nothing'}")
        except _RowError as e:
            raise DataError(p, line, str(e)) from None
        if not (prompt.strip() if isinstance(prompt, str) else prompt):
            raise DataError(p, line, "prompt is empty")
        key = sha256_json(prompt)
        if key not in seen:
            seen.add(key)
            out.append(prompt)
    if not out:
        raise DataError(p, None, "holds no prompts")
    return out


def split_prompts(prompts: list, n_eval: int, seed: int) -> tuple[list, list]:
    """(training prompts, held-out prompts): a seeded draw of `n_eval` held out; both keep the file order."""
    if n_eval >= len(prompts):
        raise ValueError(f"holding out {n_eval} prompts leaves none to train on (there are {len(prompts)})")
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    held_out = set(order[:n_eval])
    return ([p for i, p in enumerate(prompts) if i not in held_out],
            [p for i, p in enumerate(prompts) if i in held_out])
