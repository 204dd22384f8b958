"""A judge behind any OpenAI-compatible endpoint (a vLLM server, a hosted API).

P(first preferred) is read from the logprobs of the label token when the server returns them, else parsed from
the reply text (replies.py reads both); what is sent, chat messages or the local backends' exact prompt, is the
config's `request:` (openai_requests.py). Requests run concurrently over one or more base URLs with retries and
hard spending caps. The API key is sent in a header and scrubbed from every error, log line and record; a key
variable that is not set is no error for a server that answers without a key.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import threading
import time
from typing import Any, Optional, Sequence

import httpx
import tenacity

from ..config.judge import OpenAIJudgeConfig
from ..records import Query, ScoreQuery, ScoreVerdict, Verdict
from .base import BudgetExhausted, Judge, Spend, flag_repaired
from .openai_keys import read_key, scrub_key
from .openai_requests import RequestShape
from .prompting import LABELS
from .reading import InvalidLogprob
from .replies import FINAL, cue_position, label_probs, parse_text, read_score, split_rationale

logger = logging.getLogger(__name__)

# Statuses worth another try: rate limits, server trouble, and the two "try again" client codes.
_RETRY_STATUSES = {408, 409, 429}
_EXCERPT = 200  # characters of a reply body kept in an error message
_SCANNED = 1 << 16  # characters of a reply body read for that excerpt (an error page can be megabytes)


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: Optional[float] = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    """A reply that another try will not fix (400, 401, 404 …)."""


class _Exhausted(Exception):
    """The spending cap was reached before this request could be sent."""


def _excerpt(text: str, key: Optional[str]) -> str:
    """The head of a reply body for an error message, whitespace collapsed, the key scrubbed before the cut (so
    no part of a key that crosses it survives)."""
    text = scrub_key(" ".join(text[:_SCANNED].split()), key)
    return text if len(text) <= _EXCERPT else text[:_EXCERPT] + "…"


def _retry_after(value: Optional[str]) -> Optional[float]:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:  # the HTTP-date form
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _tokens(usage: Any, key: str) -> int:
    try:
        return max(0, int(usage.get(key) or 0))
    except (AttributeError, TypeError, ValueError):
        return 0


class OpenAIJudge(Judge):
    config: OpenAIJudgeConfig

    def __init__(self, config: OpenAIJudgeConfig, tokenizer: Any = None):
        """`tokenizer`: the one that renders request: completions prompts, when the caller has it loaded already
        (default: loaded from the config's `tokenizer` or `model`)."""
        super().__init__(config)
        if config.max_cost is not None and not (
            config.price_per_1k_prompt_tokens or config.price_per_1k_completion_tokens
        ):
            raise ValueError(
                "max_cost is set but both token prices are 0, so the cost cap could never be "
                "reached: set price_per_1k_prompt_tokens / price_per_1k_completion_tokens"
            )
        self._key = read_key(config)
        self._shape = RequestShape(config, tokenizer)
        self._urls = [u.rstrip("/") + self._shape.path for u in config.base_urls]
        self._next_url = 0
        # Running totals across judge() calls: the caps apply to the whole job, not to one batch.
        self.requests_sent = 0
        self.cost = 0.0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._warned_no_usage = False
        # One event loop in a worker thread, kept for the judge's life: it lets judge() be called from code
        # that already runs a loop, and keeps the client's connections alive between batches.
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._client: Optional[httpx.AsyncClient] = None
        self._sem: Optional[asyncio.Semaphore] = None
        self._stop: Optional[asyncio.Event] = None

    # ---- public -------------------------------------------------------------------------------------------

    def judge(self, queries: Sequence[Query]) -> list[Verdict]:
        """One request per query; as `score`, a score query's reply is read as a distribution (see _one)."""
        queries = list(queries)
        if not queries:
            return []
        future = asyncio.run_coroutine_threadsafe(self._judge_all(queries), self._ensure_loop())
        try:
            verdicts = future.result()
        except BaseException:  # e.g. KeyboardInterrupt: stop the requests rather than leave them running
            future.cancel()
            raise
        if any(v is None for v in verdicts):
            raise BudgetExhausted(self._budget_reason() or "spending cap reached", verdicts)
        return verdicts

    score = judge

    def post(
        self, bodies: Sequence[dict]
    ) -> tuple[list[Optional[tuple[Optional[dict], Optional[str], int]]], Optional[str]]:
        """POST `bodies` to this judge's endpoint (other than verdict requests: `rlaif revise` generates through
        this) with the same concurrency, retries, caps and key scrubbing. Returns one (reply body, error, attempts) per
        body, None where the spending cap stopped it before it was sent, and the cap's reason when one did."""
        future = asyncio.run_coroutine_threadsafe(self._post_all(list(bodies)), self._ensure_loop())
        try:
            results = future.result()
        except BaseException:
            future.cancel()
            raise
        stopped = any(r is None for r in results)
        return results, (self._budget_reason() or "spending cap reached") if stopped else None

    def carry_spend(self, before: Spend) -> None:
        self.requests_sent, self.cost = before.requests, before.cost

    def spent(self) -> Spend:
        return Spend(self.requests_sent, self.cost)

    def close(self) -> None:
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None:
            return
        if self._client is not None:
            asyncio.run_coroutine_threadsafe(self._client.aclose(), loop).result()
        self._client = self._sem = self._stop = None
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    # ---- plumbing -----------------------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="rlaif-openai-judge", daemon=True)
            self._thread.start()
        return self._loop

    def scrub(self, text: Optional[str]) -> Optional[str]:
        """`text` with this judge's API key scrubbed (openai_keys.scrub_key), for any text that may reach output."""
        return scrub_key(text, self._key)

    def _budget_reason(self) -> Optional[str]:
        c = self.config
        if c.max_requests is not None and self.requests_sent >= c.max_requests:
            return f"request cap reached: {self.requests_sent} requests sent (max_requests={c.max_requests})"
        if c.max_cost is not None and self.cost >= c.max_cost:
            return f"cost cap reached: estimated cost {self.cost:.4f} (max_cost={c.max_cost})"
        return None

    def _start(self, n: int) -> range:
        """Make the client on the worker loop (first call), and hand out the first URL of each of `n` requests."""
        if self._client is None:  # created here so that they belong to the worker loop
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.timeout_s),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=self.config.concurrency),
            )
            self._sem = asyncio.Semaphore(self.config.concurrency)
            self._stop = asyncio.Event()
        if self._budget_reason():
            self._stop.set()
        starts = range(self._next_url, self._next_url + n)
        self._next_url += n
        return starts

    async def _judge_all(self, queries: list[Query]) -> list[Optional[Verdict]]:
        starts = self._start(len(queries))
        return list(await asyncio.gather(*(self._one(q, s) for q, s in zip(queries, starts))))

    async def _post_all(self, bodies: list[dict]) -> list[Optional[tuple[Optional[dict], Optional[str], int]]]:
        starts = self._start(len(bodies))
        return list(await asyncio.gather(*(self._request(b, s) for b, s in zip(bodies, starts))))

    async def _sleep(self, seconds: float) -> None:
        # A retry waiting out its backoff wakes early once the cap is hit, so a stopped job does not linger.
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _wait(self, state: tenacity.RetryCallState) -> float:
        c = self.config
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Retryable) and exc.retry_after is not None:
            return min(exc.retry_after, c.max_backoff_s)
        return min(c.backoff_s * 2 ** (state.attempt_number - 1), c.max_backoff_s)

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        logger.warning(
            "openai judge: %s; retry %d in %.2fs",
            self.scrub(str(state.outcome.exception())),
            state.attempt_number,
            state.next_action.sleep if state.next_action else 0.0,
        )

    async def _one(self, q: Query | ScoreQuery, start: int) -> Optional[Verdict | ScoreVerdict]:
        scoring = isinstance(q, ScoreQuery)
        result = await self._request(self._shape.score_body(q) if scoring else self._shape.body(q), start)
        if result is None:
            return None  # unanswered: left for a resumed run, never a placeholder
        data, error, attempts = result
        if error is not None:
            return (ScoreVerdict if scoring else Verdict)(None, error=error, extra={"attempts": attempts})
        verdict = self._read_score(data) if scoring else self._read(data)
        verdict.extra["attempts"] = attempts
        return verdict

    async def _request(self, body: dict, start: int) -> Optional[tuple[Optional[dict], Optional[str], int]]:
        """POST `body` with retries: (reply body, None, attempts), or (None, scrubbed error, attempts) once it
        failed for good; None when the spending cap stopped it before it was sent."""
        c = self.config
        attempts = 0

        async def attempt() -> dict:
            nonlocal attempts
            async with self._sem:
                if self._budget_reason():
                    raise _Exhausted()
                # Each query starts on its own URL (round-robin) and moves to the next one on every retry.
                url = self._urls[(start + attempts) % len(self._urls)]
                attempts += 1
                self.requests_sent += 1
                if self._budget_reason():
                    self._stop.set()
                return await self._post(url, body)

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(c.max_retries + 1),
            wait=self._wait,
            sleep=self._sleep,
            retry=tenacity.retry_if_exception_type(_Retryable),
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            return await retrying(attempt), None, attempts
        except _Exhausted:
            return None
        except _Fatal as e:
            return None, self.scrub(str(e)), attempts
        except _Retryable as e:
            return None, self.scrub(f"gave up after {attempts} attempts: {e}"), attempts

    async def _post(self, url: str, body: dict) -> dict:
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        try:
            # wait_for bounds the whole request; httpx's own timeout only bounds each phase of it.
            resp = await asyncio.wait_for(self._client.post(url, json=body, headers=headers), self.config.timeout_s)
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise _Retryable(f"request to {url} timed out after {self.config.timeout_s}s") from None
        except httpx.TransportError as e:  # refused or dropped connections
            raise _Retryable(f"{type(e).__name__} from {url}: {e}") from None
        status = resp.status_code
        if status in _RETRY_STATUSES or status >= 500:
            raise _Retryable(
                f"HTTP {status} from {url}: {_excerpt(resp.text, self._key)}",
                retry_after=_retry_after(resp.headers.get("retry-after")),
            )
        if not 200 <= status < 300:
            hint = f" ({self._key_hint()})" if status in (401, 403) else ""
            raise _Fatal(f"HTTP {status} from {url}: {_excerpt(resp.text, self._key)}{hint}")
        try:
            data = resp.json()
            self._shape.reply(data)
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise _Retryable(
                f"unreadable response body from {url} ({type(e).__name__}): {_excerpt(resp.text, self._key)}"
            ) from None
        self._account(data.get("usage"))
        return data

    def _account(self, usage: Any) -> None:
        c = self.config
        if not isinstance(usage, dict):
            if c.max_cost is not None and not self._warned_no_usage:
                self._warned_no_usage = True
                logger.warning("openai judge: the server reports no token usage, so max_cost cannot be enforced")
            return
        pt, ct = _tokens(usage, "prompt_tokens"), _tokens(usage, "completion_tokens")
        self.prompt_tokens += pt
        self.completion_tokens += ct
        self.cost += pt / 1000 * c.price_per_1k_prompt_tokens + ct / 1000 * c.price_per_1k_completion_tokens
        if self._budget_reason():
            self._stop.set()

    def _key_hint(self) -> str:
        """What a 401/403 means for this judge's key."""
        name = self.config.api_key_env
        if self._key is not None:
            return f"the server refused the API key in ${name}"
        if name:
            return f"no API key was sent: ${name} is not set"
        return "no API key was sent: name the environment variable that holds it in the judge's api_key_env"

    def _read_score(self, data: dict) -> ScoreVerdict:
        """A score query's reply: the distribution from logprobs, else the score the text names (replies.py)."""
        reply, usage = self._shape.reply(data), data.get("usage") or {}
        verdict = read_score(reply.text, reply.positions, self.config.score.values)
        verdict.raw = self.scrub(reply.text)
        flag_repaired(verdict, reply.repaired)
        verdict.prompt_tokens, verdict.completion_tokens = (
            _tokens(usage, "prompt_tokens"),
            _tokens(usage, "completion_tokens"),
        )
        return verdict

    def _read(self, data: dict) -> Verdict:
        """Turn one response into a verdict: logprobs first, the reply text otherwise."""
        reply = self._shape.reply(data)
        text, content = reply.text, reply.positions
        usage = data.get("usage") or {}
        rationale = None
        answer = text
        if self.config.cot.enabled:
            rationale, answer = split_rationale(text)
            position = cue_position(content) if content else None
        else:
            position = content[0] if content else None
        verdict = Verdict(
            None,
            raw=self.scrub(text),
            rationale=self.scrub(rationale),
            prompt_tokens=_tokens(usage, "prompt_tokens"),
            completion_tokens=_tokens(usage, "completion_tokens"),
        )
        flag_repaired(verdict, reply.repaired)
        try:
            probs = label_probs(position) if position is not None else None
        except InvalidLogprob as e:  # a broken server: its text verdict is no more trusted than its numbers
            verdict.error = f"the server returned an {e}"
            return verdict
        if probs is not None:
            verdict.p_first = probs[0] / (probs[0] + probs[1])
            verdict.label_mass = probs[0] + probs[1]
            verdict.extra["verdict_source"] = "logprobs"
            return verdict
        cut = reply.finish_reason == "length"
        # A CoT reply cut before its final answer ends mid-reasoning: its last line is no verdict.
        label = None if self.config.cot.enabled and cut and not FINAL.search(text) else parse_text(answer)
        if label is not None:
            verdict.p_first = 1.0 if label == LABELS[0] else 0.0
            verdict.extra["verdict_source"] = "text"
        elif cut and self.config.cot.enabled:
            verdict.error = "could not read a verdict: the reply was cut at max_new_tokens before its final answer"
        else:
            verdict.error = "could not read a verdict: the reply names neither A nor B, or both"
        return verdict
