"""People inside the loop (`feedback.source: mixed` with `feedback.annotate`): each iteration's queue for people
goes to the annotation app (served by the loop on loopback, or a running `rlaif annotate serve`) or to Label
Studio as tasks, whose export the loop reads while it waits; the loop waits up to `wait_s` for labels and trains
on those that arrived; answers that come later train in the next iteration.

The annotation database is the one record. `AnnotationDB.claim` marks every answer with the iteration that takes
it, once per run, and the iteration's answers are written to OUT/iter-K/human_labels.jsonl (its own pairs) and
OUT/iter-K/carried_labels.jsonl (earlier iterations' pairs, answered late). An iteration resumed after its DPO
steps began reads those files again instead of taking newer answers, so it trains on what it trained on before.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

from ..config.loop import LoopConfig
from ..constitution import load_constitution
from ..data.formats import DataError
from ..files import write_jsonl
from ..human import label_studio
from ..human.db import AnnotationDB
from ..human.importer import add_label_studio_export
from ..human.presentation import served_pairs

HUMAN_LABELS = "human_labels.jsonl"  # the answers to the iteration's own pairs that it trains on
CARRIED_LABELS = "carried_labels.jsonl"  # late answers to earlier iterations' pairs, trained on here
QUEUE = "human_queue.jsonl"
DB = "annotations.sqlite"
LS_TASKS = "label_studio_tasks.json"  # the iteration's queue as Label Studio tasks
LS_CONFIG = "label_studio_config.xml"  # the Label Studio project's labeling config, once per run
PROGRESS_EVERY_S = 10.0


class LabelStudioExport:
    """People labelling in Label Studio, from the loop's side: the project's JSON export read into the annotation
    database each time the file changes. A bad export or annotation is reported once and left out, not fatal: the
    loop's time and people's other answers in the file are worth more than one row, the next export is read
    again, and what was read before stays in the database."""

    def __init__(self, export: Path, db: AnnotationDB):
        self.export, self.db = export, db
        self.read_as: Optional[tuple] = None  # (inode, mtime, size) of the export as last read
        self.problems = 0  # annotations (or the whole file) left out of the export as last read
        self.reported: set[str] = set()

    def read(self, force: bool = False) -> None:
        """Add the export's annotations to the database if the file changed since it was last read (or `force`:
        a file rewritten within the file system's time resolution keeps its mtime, and often its size)."""
        invalid: list[DataError] = []
        try:
            st = self.export.stat()
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
            if seen == self.read_as and not force:
                return
            self.read_as = seen
            add_label_studio_export(self.db, self.export, invalid)
        except FileNotFoundError:
            return  # nobody has exported yet
        except DataError as e:  # the file as a whole: not an export, or caught half written
            invalid.append(e)
        except OSError as e:  # unreadable (permissions): said like any other problem with the file
            invalid.append(DataError(self.export, None, f"cannot read: {e.strerror or e}"))
        self.problems = len(invalid)
        for e in invalid:
            if str(e) not in self.reported:
                self.reported.add(str(e))
                print(f"warning: {e}; left out (read again when the file changes)", file=sys.stderr, flush=True)


class People:
    """The loop's side of the annotation database: adds each iteration's queue to it, waits for labels, and takes
    the answers the iteration trains on. `url`: where the loop serves the app (None when another process does, or
    when people label in Label Studio: `studio`)."""

    def __init__(self, config: LoopConfig, db: AnnotationDB, url: Optional[str], studio: Optional[LabelStudioExport]):
        self.config, self.db, self.url, self.studio = config, db, url, studio
        self.annotate = config.feedback.root.annotate
        self.out = Path(config.output_dir)
        self.run_id = str(self.out.resolve())  # answers are used once per run, whoever else reads the database
        self.constitution = load_constitution(config.constitution) if config.constitution else None

    def take(self, k: int, it_dir: Path, pairs: set[str], resumed: bool) -> dict:
        """The answers iteration k trains on, written to its two label files: to its own `pairs` (a human label
        replaces the judge's) and late ones to earlier iterations' pairs. Returns the iteration row's `people`
        fields. `resumed`: its DPO steps began before a restart, so it keeps the answers it took."""
        ids = queued_ids(it_dir)
        mine, carried = it_dir / HUMAN_LABELS, it_dir / CARRIED_LABELS
        if resumed and mine.exists() and carried.exists():
            return {"queued": len(ids), "labels": _lines(mine), "carried": _lines(carried), "waited_s": None}
        # the same settings as `rlaif annotate serve --seed --constitution`: the same principle and order shown
        settings = {"seed": str(self.config.seed), "constitution_sha256": getattr(self.constitution, "sha256", None)}
        served = list(served_pairs(it_dir / QUEUE, self.constitution, self.config.seed))
        self.db.load_pairs(served, settings)
        if self.studio:
            tasks = it_dir / LS_TASKS
            label_studio.write_tasks(served, self.config.seed, settings["constitution_sha256"], tasks)
            where = f"Label Studio tasks in {tasks}; reading its export {self.studio.export}"
        else:
            where = f"open {self.url}" if self.url else f"served from {self.db.path}"
        print(
            f"iteration {k}: {len(ids)} pairs for people ({where}); waiting up to {self.annotate.wait_s:g} s",
            flush=True,
        )
        waited, labelled = self._wait(k, ids)
        earlier = {i for j in range(1, k) for i in queued_ids(self.out / f"iter-{j}")}
        self.db.claim(self.run_id, k, sorted(set(ids) | earlier))
        taken = list(self.db.label_records(used_by=(self.run_id, k)))
        n_mine = write_jsonl((r for r in taken if r["id"] in pairs), mine)
        n_carried = write_jsonl((r for r in taken if r["id"] not in pairs), carried)
        print(
            f"iteration {k}: {labelled}/{len(ids)} pairs labelled in {waited:.1f} s; training on {n_mine} answers to "
            f"its pairs and {n_carried} late answer(s) to earlier iterations' pairs",
            flush=True,
        )
        fields = {
            "queued": len(ids),
            "labelled_in_wait": labelled,
            "labels": n_mine,
            "carried": n_carried,
            "waited_s": round(waited, 3),
        }
        if self.studio:
            fields["export_left_out"] = self.studio.problems
        return fields

    def _wait(self, k: int, ids: list[str]) -> tuple[float, int]:
        """Up to wait_s seconds, less once every pair is labelled, with a progress line when the count moves (at
        most every PROGRESS_EVERY_S); returns (seconds waited, pairs labelled)."""
        start = time.monotonic()
        deadline, shown, shown_at = start + self.annotate.wait_s, -1, start
        while True:
            now = time.monotonic()
            if self.studio:  # the last look at the deadline reads the export whatever its stat says
                self.studio.read(force=now >= deadline)
            labelled = self.db.labelled(ids)
            if labelled == len(ids) or now >= deadline:
                return now - start, labelled
            if labelled != shown and now - shown_at >= PROGRESS_EVERY_S:
                print(f"iteration {k}: {labelled}/{len(ids)} labelled, {deadline - now:.0f} s left", flush=True)
                shown, shown_at = labelled, now
            time.sleep(min(0.2, deadline - now))


def queued_ids(it_dir: Path) -> list[str]:
    """The ids of an iteration's queue for people (none when it wrote none)."""
    path = it_dir / QUEUE
    if not path.exists():
        return []
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


@contextlib.contextmanager
def people_in_the_loop(config: LoopConfig, main: bool) -> Iterator[Optional[People]]:
    """People for the run while the block runs (None without `feedback.annotate`, and on the other processes):
    the annotation database opened, with serve: true the app served on loopback from a thread, and with
    label_studio_export the project's labeling config written beside the run's iterations."""
    annotate = getattr(config.feedback.root, "annotate", None)
    if annotate is None or not main:
        yield None
        return
    path = Path(annotate.db) if annotate.db else Path(config.output_dir) / DB
    ls_export = annotate.label_studio_export
    # serve: false names a running server's database: a missing one is a mistake, not a new database
    create = annotate.serve or ls_export is not None
    with contextlib.closing(AnnotationDB(path, create=create)) as db, contextlib.ExitStack() as stack:
        url, ls = None, None
        if ls_export is not None:
            ls, labeling = LabelStudioExport(Path(ls_export), db), Path(config.output_dir) / LS_CONFIG
            label_studio.write_label_config(labeling)
            print(
                f"people label in Label Studio: a project with the labeling config {labeling} takes each "
                f"iteration's tasks (iter-K/{LS_TASKS}); export it as JSON to {ls_export}",
                flush=True,
            )
        if annotate.serve:
            try:  # lazy: fastapi and uvicorn are the `human` extra, needed only when the loop serves the app
                from ..human.server import served_in_background
            except ImportError as e:
                raise ValueError(
                    f"feedback.annotate.serve needs the annotation app's packages ({e.name} is missing): "
                    "pip install 'rlaif[human]'"
                ) from None
            url = stack.enter_context(served_in_background(path, config.seed, annotate.port, annotate.tokens))
        yield People(config, db, url, ls)
