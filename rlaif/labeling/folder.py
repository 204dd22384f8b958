"""The label folder of a job (OUT/): what `rlaif label` keeps there, in the shared job-folder machinery of
rlaif/data/folder.py (its lock, which job it belongs to, what it spent).

A label folder belongs to one job: one constitution, one judge, one seed, one shard. manifest.json says so, and so
does the store itself: every record carries the constitution and judge hashes, and job.json keeps the seed and
shard, so deleting the manifest does not let another job append.
"""

from __future__ import annotations

from pathlib import Path

from ..jobs.folder import Folder, FolderKind, JobError, open_folder as _open_folder
from ..jobs.folder import judged_identity, read_spend, write_spend
from ..data.labels import LABELS_FILE
from ..numbers import label_problem

__all__ = ["LABELS", "Folder", "LabelJobError", "open_folder", "read_spend", "write_spend"]

LabelJobError = JobError  # the labelling job's name for it (rlaif.labeling.job.LabelJobError)


LABELS = FolderKind(job="rlaif label",
                    records="labels", record="a label", doing="labelled", file=LABELS_FILE,
                    same_job=(("constitution_sha256", "constitution"), ("judge_settings_sha256", "judge settings"),
                              ("seed", "seed"), ("shard", "shard")),
                    record_identity=judged_identity, record_problem=lambda r, _: label_problem(r))


def open_folder(out_dir: Path, manifest: dict) -> Folder:
    """Create or reopen a label folder (see rlaif.jobs.folder.open_folder)."""
    return _open_folder(out_dir, manifest, LABELS)
