"""Label Studio as the annotation tool: `rlaif annotate export-tasks --format label-studio` writes a project's
tasks and its labeling config, and `rlaif human import` reads the project's JSON export back as human labels.

Label Studio shows every annotator a task the same way, so the left/right order is drawn once per task (seeded by
the pair id) and written into the task, beside the pair in its own order and the principle the judge drew for
it. An annotation is read back through the same order logic as `rlaif annotate serve`'s answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..config.paths import output_dir_problem, require
from ..constitution import load_constitution
from ..data.formats import RowError
from ..data.pairs import DataError
from ..files import atomic_write, json_line
from ..judges.prompting import render_conversation
from ..records import LabelRecord, Prompt, human_record
from . import validation_problems
from .db import ServedPair
from .presentation import pair_order_label, served_pairs, shown_order

PathLike = Union[str, Path]
TASKS_FILE = "tasks.json"
CONFIG_FILE = "config.xml"
DATA_KEY = "rlaif"  # the task data field holding the pair as rlaif knows it
CHOICE_NAME = "choice"  # the <Choices> control whose answer is read back
CHOICES = {"A": "a", "B": "b", "Tie": "tie"}  # the choice as shown (left = A) -> our answer in the shown order
# In place of an annotator in the seed of the order: Label Studio shows one order per task, to everyone.
ORDER_KEY = "label-studio"
ANNOTATOR_PREFIX = "label-studio:"  # + the Label Studio user id, the one field every JSON export carries

# <Text> shows a value as plain text (<HyperText> would render it as HTML), so a model output containing markup is
# shown as the characters it is. Skipping is Label Studio's own Skip button: it records a cancelled annotation.
LABEL_CONFIG = """<View>
  <Header value="Conversation"/>
  <Text name="prompt" value="$prompt"/>
  <Header value="Which response answers this better?"/>
  <Text name="principle" value="$principle"/>
  <View style="display: flex; gap: 1em;">
    <View style="flex: 1;">
      <Header value="A"/>
      <Text name="left" value="$left"/>
    </View>
    <View style="flex: 1;">
      <Header value="B"/>
      <Text name="right" value="$right"/>
    </View>
  </View>
  <Choices name="choice" toName="prompt" choice="single" required="true" showInline="true">
    <Choice value="A" hotkey="1"/>
    <Choice value="B" hotkey="2"/>
    <Choice value="Tie" hotkey="3"/>
  </Choices>
</View>
"""


class TaskPair(BaseModel):
    """The `rlaif` field of a task's data: the pair in its own order, and how it was shown."""

    model_config = ConfigDict(extra="forbid")
    pair_id: str = Field(min_length=1, description="The pair's id, as `rlaif label` gives it with the same seed.")
    prompt: Prompt
    response_a: str
    response_b: str
    conversational: bool = False
    shown_order: Literal["ab", "ba"] = Field(description="ba: response_b is on the left (shown as A).")
    principle_id: Optional[str] = None
    principle_invert: bool = Field(False, description="The principle asks for the worse response.")
    constitution_sha256: Optional[str] = None
    seed: int = 0


# ---------------------------------------------------------------------------------------------- export


def task(pair: ServedPair, seed: int, constitution_sha256: Optional[str]) -> dict:
    """One Label Studio task: what the annotator sees (prompt, principle, left, right), and the pair as rlaif
    knows it under `rlaif`."""
    order = shown_order(seed, ORDER_KEY, pair.id)
    left, right = (pair.response_a, pair.response_b) if order == "ab" else (pair.response_b, pair.response_a)
    known = TaskPair(
        pair_id=pair.id,
        prompt=pair.prompt,
        response_a=pair.response_a,
        response_b=pair.response_b,
        conversational=pair.conversational,
        shown_order=order,
        principle_id=pair.principle_id,
        principle_invert=pair.principle_invert,
        constitution_sha256=constitution_sha256,
        seed=seed,
    )
    return {
        "data": {
            "prompt": render_conversation(pair.prompt),
            "principle": pair.principle_text,
            "left": left,
            "right": right,
            DATA_KEY: known.model_dump(mode="json"),
        }
    }


def export_tasks(
    pairs: PathLike, constitution: PathLike, out: PathLike, seed: int = 0, skip_invalid: bool = False
) -> dict:
    """Write OUT/tasks.json (Label Studio tasks, one per pair) and OUT/config.xml (the labeling config), each
    through a temp file. Returns counts, and with `skip_invalid` the rows left out (`invalid`)."""
    require("--out", output_dir_problem(out))
    const = load_constitution(constitution)
    invalid: Optional[list[str]] = [] if skip_invalid else None
    # a repeated pair id is refused (or, with skip_invalid, left out) by the reader, as in `rlaif label`
    served = served_pairs(pairs, const, seed, invalid)
    counts: dict[str, Any] = write_tasks(served, seed, const.sha256, Path(out) / TASKS_FILE)
    write_label_config(Path(out) / CONFIG_FILE)
    if invalid is not None:
        counts["skipped_invalid"] = len(invalid)
        counts["invalid"] = invalid
    return counts


def write_tasks(pairs: Iterable[ServedPair], seed: int, constitution_sha256: Optional[str], path: Path) -> dict:
    """Write the pairs as Label Studio tasks to `path` (a JSON list, through a temp file); returns the counts of
    tasks and of each order shown. `rlaif loop` writes each iteration's queue for people with it."""
    counts = {"tasks": 0, "shown_ab": 0, "shown_ba": 0}

    def tasks() -> Iterator[dict]:
        for pair in pairs:
            made = task(pair, seed, constitution_sha256)
            counts["tasks"] += 1
            counts["shown_" + made["data"][DATA_KEY]["shown_order"]] += 1
            yield made

    _write_json_list(tasks(), path)
    return counts


def write_label_config(path: Path) -> None:
    """The project's labeling config (LABEL_CONFIG), through a temp file."""
    with atomic_write(path) as f:
        f.write(LABEL_CONFIG)


def _write_json_list(rows: Iterator[dict], path: Path) -> None:
    """A JSON list (what Label Studio imports), one row per line, streamed through a temp file."""
    with atomic_write(path) as f:
        f.write("[")
        for i, row in enumerate(rows):
            f.write(("\n" if i == 0 else ",\n") + json_line(row))
        f.write("\n]\n")


# ---------------------------------------------------------------------------------------------- import


def is_export(row: Any) -> bool:
    """Whether a JSON row is a task of a Label Studio JSON export: its data and its annotations."""
    return isinstance(row, dict) and isinstance(row.get("data"), dict) and "annotations" in row


def near_miss(row: Any) -> Optional[str]:
    """What is wrong with a file whose first row is almost a Label Studio JSON export of our tasks, or None."""
    if isinstance(row, dict) and DATA_KEY in row and "annotation_id" in row:
        return "a Label Studio JSON-MIN export: export the project as JSON (the full format) instead"
    if isinstance(row, dict) and isinstance(row.get("data"), dict) and DATA_KEY in row["data"]:
        return (
            "the tasks `rlaif annotate export-tasks` wrote, without annotations: import Label Studio's JSON "
            "export of the annotated project instead"
        )
    return None


def export_records(
    path: Path, rows: Iterator[tuple[int, Any]], now: str
) -> Iterator[tuple[int, Union[LabelRecord, DataError]]]:
    """(row, record) for every submitted annotation of each task of a Label Studio JSON export; skipped tasks
    (cancelled annotations) give none. A task or an annotation that cannot be used is a DataError at its row."""
    for line, row in rows:
        try:
            pair, annotations = _task_pair(row)
        except RowError as e:
            yield line, DataError(path, line, str(e))
            continue
        for annotation in annotations:
            try:
                record = _record(pair, annotation, now)
            except RowError as e:
                yield line, DataError(path, line, f"task {row.get('id')}, annotation {_get(annotation, 'id')}: {e}")
                continue
            if record is not None:
                yield line, record


def _task_pair(row: Any) -> tuple[TaskPair, list]:
    if not is_export(row):
        raise RowError("not a task of a Label Studio JSON export (it needs `data` and `annotations`)")
    data, where = row["data"], f"task {row.get('id')}"
    if DATA_KEY not in data:
        raise RowError(f"{where} was not written by `rlaif annotate export-tasks` (its data has no `{DATA_KEY}`)")
    try:
        pair = TaskPair.model_validate(data[DATA_KEY])
    except ValidationError as e:
        raise RowError(f"{where}: data.{DATA_KEY}: {validation_problems(e)}") from None
    # what the annotator saw must be the pair in the recorded order, or their A/B would be read against the wrong
    # responses: a task edited in Label Studio is refused rather than mislabelled
    shown = (pair.response_a, pair.response_b) if pair.shown_order == "ab" else (pair.response_b, pair.response_a)
    if (data.get("left"), data.get("right")) != shown:
        raise RowError(
            f"{where}: its left and right responses are not pair '{pair.pair_id}' in the order recorded "
            f"({pair.shown_order}); the task data was changed after `rlaif annotate export-tasks`"
        )
    if not isinstance(row["annotations"], list):
        raise RowError(f"{where}: annotations must be a list")
    return pair, row["annotations"]


def _record(pair: TaskPair, annotation: Any, now: str) -> Optional[LabelRecord]:
    """The label one annotation gives, or None for a skip (Label Studio's Skip button cancels the annotation)."""
    if not isinstance(annotation, dict):
        raise RowError("not an object")
    if annotation.get("was_cancelled") is True:
        return None
    user = annotation.get("completed_by")
    # a plain export gives the user's id; one that expands users gives {id, email, ...}: the id names both alike
    user_id = user.get("id") if isinstance(user, dict) else user
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        raise RowError("completed_by names no Label Studio user")
    annotator = f"{ANNOTATOR_PREFIX}{user_id}"
    choice = _choice(annotation.get("result"), annotator)
    return human_record(
        pair_id=pair.pair_id,
        prompt=pair.prompt,
        response_a=pair.response_a,
        response_b=pair.response_b,
        label=pair_order_label(choice, pair.shown_order, pair.principle_invert),
        annotator=annotator,
        created_at=_text(annotation.get("updated_at")) or now,
        shown_order=pair.shown_order,
        principle_id=pair.principle_id,
        constitution_sha256=pair.constitution_sha256 if pair.principle_id else None,
        conversational=pair.conversational,
    )


def _choice(result: Any, annotator: str) -> str:
    """The one choice of the `choice` control, as our answer in the shown order (a = left)."""
    picked = [
        c
        for r in (result if isinstance(result, list) else [])
        if _get(r, "from_name") == CHOICE_NAME
        for c in (_get(_get(r, "value"), "choices") or [])
    ]
    if len(picked) != 1:
        raise RowError(
            f"by {annotator}: {'no choice' if not picked else 'more than one choice'} (one of "
            f"{', '.join(CHOICES)} is needed, or the task skipped)"
        )
    if picked[0] not in CHOICES:
        raise RowError(
            f"by {annotator}: choice {picked[0]!r} is not one of {', '.join(CHOICES)} (was the labeling "
            f"config changed?)"
        )
    return CHOICES[picked[0]]


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _text(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None
