"""verl custom reward function that asks a running `rlaif serve reward` for the judge's reward.

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info)` once per response (its
`custom_reward_function.path` / `.name` config keys point here; see examples/verl/README.md). verl hands over the
response text only, so the prompt must travel in the dataset's `extra_info` (as `prompt`: text or chat messages,
or as `question`, the field some of verl's own preprocessing scripts write; examples/verl/preprocess_hh.py writes
`prompt`). The reference response for mode reference is `extra_info["reference"]`, else `ground_truth` (verl's
`reward_model.ground_truth` column); a server in mode group ignores it. A field that is present but None counts as
missing: a parquet file whose rows carry different `extra_info` fields gets every field in every row (Arrow
unifies the struct), the absent ones as None.

Settings come from verl's `custom_reward_function.reward_kwargs` (passed here as keyword arguments) or from the
environment: RLAIF_REWARD_URL (default http://127.0.0.1:8000/get_reward) and RLAIF_REWARD_TIMEOUT (seconds).
Needs only httpx.
"""

from __future__ import annotations

import os

import httpx

DEFAULT_URL = "http://127.0.0.1:8000/get_reward"


def _first_set(extra, *keys):
    """The value of the first of `keys` that is set (not missing, not None), as plain Python (a pandas-read row
    holds numpy arrays, which JSON cannot carry)."""
    value = next((extra[k] for k in keys if extra.get(k) is not None), None)
    return value.tolist() if hasattr(value, "tolist") else value


def compute_score(data_source, solution_str, ground_truth, extra_info=None, url=None, timeout=None, **kwargs):
    """The judge's reward for `solution_str`, in [-1, 1]: 2·P(response ≻ reference) − 1 in mode reference."""
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
    reply = httpx.post(
        url or os.environ.get("RLAIF_REWARD_URL", DEFAULT_URL),
        json=body,
        timeout=float(timeout or os.environ.get("RLAIF_REWARD_TIMEOUT", 300)),
    )
    if reply.status_code == 422:  # the server says what is wrong with the request; no use retrying it
        raise ValueError(f"rlaif reward: {reply.json().get('detail')}")
    reply.raise_for_status()
    return float(reply.json()["rewards"][0])
