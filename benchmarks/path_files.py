"""How many of rlaif's files a reader must follow: the files one pair crosses in `rlaif label`, and the files one
`rlaif train dpo` run executes, counted by tracing the two commands in-process (docs/layout.md quotes the figures).

The rule. A file counts when a *function* defined in it runs during the command (module and class bodies, which run
at import, do not count: importing a file is not following it). For `rlaif label`, calls made while loading the
constitution and the judge (`load_constitution`, `load_judge_config`, `load_judge`, and `refusal`, the check that
the judge is the kind the job needs, with everything below them) are setup and do not count either: what is left is
the path of a pair from the command line to its label on disk and the job's stats. `rlaif label` runs on one pair of
examples/pairs.jsonl with the embedded judge (judges/default.yaml, the demo's); `rlaif train dpo` runs
examples/tiny/dpo.yaml for 2 steps. Both write into a temporary folder, and the run is the same on every machine, so
the counts are too.

    python benchmarks/path_files.py            # both counts, each with its files
    python benchmarks/path_files.py --json runs/path_files.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rlaif"
sys.path.insert(0, str(ROOT))  # count this checkout's files, whichever rlaif is installed
# (file, function) pairs whose calls, with everything below them, are a command's setup
LABEL_SETUP = {
    ("constitution.py", "load_constitution"),
    ("config/judge.py", "load_judge_config"),
    ("judges/registry.py", "load_judge"),
    ("judges/registry.py", "refusal"),  # the job asks, before loading, whether the judge is the kind it needs
}
CO_NEWLOCALS = 0x0002  # set on function code, clear on module and class bodies


class Tracer:
    """Records the rlaif files whose functions run, outside the calls named in `setup`."""

    def __init__(self, setup: set[tuple[str, str]] = frozenset()):
        self.setup, self.files, self.setup_files = setup, set(), set()
        self.prefix = str(PACKAGE) + os.sep

    def _name(self, code) -> str | None:
        filename = code.co_filename
        return filename[len(self.prefix) :] if filename.startswith(self.prefix) else None

    def _in_setup(self, frame) -> bool:
        while frame is not None:
            name = self._name(frame.f_code)
            if name is not None and (name, frame.f_code.co_name) in self.setup:
                return True
            frame = frame.f_back
        return False

    def __call__(self, frame, event, arg):
        if event != "call":
            return
        code = frame.f_code
        name = self._name(code)
        if name is None or not code.co_flags & CO_NEWLOCALS:
            return
        (self.setup_files if self.setup and self._in_setup(frame) else self.files).add(name)

    def run(self, argv: list[str]) -> int:
        from rlaif.cli import main

        sys.argv = ["rlaif", *argv]
        threading.setprofile(self)
        sys.setprofile(self)
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            sys.setprofile(None)
            threading.setprofile(None)
        return code


def label_files(tmp: Path) -> dict:
    pairs = tmp / "pair.jsonl"
    with open(ROOT / "examples" / "pairs.jsonl", encoding="utf-8") as f:
        pairs.write_text(f.readline(), encoding="utf-8")
    tracer = Tracer(LABEL_SETUP)
    code = tracer.run(
        [
            "label",
            "--pairs",
            str(pairs),
            "--constitution",
            str(ROOT / "constitutions/harmless.yaml"),
            "--judge",
            str(ROOT / "judges/default.yaml"),
            "--out",
            str(tmp / "labels"),
            "--quiet",
        ]
    )
    return {"exit_code": code, "files": sorted(tracer.files), "setup_only": sorted(tracer.setup_files - tracer.files)}


def dpo_files(tmp: Path) -> dict:
    tracer = Tracer()
    code = tracer.run(
        [
            "train",
            "dpo",
            "--config",
            str(ROOT / "examples/tiny/dpo.yaml"),
            f"output_dir={tmp / 'dpo'}",
            "max_steps=2",
            "save_steps=2",
            "eval_steps=2",
        ]
    )
    return {"exit_code": code, "files": sorted(tracer.files)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="also write the counts and files to this JSON file")
    args = parser.parse_args()
    os.chdir(ROOT)  # the tiny DPO config names its data relative to the repository root
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "rlaif label, one pair (after setup)": label_files(Path(tmp)),
            "rlaif train dpo, one run": dpo_files(Path(tmp)),
        }
    for what, counted in result.items():
        if counted["exit_code"] != 0 or not counted["files"]:
            sys.exit(
                f"{what}: the command exited with {counted['exit_code']} and ran {len(counted['files'])} of "
                f"the files in {PACKAGE}; the count would be wrong"
            )
        print(f"{what}: {len(counted['files'])} files")
        for name in counted["files"]:
            print(f"  rlaif/{name}")
        if counted.get("setup_only"):
            print(
                f"  not counted, setup only ({len(counted['files']) + len(counted['setup_only'])} files with "
                f"setup): {', '.join(counted['setup_only'])}"
            )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({k: {**v, "count": len(v["files"])} for k, v in result.items()}, indent=1), encoding="utf-8"
        )


if __name__ == "__main__":
    main()
