"""Dynamic micro-batching for `rlaif serve reward` (rlaif/rewards/server.py): RL engines send one query per request,
many at once, and a judge is fastest on a full batch. Each request's queries wait in one queue; a batch leaves when
`max_batch_size` queries wait or `max_wait_ms` after the oldest arrived, is judged in one call in a worker thread
(the event loop keeps accepting), and each request gets its own answers. `Traffic` keeps the last minute's figures.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional

from ..numbers import positive_problem, range_problem

WINDOW_S = 60.0  # /health's figures and the log line cover the last minute


@dataclass(frozen=True)
class BatchLimits:
    """How the server batches (docs/serving.md has the measurements): 64 queries fill a GPU judge's forward pass
    and cost a CPU one nothing over smaller batches; waiting 5 ms for company adds little to a reward call of 50 ms
    or more, and only when a judge slot is free (a busy judge batches whatever arrives meanwhile without waiting)."""

    max_batch_size: int = 64
    max_wait_ms: float = 5.0
    max_queue: int = 4096
    max_in_flight: Optional[int] = None  # batches judged at once; None: as many as the judge takes

    def problem(self) -> Optional[str]:
        return (
            positive_problem(self.max_batch_size, "--max-batch-size")
            or range_problem(self.max_wait_ms, "--max-wait-ms", 0, 60_000)
            or positive_problem(self.max_queue, "--max-queue")
            or (None if self.max_in_flight is None else positive_problem(self.max_in_flight, "--max-in-flight"))
        )


class QueueFull(Exception):
    """More than `max_queue` queries would wait: the request is refused (503 with Retry-After) and can be retried."""


class ClientGone(Exception):
    """The client left before its request's batch ran: it was not judged."""


@dataclass
class _Waiting:
    item: Any
    size: int
    arrived: float
    answer: asyncio.Future
    gone: Callable[[], Awaitable[bool]]


class Traffic:
    """The last minute of answered requests and judged batches: what /health and the log line report."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.answered: deque[tuple[float, int, float]] = deque()  # (when, queries, latency in s)
        self.batches: deque[tuple[float, int]] = deque()  # (when, queries)
        self.left_unjudged = 0  # requests whose client had gone before their batch ran
        self.batches_judged = 0  # since the start, for a client that measures its own stretch of traffic

    def request(self, queries: int, latency: float) -> None:
        self.answered.append((time.monotonic(), queries, latency))

    def batch(self, queries: int) -> None:
        self.batches.append((time.monotonic(), queries))
        self.batches_judged += 1

    def figures(self) -> dict:
        now = time.monotonic()
        for recent in (self.answered, self.batches):
            while recent and recent[0][0] < now - WINDOW_S:
                recent.popleft()
        span = max(min(WINDOW_S, now - self.started), 1e-3)  # a server up for 10 s is not diluted over a minute
        latencies = sorted(x[2] for x in self.answered)
        return {
            "mean_batch_size": round(sum(b[1] for b in self.batches) / len(self.batches), 2) if self.batches else 0.0,
            "requests_per_s": round(len(self.answered) / span, 3),
            "queries_per_s": round(sum(x[1] for x in self.answered) / span, 3),
            "latency_p50_ms": _percentile_ms(latencies, 0.50),
            "latency_p99_ms": _percentile_ms(latencies, 0.99),
            "left_unjudged": self.left_unjudged,
            "batches_judged": self.batches_judged,
        }


async def _gone(w: _Waiting) -> bool:
    try:
        return await w.gone()
    except Exception:  # noqa: BLE001 - a check that cannot tell must not stop the loop: judge the request
        return False


def _percentile_ms(ordered: list[float], q: float) -> Optional[float]:
    """The nearest-rank percentile of sorted seconds, in ms; None with nothing to rank."""
    if not ordered:
        return None
    return round(1000 * ordered[max(0, math.ceil(q * len(ordered)) - 1)], 1)


def answers_of(judge: Callable[[list], list], items: list) -> list:
    """`judge(items)`'s answers, or each item's own exception: a batch that fails is judged again item by item, so
    one request's fault (a prompt the judge refuses) fails that request alone."""
    try:
        return judge(items)
    except Exception as e:  # noqa: BLE001 - handed to the request it belongs to
        if len(items) == 1:
            return [e]
    out = []
    for item in items:
        try:
            out.extend(judge([item]))
        except Exception as e:  # noqa: BLE001 - as above
            out.append(e)
    return out


class Batcher:
    """Requests' items in one queue, judged a batch at a time by `judge(items) -> answers` (one answer per item,
    in order), with up to `in_flight` batches being judged at once. An item stays whole: a batch takes whole items
    while they fit, and an item larger than `max_batch_size` is a batch of its own. `log` gets a line a minute."""

    def __init__(
        self,
        judge: Callable[[list], list],
        limits: BatchLimits = BatchLimits(),
        in_flight: int = 1,
        log: Optional[Callable[[str], None]] = None,
    ):
        self.judge, self.limits, self.in_flight, self.log = judge, limits, in_flight, log
        self.queue: deque[_Waiting] = deque()
        self.waiting = 0  # queries in the queue
        self.running = 0  # batches being judged
        self.traffic = Traffic()
        self._pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="rlaif-judge")
        self._wake: Optional[asyncio.Event] = None
        self._tasks: set[asyncio.Task] = set()
        self._logged = time.monotonic()

    async def submit(self, item: Any, size: int, gone: Callable[[], Awaitable[bool]]) -> Any:
        """`item`'s answer once its batch is judged. QueueFull when `size` more queries would put the queue over
        `max_queue` (a request alone larger than that is taken when nothing waits, or it never would be);
        ClientGone when `gone()` says so as its batch is about to run; the judge's exception for this item."""
        if self.waiting and self.waiting + size > self.limits.max_queue:
            raise QueueFull(
                f"{self.waiting} queries wait to be judged (--max-queue {self.limits.max_queue}): retry shortly"
            )
        if self._wake is None:  # started on the serving loop by its first request
            self._wake = asyncio.Event()
            self._spawn(self._run())
        arrived = time.monotonic()
        waiting = _Waiting(item, size, arrived, asyncio.get_running_loop().create_future(), gone)
        self.queue.append(waiting)
        self.waiting += size
        self._wake.set()
        answer = await waiting.answer
        self.traffic.request(size, time.monotonic() - arrived)
        return answer

    def figures(self) -> dict:
        """What /health adds: the queue, the batches being judged, and the last minute's traffic."""
        return {"queue_depth": self.waiting, "batches_in_flight": self.running, **self.traffic.figures()}

    # ---- the loop -------------------------------------------------------------------------------------------

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # held, so the loop does not drop a running task
        task.add_done_callback(self._tasks.discard)

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self.in_flight)
        while True:
            # a slot first: while every slot is busy, what arrives gathers into the next batch without waiting
            await slots.acquire()
            batch = await self._next_batch()
            live = []
            for w in batch:
                if await _gone(w):
                    self.traffic.left_unjudged += 1
                    if not w.answer.done():
                        w.answer.set_exception(ClientGone())
                else:
                    live.append(w)
            if live:
                self.running += 1
                self._spawn(self._judge(live, slots))
            else:
                slots.release()

    async def _next_batch(self) -> list[_Waiting]:
        limits = self.limits
        while True:
            now = time.monotonic()
            self._log_minute(now)
            if self.queue:
                due = self.queue[0].arrived + limits.max_wait_ms / 1000
                if self.waiting >= limits.max_batch_size or now >= due:
                    break
                timeout = due - now
            else:
                timeout = WINDOW_S
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
        batch = [self.queue.popleft()]
        taken = batch[0].size
        while self.queue and taken + self.queue[0].size <= limits.max_batch_size:
            taken += self.queue[0].size
            batch.append(self.queue.popleft())
        self.waiting -= taken
        return batch

    async def _judge(self, batch: list[_Waiting], slots: asyncio.Semaphore) -> None:
        try:
            items = [w.item for w in batch]
            answers = await asyncio.get_running_loop().run_in_executor(self._pool, answers_of, self.judge, items)
        finally:
            self.running -= 1
            slots.release()
        self.traffic.batch(sum(w.size for w in batch))
        for w, answer in zip(batch, answers):
            if w.answer.done():
                continue
            if isinstance(answer, Exception):
                w.answer.set_exception(answer)
            else:
                w.answer.set_result(answer)

    def _log_minute(self, now: float) -> None:
        if self.log is None or now - self._logged < WINDOW_S:
            return
        self._logged = now
        f = self.figures()
        if f["requests_per_s"] or f["queue_depth"]:
            self.log(
                f"last minute: {f['requests_per_s']:g} requests/s, {f['queries_per_s']:g} queries/s, mean batch "
                f"{f['mean_batch_size']:g}, latency p50 {f['latency_p50_ms']} ms p99 {f['latency_p99_ms']} ms, "
                f"{f['queue_depth']} queries waiting"
            )
