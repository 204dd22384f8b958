"""verl custom reward functions that ask a running `rlaif serve reward` for the judge's reward.

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info)` once per response (its
`custom_reward_function.path` / `.name` config keys point here; see examples/verl/README.md). verl hands over the
response text only, so the prompt must travel in the dataset's `extra_info` (as `prompt`: text or chat messages,
or as `question`, the field some of verl's own preprocessing scripts write; examples/verl/preprocess_hh.py writes
`prompt`). The reference response for mode reference is `extra_info["reference"]`, else `ground_truth` (verl's
`reward_model.ground_truth` column); a server in mode group ignores it. A field that is present but None counts as
missing: a parquet file whose rows carry different `extra_info` fields gets every field in every row (Arrow
unifies the struct), the absent ones as None.

`compute_score_async` is the same reward as a coroutine, for verl's async reward loop: it keeps many requests in
flight, so the server can judge them in batches.

Settings come from verl's `custom_reward_function.reward_kwargs` (passed here as keyword arguments) or from the
environment: RLAIF_REWARD_URL (default http://127.0.0.1:8000/get_reward), RLAIF_REWARD_TIMEOUT (seconds) and, for
the async function, RLAIF_REWARD_MAX_IN_FLIGHT (requests at once per verl worker, default 64). A 503 (the server's
queue is full) is retried after its Retry-After, and a 500, 502 or 504 (a Ray Serve replica that died) or a lost
connection after a backoff, up to 8 tries. Needs only
httpx.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time

import httpx

DEFAULT_URL = "http://127.0.0.1:8000/get_reward"
DEFAULT_IN_FLIGHT = 64
TRIES = 8
# the request never reached the judge, or its answer was lost: a server restarting, a Ray Serve replica replaced
RETRIED_ERRORS = (httpx.NetworkError, httpx.RemoteProtocolError)


def _first_set(extra, *keys):
    """The value of the first of `keys` that is set (not missing, not None), as plain Python (a pandas-read row
    holds numpy arrays, which JSON cannot carry)."""
    value = next((extra[k] for k in keys if extra.get(k) is not None), None)
    return value.tolist() if hasattr(value, "tolist") else value


def _request(solution_str, ground_truth, extra_info, url, timeout) -> tuple[str, dict, float]:
    """The URL, JSON body and timeout of the request that asks for `solution_str`'s reward."""
    extra = extra_info or {}
    prompt = _first_set(extra, "prompt", "question")
    if prompt is None:
        raise ValueError(
            "rlaif reward: put the prompt in the dataset's extra_info as 'prompt' (text or chat "
            "messages) or 'question'; verl passes only the response to compute_score"
        )
    body = {"prompts": [prompt], "responses": [solution_str]}
    reference = _first_set(extra, "reference")
    reference = ground_truth if reference is None else reference
    if isinstance(reference, str) and reference:
        body["references"] = [reference]
    url = url or os.environ.get("RLAIF_REWARD_URL", DEFAULT_URL)
    return url, body, float(timeout or os.environ.get("RLAIF_REWARD_TIMEOUT", 300))


def _retry_wait(tries: int, reply: httpx.Response | None) -> float | None:
    """Seconds to wait before trying again after try number `tries` got `reply` (None: a lost connection), or None
    when that reply stands. A 503's Retry-After says when the server's queue has room; a 500, 502 or 504 (a Ray
    Serve replica that died mid-request, a proxy between) and a lost connection wait 0.5 s, doubling up to 30 s."""
    if tries >= TRIES or (reply is not None and reply.status_code not in (500, 502, 503, 504)):
        return None
    after = reply.headers.get("Retry-After", "") if reply is not None else ""
    return float(after) if after.isdigit() else min(0.5 * 2 ** (tries - 1), 30.0)


def _reward(reply: httpx.Response) -> float:
    if reply.status_code == 422:  # the server says what is wrong with the request; no use retrying it
        raise ValueError(f"rlaif reward: {reply.json().get('detail')}")
    reply.raise_for_status()
    return float(reply.json()["rewards"][0])


def compute_score(data_source, solution_str, ground_truth, extra_info=None, url=None, timeout=None, **kwargs):
    """The judge's reward for `solution_str`, in [-1, 1]: 2·P(response ≻ reference) − 1 in mode reference."""
    url, body, timeout = _request(solution_str, ground_truth, extra_info, url, timeout)
    for tries in itertools.count(1):
        try:
            reply = httpx.post(url, json=body, timeout=timeout)
        except RETRIED_ERRORS:
            if tries == TRIES:
                raise
            reply = None
        wait = _retry_wait(tries, reply)
        if wait is None:
            return _reward(reply)
        time.sleep(wait)


# One client and one bound on requests in flight per event loop: both belong to the loop that first uses them, and
# verl runs one loop per reward worker for the whole run. A client per call would open a connection per call.
_shared: dict = {}


def _session(max_in_flight) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
    loop = asyncio.get_running_loop()
    if _shared.get("loop") is not loop:
        limit = int(max_in_flight or os.environ.get("RLAIF_REWARD_MAX_IN_FLIGHT", DEFAULT_IN_FLIGHT))
        # the semaphore bounds requests; a pool bound would count the wait for a connection against the timeout
        client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None, max_keepalive_connections=limit))
        _shared.update(loop=loop, client=client, slots=asyncio.Semaphore(limit))
    return _shared["client"], _shared["slots"]


# As read in verl-project/verl: verl/trainer/ppo/reward.py at f7802843d7df (`get_custom_reward_fn` keeps a function
# for which `inspect.iscoroutinefunction` holds async, with `reward_kwargs` merged into its keyword arguments) and
# verl/experimental/reward_loop/reward_manager/naive.py at b0705987202c (`run_single` awaits `compute_score(
# data_source=, solution_str=, ground_truth=, extra_info=)` in the worker's event loop, plus `reward_router_address`
# and `reward_model_tokenizer` when verl runs a reward model of its own; a plain function runs in the loop's default
# thread pool instead). reward_loop.py's `compute_score_batch` (at fed1e3d1b487) starts a whole chunk of samples at
# once in each of `reward.num_workers` workers, so the bound on requests in flight is ours to keep.
async def compute_score_async(
    data_source, solution_str, ground_truth, extra_info=None, url=None, timeout=None, max_in_flight=None, **kwargs
):
    """`compute_score` as a coroutine, at most `max_in_flight` requests at once in this event loop (the first call
    in a loop sets the bound)."""
    url, body, timeout = _request(solution_str, ground_truth, extra_info, url, timeout)
    client, slots = _session(max_in_flight)
    # the slot is held through the waits between tries too, so a server that answers 503 gets fewer new requests
    async with slots:
        for tries in itertools.count(1):
            try:
                reply = await client.post(url, json=body, timeout=timeout)
            except RETRIED_ERRORS:
                if tries == TRIES:
                    raise
                reply = None
            wait = _retry_wait(tries, reply)
            if wait is None:
                return _reward(reply)
            await asyncio.sleep(wait)
