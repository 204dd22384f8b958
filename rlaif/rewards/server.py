"""`rlaif serve reward` (over 400 lines because it is one idea: the reward endpoint, in-process or on Ray Serve).

The judge as an HTTP reward endpoint for RL engines that run elsewhere (OpenRLHF's
remote reward model, verl through a custom reward function). Imported only by that command (fastapi and uvicorn
are the `human` extra); the rewards themselves come from `rlaif.rewards.JudgeReward`.

The wire shape follows OpenRLHF's remote reward model (`--reward.remote_url`), as read in OpenRLHF/OpenRLHF
v0.11.0 (commit 3c3be623), `openrlhf/utils/agent.py`: SingleTurnAgentExecutor.execute and
_fetch_rewards_via_http. It POSTs `{"query": [prompt+response text, decoded with special tokens], "prompts":
[prompt text], "labels": [the --data.label_key column, or "" without one]}`, one query per request, and reads
`rewards`, `scores` (0-1, for dynamic filtering) and `extra_logs` (per-sample lists, logged); on any error it logs
only the status and retries, so this server logs every refusal with its reason. Beyond that shape it accepts
`responses` (nothing to split: queries.py) and `references` (mode reference). Concurrent requests are judged
together in batches (batcher.py); `group` mode needs a prompt's responses in one request.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..config.judge import OpenAIJudgeConfig, load_judge_config
from ..config.paths import remote_host_refusal
from ..config.sampling import SamplingConfig
from ..numbers import positive_problem
from ..serving import BodyLimit, listening, refusal_line, run, url, validation_line
from .batcher import Batcher, BatchLimits, ClientGone, QueueFull
from .judge_reward import JudgeReward, judge_reward, prompt_key, reward_refusal
from .queries import RequestError, Splitter, chatml_messages


class RewardRequest(BaseModel):
    """A batch to reward. OpenRLHF sends query/prompts/labels; fields other engines add are ignored."""

    model_config = ConfigDict(extra="ignore")

    query: Optional[list[str]] = Field(None, description="Prompt + response texts (OpenRLHF's 'query').")
    prompts: Optional[list[Union[str, list[dict[str, Any]]]]] = Field(
        None, description="The prompt of each query (text, or chat messages when `responses` is sent)."
    )
    responses: Optional[list[str]] = Field(
        None, description="Response texts, instead of `query`: nothing needs splitting."
    )
    labels: Optional[list[Any]] = Field(
        None,
        description="OpenRLHF's --data.label_key column ('' without one); "
        "used as reference responses only with --labels-as-references.",
    )
    references: Optional[list[Optional[str]]] = Field(
        None, description="Reference responses (mode reference); null items come from the reference model."
    )


# ---------------------------------------------------------------------------------------------- references


class ReferenceSampler:
    """One response per prompt from a reference policy (rlaif.policy.sampling.sample), cached per prompt so a
    prompt's reference is sampled once and every response to it is judged against the same one."""

    def __init__(
        self, path: str, max_new_tokens: int = 256, temperature: float = 0.0, seed: int = 0, cache_size: int = 100_000
    ):
        # lazy: torch
        from ..policy.sampling import load_policy

        try:
            self.model, self.tokenizer = load_policy(str(path))
        except OSError as e:  # transformers' word for a missing or unreadable model
            raise ValueError(f"--reference-model {path}: cannot load a causal LM and its tokenizer: {e}") from e
        self.config = SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens, backend="transformers")
        self.seed, self.cache_size = seed, cache_size
        self.cache: OrderedDict[str, str] = OrderedDict()
        self.sampled = 0
        self._lock = threading.Lock()

    def references(self, prompts: Sequence) -> list[str]:
        # lazy: torch
        from ..policy.sampling import sample

        with self._lock:
            missing = list({prompt_key(p): p for p in prompts if prompt_key(p) not in self.cache}.values())
            if missing:
                for p, row in zip(missing, sample(self.model, self.tokenizer, missing, 1, self.config, seed=self.seed)):
                    self.cache[prompt_key(p)] = row[0].text
                self.sampled += len(missing)
            out = []
            for p in prompts:
                self.cache.move_to_end(prompt_key(p))
                out.append(self.cache[prompt_key(p)])
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)
            return out


# ---------------------------------------------------------------------------------------------- the service


@dataclass
class Prepared:
    """A request's items as the judge takes them: prompts, responses, and references in mode reference."""

    prompts: list
    responses: list[str]
    refs: Optional[list[str]] = None

    def __len__(self) -> int:
        return len(self.responses)


def batches_in_flight(config, limits: BatchLimits = BatchLimits()) -> int:
    """How many batches a judge may have judged at once: an HTTP judge's `concurrency` (its client holds that many
    calls in flight across batches), one for a local backend, which holds one model in memory; fewer when
    `limits.max_in_flight` says so."""
    most = config.concurrency if isinstance(config, OpenAIJudgeConfig) else 1
    return most if limits.max_in_flight is None else min(most, limits.max_in_flight)


@dataclass
class RewardService:
    """Request → (prompt, response, reference) per item → JudgeReward.rewards → OpenRLHF's reply shape."""

    reward: JudgeReward
    splitter: Splitter = field(default_factory=Splitter)
    sampler: Optional[ReferenceSampler] = None
    labels_as_references: bool = False
    requests: int = field(default=0, init=False)
    warned_group: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)  # the counters
    _judging: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def items(self, req: RewardRequest) -> tuple[list, list[str]]:
        if (req.query is None) == (req.responses is None):
            raise RequestError("send one of `query` (prompt + response texts) or `responses` (with `prompts`)")
        n = len(req.query if req.query is not None else req.responses)
        for name in ("prompts", "labels", "references"):
            got = getattr(req, name)
            if got is not None and len(got) != n:
                raise RequestError(f"{len(got)} {name} for {n} {'queries' if req.query is not None else 'responses'}")
        if req.responses is not None:
            if req.prompts is None:
                raise RequestError("`responses` needs `prompts`")
            prompts = [(chatml_messages(p) or p) if isinstance(p, str) else p for p in req.prompts]
            return prompts, [self.splitter.response(r) for r in req.responses]
        given = req.prompts if req.prompts is not None else [None] * n
        split = [self.splitter.split(i, q, p) for i, (q, p) in enumerate(zip(req.query, given))]
        return [p for p, _ in split], [r for _, r in split]

    def references(self, req: RewardRequest, prompts: list) -> list[str]:
        refs: list[Optional[str]] = list(req.references) if req.references is not None else [None] * len(prompts)
        if self.labels_as_references and req.labels is not None:
            refs = [
                r if r is not None else (lab if isinstance(lab, str) and lab else None)
                for r, lab in zip(refs, req.labels)
            ]
        missing = [i for i, r in enumerate(refs) if r is None]
        if missing and self.sampler is None:
            raise RequestError(
                f"query {missing[0]} has no reference response (mode reference): {self._reference_fix(req.labels)}"
            )
        if missing:
            for i, r in zip(missing, self.sampler.references([prompts[i] for i in missing])):
                refs[i] = r
        return refs  # type: ignore[return-value]

    def _reference_fix(self, labels: Optional[list]) -> str:
        """How to give this server references, in the words of the client that sent `labels`."""
        fix = "send `references`, or start the server with --reference-model or --labels-as-references"
        if labels and all(label == "" for label in labels):  # OpenRLHF's labels without --data.label_key
            return (
                f'OpenRLHF sends labels [""] when started without --data.label_key: start it with '
                f"--data.label_key COLUMN (a dataset column of reference responses) and this server with "
                f"--labels-as-references, or start this server with --reference-model; or {fix}"
            )
        if labels and not self.labels_as_references:
            return f"the `labels` sent are used as references only with --labels-as-references; or {fix}"
        return fix

    def prepare(self, req: RewardRequest) -> "Prepared":
        """A request's items, ready to judge: split, and in mode reference with their references (a sampled one
        is taken per request, before the request waits for a batch). RequestError for a request that cannot be."""
        prompts, responses = self.items(req)
        refs = self.references(req, prompts) if self.reward.mode == "reference" else None
        if (
            self.reward.mode == "group"
            and not self.warned_group
            and prompts
            and len({prompt_key(p) for p in prompts}) == len(prompts)
        ):
            self.warned_group = True
            _log(
                "warning: mode group got a request with one response per prompt; those rewards are 0. Send a "
                "prompt's responses in one request, or use mode reference"
            )
        return Prepared(prompts, responses, refs)

    def judge(self, batch: Sequence["Prepared"]) -> list[dict]:
        """Requests judged together in one JudgeReward.rewards call, each answered with its own slice. In mode group
        each request is a call of its own: a tournament is among one request's responses, never regrouped with
        another request's answers to the same prompt. Callers serialise this where the backend needs it."""
        if self.reward.mode == "group":
            batches = [self.reward.rewards(p.prompts, p.responses) for p in batch]
            rewards = [r for b in batches for r in b.rewards]
            failed = [f for b in batches for f in b.failed]
        else:
            joined = self.reward.rewards(
                [x for p in batch for x in p.prompts],
                [x for p in batch for x in p.responses],
                [x for p in batch for x in p.refs] if self.reward.mode == "reference" else None,
            )
            rewards, failed = joined.rewards, joined.failed
        with self._lock:
            self.requests += len(batch)
        out, start = [], 0
        for p in batch:
            mine, mine_failed = rewards[start : start + len(p)], failed[start : start + len(p)]
            start += len(p)
            out.append(
                {
                    "rewards": mine,
                    "scores": [(r + 1.0) / 2.0 for r in mine],  # P(better than the baseline), in [0, 1]
                    "extra_logs": {"rlaif_judge_failed": [float(f > 0) for f in mine_failed]},
                }
            )
        return out

    def rewards(self, req: RewardRequest) -> dict:
        """One request judged alone, one at a time (the HTTP server batches requests instead: create_app)."""
        prepared = self.prepare(req)
        with self._judging:  # one judge call at a time: a local backend holds one model
            return self.judge([prepared])[0]

    def health(self) -> dict:
        r = self.reward
        return {
            "status": "ok",
            "mode": r.mode,
            "judge": r.judge.info.model,
            "backend": r.judge.info.backend,
            "constitution": r.constitution.name if r.constitution is not None else None,
            "requests": self.requests,
            "judged_pairs": r.judged,
            "failed": r.failed,
            "reference_model": self.sampler is not None,
            "references_sampled": self.sampler.sampled if self.sampler is not None else 0,
        }


def create_app(
    service: RewardService, max_body_mb: float = 16.0, limits: BatchLimits = BatchLimits(), batcher=None
) -> FastAPI:
    """POST /get_reward (OpenRLHF's path for a remote reward model) and GET /health; a body over `max_body_mb`
    gets 413 before it is read to the end. Concurrent requests are judged together in batches: by `batcher` (its
    `submit` and `figures`: a Ray Serve replica's), by default a Batcher within `limits`."""
    app = FastAPI(title="rlaif reward", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(
        BodyLimit,
        max_bytes=int(max_body_mb * 2**20),
        log=_log,
        hint=f" (--max-body-mb {max_body_mb:g}): send fewer queries per request, or start the "
        f"server with a larger --max-body-mb",
    )
    batcher = batcher or Batcher(service.judge, limits, batches_in_flight(service.reward.judge.config, limits), _log)

    # Every refusal is logged with its reason: a client may show only the status (OpenRLHF does, then retries).
    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, e: RequestValidationError):
        return _refuse(request, 422, f"malformed request: {validation_line(e.errors())}")

    @app.exception_handler(RequestError)
    async def unusable(request: Request, e: RequestError):
        return _refuse(request, 422, str(e))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):  # e.g. 404 for a wrong path, 405 for GET
        hint = " (the endpoints are POST /get_reward and GET /health)" if e.status_code in (404, 405) else ""
        return _refuse(request, e.status_code, f"{e.detail}{hint}", getattr(e, "headers", None))

    @app.get("/health")
    async def health():  # on the event loop, where the batcher's figures change
        return {**service.health(), **batcher.figures()}

    @app.post("/get_reward")
    async def get_reward(body: RewardRequest, request: Request):
        try:
            # splitting is quick, on the event loop; sampling a reference is a model call, in a thread
            if service.sampler is None:
                prepared = service.prepare(body)
            else:
                prepared = await run_in_threadpool(service.prepare, body)
            return await batcher.submit(prepared, len(prepared), request.is_disconnected)
        except RequestError:
            raise
        except ValueError as e:  # what JudgeReward refuses (e.g. a malformed prompt) is the request's fault
            raise RequestError(str(e)) from None
        except QueueFull as e:  # OpenRLHF retries on any error; Retry-After tells other clients when
            return _refuse(request, 503, str(e), {"Retry-After": "1"})
        except ClientGone:
            return JSONResponse({"detail": "the client left before its batch was judged"}, status_code=499)

    return app


def _refuse(request: Request, status: int, detail: str, headers: Optional[dict] = None) -> JSONResponse:
    _log(refusal_line(request.scope, status, detail))
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


# ---------------------------------------------------------------------------------------------- entry point


def build_service(
    judge,
    constitution=None,
    mode: Optional[str] = None,
    reference_model: Optional[str] = None,
    separator: Optional[str] = None,
    labels_as_references: bool = False,
    reference_max_new_tokens: int = 256,
    reference_temperature: float = 0.0,
    seed: int = 0,
) -> RewardService:
    """A service from a judge (a YAML path, or its config read already) and a constitution YAML path, optionally
    with a reference model."""

    reward = judge_reward(judge, constitution, mode=mode, seed=seed)  # None: score for a score judge, else reference
    if reference_model and reward.mode != "reference":
        raise ValueError("--reference-model is used in mode reference only")
    sampler = (
        ReferenceSampler(reference_model, reference_max_new_tokens, reference_temperature, seed)
        if reference_model
        else None
    )
    splitter = Splitter.create(separator, sampler.tokenizer if sampler is not None else None)
    return RewardService(reward, splitter, sampler, labels_as_references)


def serve(
    judge,
    constitution=None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    allow_remote: bool = False,
    max_body_mb: float = 16.0,
    limits: BatchLimits = BatchLimits(),
    **kwargs,
) -> None:
    """Build the service and serve it until stopped, batching concurrent requests within `limits`. Beyond
    loopback (anyone who reaches it can spend the judge, over plain HTTP) it needs `allow_remote`."""
    config = checked_config(judge, host, allow_remote, max_body_mb, kwargs.get("mode"), limits)
    with listening(host, port) as sockets:  # a taken port is named before the model loads
        service = build_service(config, constitution, **kwargs)
        where = url(host, sockets, "/get_reward")
        batching = f", batches of up to {limits.max_batch_size} queries, {batches_in_flight(config, limits)} in flight"
        announce(service.health(), where, host if allow_remote else None, service.labels_as_references, batching)
        run(create_app(service, max_body_mb, limits), sockets)


def checked_config(judge, host: str, allow_remote: bool, max_body_mb: float, mode: Optional[str], limits: BatchLimits):
    """The judge's config, read once what `rlaif serve reward` refuses before any model loads (in-process or on
    Ray Serve) is checked: a host beyond loopback without `allow_remote`, a body cap or batch limit out of range,
    then a bad judge file, one of the kind the mode does not take (the file named), or more batches in flight
    than the judge takes."""
    refusal = (
        remote_host_refusal(
            host, "the judge as a reward", "where anyone who reaches it can spend the judge", allow_remote
        )
        or positive_problem(max_body_mb, "--max-body-mb")
        or limits.problem()
    )
    if refusal:
        raise ValueError(refusal)
    config = load_judge_config(judge)
    refusal = reward_refusal(config, mode, str(judge))
    most = batches_in_flight(config)
    if refusal is None and (limits.max_in_flight or 0) > most:
        refusal = f"--max-in-flight {limits.max_in_flight}: {judge} judges at most {most} batch" + (
            "es at once (its `concurrency`)" if most > 1 else " at a time"
        )
    if refusal:
        raise ValueError(refusal)
    return config


def announce(health: dict, where: str, remote_host: Optional[str], labels_as_references: bool, scale: str = "") -> None:
    """The startup lines: what serves (from the service's /health) and where, and what a user should know."""
    _log(f"mode {health['mode']}, judge {health['judge']}{scale}; POST {where}")
    if health["mode"] == "reference" and not health["reference_model"] and not labels_as_references:
        _log(
            "note: no --reference-model and no --labels-as-references: each request must send `references` "
            "(examples/verl/rlaif_reward.py does; OpenRLHF does not, and gets 422 until one of them is given)"
        )
    if remote_host is not None:
        _log(f"warning: listening on {remote_host} (--allow-remote): anyone who can reach it can spend the judge")


def _log(line: str) -> None:
    print(f"rlaif serve reward: {line}", file=sys.stderr, flush=True)
