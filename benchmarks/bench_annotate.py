#!/usr/bin/env python
"""Load test of the annotation app: simulated annotators against a real `rlaif annotate serve` on loopback.

Two phases with the same annotators (each an httpx async client with its own connection, like a browser tab):

  think   each annotator fetches a pair, posts a label, then thinks 0.5-2 s before the next, as people do,
          until --labels labels are acknowledged in all;
  burst   no think time at all, until --burst-labels more are acknowledged: the server's throughput ceiling.

Prints requests/s and the p50/p99 latency of each phase (every GET /api/pairs/next and POST /api/labels timed
from the client), then stops the server, reads the SQLite file and counts acknowledged labels missing from it
(must be 0; the exit status is 1 otherwise). Target: p99 under 100 ms in the think phase.

    python benchmarks/bench_annotate.py                          # 50 annotators, 1000 + 2000 labels
    python benchmarks/bench_annotate.py --labels 200 --burst-labels 400   # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
WORDS = (
    "the response explains each step clearly and gives a safe alternative while noting what it cannot "
    "know about the situation so the reader should check with someone qualified before acting"
).split()


def synthetic_pairs(path: Path, n: int, rng: random.Random) -> None:
    """Pairs of realistic size (a 200-char prompt, two 400-1200-char responses)."""

    def text(lo: int, hi: int) -> str:
        out = []
        while sum(len(w) + 1 for w in out) < rng.randint(lo, hi):
            out.append(rng.choice(WORDS))
        return " ".join(out)

    with open(path, "w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "id": f"b{i}",
                        "prompt": text(150, 250),
                        "response_a": text(400, 1200),
                        "response_b": text(400, 1200),
                    }
                )
                + "\n"
            )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workdir: Path, pairs: Path, db: Path, tokens: Path, port: int) -> subprocess.Popen:
    log = open(workdir / "server.log", "wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rlaif.cli",
            "annotate",
            "serve",
            "--pairs",
            str(pairs),
            "--db",
            str(db),
            "--tokens",
            str(tokens),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited: {(workdir / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("server did not start in 60 s")


class Phase:
    """Shared state of one phase: the label budget, latencies, acknowledged labels."""

    def __init__(self, name: str, labels: int, think: tuple[float, float]):
        self.name, self.target, self.think = name, labels, think
        self.claimed = 0  # labels an annotator has set out to make; stops the phase at exactly `target`
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.acked: list[tuple[str, str, str]] = []
        self.wall = 0.0

    def claim(self) -> bool:
        if self.claimed >= self.target:
            return False
        self.claimed += 1
        return True


async def annotator(client: httpx.AsyncClient, name: str, phase: Phase, rng: random.Random) -> None:
    if phase.think[1] > 0:
        await asyncio.sleep(rng.uniform(0, phase.think[1]))  # people do not all start on the same second
    while phase.claim():
        t0 = time.perf_counter()
        r = await client.get("/api/pairs/next")
        phase.latencies.append(time.perf_counter() - t0)
        if r.status_code == 204:
            return
        if r.status_code != 200:
            phase.errors[f"GET {r.status_code}"] = phase.errors.get(f"GET {r.status_code}", 0) + 1
            continue
        pair_id = r.json()["pair_id"]
        choice = rng.choice(("a", "b", "a", "b", "tie"))
        t0 = time.perf_counter()
        r = await client.post("/api/labels", json={"pair_id": pair_id, "choice": choice})
        phase.latencies.append(time.perf_counter() - t0)
        if r.status_code in (200, 201):
            phase.acked.append((pair_id, name, r.json()["label"]))
        else:
            phase.errors[f"POST {r.status_code}"] = phase.errors.get(f"POST {r.status_code}", 0) + 1
        if phase.think[1] > 0:
            await asyncio.sleep(rng.uniform(*phase.think))


async def run_phases(url: str, tokens: dict[str, str], phases: list[Phase], seed: int) -> None:
    # Clients are made before any clock starts, with one TLS context between them: building one per client
    # blocks the event loop for tens of ms, which would show up as server latency. Each keeps its connection
    # open across phases, as a browser tab does.
    ssl_context = httpx.create_ssl_context()
    clients = {
        name: httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
            verify=ssl_context,
            limits=httpx.Limits(max_connections=1),
        )
        for name, token in tokens.items()
    }
    try:
        for phase in phases:
            print(
                f"phase {phase.name}: {len(clients)} annotators, {phase.target} labels ...", file=sys.stderr, flush=True
            )
            t0 = time.perf_counter()
            await asyncio.gather(
                *(
                    annotator(client, name, phase, random.Random(f"{seed}:{phase.name}:{name}"))
                    for name, client in clients.items()
                )
            )
            phase.wall = time.perf_counter() - t0
    finally:
        for client in clients.values():
            await client.aclose()


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]
        if len(values) > 1
        else (values[0] if values else float("nan"))
    )


def missing_from_db(db: Path, acked: list[tuple[str, str, str]]) -> tuple[int, int]:
    """(acknowledged labels not in the database as acknowledged, duplicate (pair, annotator) rows)."""
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT pair_id, annotator, label FROM labels").fetchall()
    stored = {(p, a): label for p, a, label in rows}
    missing = sum(1 for p, a, label in acked if stored.get((p, a)) != label)
    return missing, len(rows) - len(stored)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--annotators", type=int, default=50)
    ap.add_argument("--labels", type=int, default=1000, help="labels in the think-time phase")
    ap.add_argument("--burst-labels", type=int, default=2000, help="labels in the burst phase")
    ap.add_argument("--think", type=float, nargs=2, default=(0.5, 2.0), metavar=("MIN", "MAX"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, help="keep the pairs, tokens and database here (default: a temp dir)")
    args = ap.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-annotate-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    pairs, db, tokens_file = workdir / "pairs.jsonl", workdir / "annotations.sqlite", workdir / "tokens.txt"
    for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        p.unlink(missing_ok=True)
    synthetic_pairs(pairs, args.labels + args.burst_labels + args.annotators, rng)
    tokens = {f"annotator{i:02d}": f"bench-token-{i:02d}-{rng.getrandbits(64):016x}" for i in range(args.annotators)}
    tokens_file.write_text("".join(f"{n}:{t}\n" for n, t in tokens.items()))

    port = free_port()
    server = start_server(workdir, pairs, db, tokens_file, port)
    url = f"http://127.0.0.1:{port}"
    phases = [Phase("think", args.labels, tuple(args.think)), Phase("burst", args.burst_labels, (0.0, 0.0))]
    try:
        asyncio.run(run_phases(url, tokens, phases, args.seed))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    acked = [a for phase in phases for a in phase.acked]
    missing, duplicates = missing_from_db(db, acked)
    print(
        f"# bench_annotate: {platform.node()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{args.annotators} annotators, think {args.think[0]:g}-{args.think[1]:g} s"
    )
    print(
        f"{'phase':<7}{'labels':>8}{'requests':>10}{'wall s':>9}{'req/s':>9}{'labels/s':>10}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'max ms':>9}  errors"
    )
    summary = {}
    for phase in phases:
        lat = phase.latencies
        p50, p99 = percentile(lat, 0.50) * 1e3, percentile(lat, 0.99) * 1e3
        rps = len(lat) / phase.wall
        print(
            f"{phase.name:<7}{len(phase.acked):>8}{len(lat):>10}{phase.wall:>9.1f}{rps:>9.1f}"
            f"{len(phase.acked) / phase.wall:>10.1f}{p50:>9.1f}{p99:>9.1f}{max(lat) * 1e3:>9.1f}  "
            f"{phase.errors or '-'}"
        )
        summary[phase.name] = {
            "labels": len(phase.acked),
            "requests": len(lat),
            "wall_s": round(phase.wall, 2),
            "requests_per_s": round(rps, 1),
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
        }
    think_p99 = summary["think"]["p99_ms"]
    print(f"acknowledged labels: {len(acked)}; missing from the database: {missing}; duplicate rows: {duplicates}")
    print(f"{'PASS' if think_p99 < 100 else 'MISS'}: think-phase p99 {think_p99:.1f} ms (target < 100 ms)")
    print(json.dumps({**summary, "acknowledged": len(acked), "missing": missing, "duplicates": duplicates}))
    if missing or duplicates:
        sys.exit(1)


if __name__ == "__main__":
    main()
