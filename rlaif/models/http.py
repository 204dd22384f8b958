"""The one client for OpenAI-compatible HTTP endpoints (a vLLM server, a hosted API), below the openai judge
(rlaif/judges/openai.py) and the openai reviser (rlaif/revision/openai.py): JSON bodies POSTed concurrently over one
or more base URLs, with retries, hard spending caps that hold per job, and the API key (keys.py) sent in a header and
scrubbed from every error and log line. What a body holds and how its reply reads are the caller's.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import threading
import time
from typing import Any, Callable, Optional, Sequence

import httpx
import tenacity

from ..config.judge import OpenAIJudgeConfig
from ..records import Spend
from .keys import read_key, scrub_key

logger = logging.getLogger(__name__)

# Statuses worth another try: rate limits, server trouble, and the two "try again" client codes.
_RETRY_STATUSES = {408, 409, 429}
_EXCERPT = 200  # characters of a reply body kept in an error message
_SCANNED = 1 << 16  # characters of a reply body read for that excerpt (an error page can be megabytes)

# What a body got: (reply body, None, attempts), or (None, scrubbed error, attempts) once it failed for good.
Result = tuple[Optional[dict], Optional[str], int]


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


def chat_text(data: dict) -> str:
    """The text of a chat reply's first choice ("" for none); KeyError, IndexError or TypeError when it has no text
    message (as a `check`, that makes the body retried)."""
    message = data["choices"][0]["message"]
    if not isinstance(message, dict):
        raise TypeError("no message in the first choice")
    text = message.get("content") or ""
    if not isinstance(text, str):
        raise TypeError("no text message in the first choice")
    return text


def usage_tokens(data: Any) -> tuple[int, int]:
    """(prompt tokens, completion tokens) of a reply body's `usage`; 0 for what is missing or not a count (1e999
    included: a server's numbers must not crash the job)."""

    def count(key: str) -> int:
        try:
            return max(0, int(data["usage"].get(key) or 0))
        except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
            return 0

    return count("prompt_tokens"), count("completion_tokens")


class HTTPClient:
    """POSTs JSON bodies to `path` under each of the config's base URLs. `user` names whoever uses the client in
    its log lines ("openai judge: …; retry 1 in 0.50s")."""

    def __init__(self, config: OpenAIJudgeConfig, path: str, user: str):
        self.config, self.user = config, user
        self._key = read_key(config, user)
        self._urls = [u.rstrip("/") + path for u in config.base_urls]
        self._next_url = 0
        # Running totals across post() calls: the caps apply to the whole job, not to one batch.
        self.requests_sent = 0
        self.cost = 0.0
        self._warned_no_usage = False
        # One event loop in a worker thread, kept for the client's life: it lets post() be called from code that
        # already runs a loop, and keeps the connections alive between batches.
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._client: Optional[httpx.AsyncClient] = None
        self._sem: Optional[asyncio.Semaphore] = None
        self._stop: Optional[asyncio.Event] = None
        self._starting = threading.Lock()

    def post(self, bodies: Sequence[dict], check: Callable[[Any], Any]) -> tuple[list[Optional[Result]], Optional[str]]:
        """POST each of `bodies`: one Result per body, None where the spending cap stopped it before it was sent,
        and the cap's reason when one did. `check(reply body)` raises ValueError, KeyError, IndexError or TypeError
        on a body the caller cannot read (one that is no JSON object included), which is retried like a 5xx."""
        future = asyncio.run_coroutine_threadsafe(self._post_all(list(bodies), check), self._ensure_loop())
        try:
            results = future.result()
        except BaseException:  # e.g. KeyboardInterrupt: stop the requests rather than leave them running
            future.cancel()
            raise
        stopped = any(r is None for r in results)
        return results, (self._budget_reason() or "spending cap reached") if stopped else None

    def carry_spend(self, before: Spend) -> None:
        """Count on from what the job spent in its earlier runs, so a cap holds per job, not per process."""
        self.requests_sent, self.cost = before.requests, before.cost

    def spent(self) -> Spend:
        return Spend(self.requests_sent, self.cost)

    def scrub(self, text: Optional[str]) -> Optional[str]:
        """`text` with the API key scrubbed (keys.scrub_key), for any text that may reach output."""
        return scrub_key(text, self._key)

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
        with self._starting:  # post() may be called from several threads (the reward server's batches in flight)
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="rlaif-http", daemon=True)
                self._thread.start()
            return self._loop

    def _budget_reason(self) -> Optional[str]:
        c = self.config
        if c.max_requests is not None and self.requests_sent >= c.max_requests:
            return f"request cap reached: {self.requests_sent} requests sent (max_requests={c.max_requests})"
        if c.max_cost is not None and self.cost >= c.max_cost:
            return f"cost cap reached: estimated cost {self.cost:.4f} (max_cost={c.max_cost})"
        return None

    async def _post_all(self, bodies: list[dict], check: Callable[[Any], Any]) -> list[Optional[Result]]:
        if self._client is None:  # created here so that they belong to the worker loop
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.timeout_s),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=self.config.concurrency),
            )
            self._sem = asyncio.Semaphore(self.config.concurrency)
            self._stop = asyncio.Event()
        if self._budget_reason():
            self._stop.set()
        start, self._next_url = self._next_url, self._next_url + len(bodies)
        return list(await asyncio.gather(*(self._request(b, start + i, check) for i, b in enumerate(bodies))))

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
            "%s: %s; retry %d in %.2fs",
            self.user,
            self.scrub(str(state.outcome.exception())),
            state.attempt_number,
            state.next_action.sleep if state.next_action else 0.0,
        )

    async def _request(self, body: dict, start: int, check: Callable[[Any], Any]) -> Optional[Result]:
        """POST `body` with retries; None when the spending cap stopped it before it was sent."""
        c = self.config
        attempts = 0

        async def attempt() -> dict:
            nonlocal attempts
            async with self._sem:
                if self._budget_reason():
                    raise _Exhausted()
                # Each body starts on its own URL (round-robin) and moves to the next one on every retry.
                url = self._urls[(start + attempts) % len(self._urls)]
                attempts += 1
                self.requests_sent += 1
                if self._budget_reason():
                    self._stop.set()
                return await self._post(url, body, check)

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

    async def _post(self, url: str, body: dict, check: Callable[[Any], Any]) -> dict:
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
            check(data)
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise _Retryable(
                f"unreadable response body from {url} ({type(e).__name__}): {_excerpt(resp.text, self._key)}"
            ) from None
        self._account(data)
        return data

    def _account(self, data: dict) -> None:
        c = self.config
        if not isinstance(data.get("usage"), dict):
            if c.max_cost is not None and not self._warned_no_usage:
                self._warned_no_usage = True
                logger.warning("%s: the server reports no token usage, so max_cost cannot be enforced", self.user)
            return
        pt, ct = usage_tokens(data)
        self.cost += pt / 1000 * c.price_per_1k_prompt_tokens + ct / 1000 * c.price_per_1k_completion_tokens
        if self._budget_reason():
            self._stop.set()

    def _key_hint(self) -> str:
        """What a 401/403 means for the key."""
        name = self.config.api_key_env
        if self._key is not None:
            return f"the server refused the API key in ${name}"
        if name:
            return f"no API key was sent: ${name} is not set"
        return "no API key was sent: name the environment variable that holds it in the judge's api_key_env"


class HTTPBacked:
    """A model behind the client (the openai judge, the openai reviser): what it spent towards the caps, and its
    closing, are its client's."""

    client: HTTPClient

    def carry_spend(self, before: Spend) -> None:
        self.client.carry_spend(before)

    def spent(self) -> Spend:
        return self.client.spent()

    def close(self) -> None:
        self.client.close()
