"""The annotation app behind `rlaif annotate serve`: a FastAPI app over the SQLite store, and the static page.
Imported only by that command and by `rlaif loop` with people in it, which serves it from a thread (fastapi and
uvicorn are the `human` extra).

Annotators sign in with a bearer token, fetch one pair at a time with the two responses in their own seeded
left/right order, and post which one answers the principle shown; the label is committed before the 201 goes
back. A pair is leased while someone works on it, so no pair is handed to more people at once than it needs.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
import sqlite3
import sys
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Iterator, Literal, Optional, Union

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from ..config.paths import is_loopback, remote_host_refusal
from ..constitution import load_constitution
from ..serving import BodyLimit, in_background, listening, reply, run, url, validation_line
from .db import AnnotationDB, UnknownPair, error_kind
from .presentation import pair_order_label, served_pairs, shown_order
from .tokens import load_tokens

STATIC = Path(__file__).with_name("static")
MAX_BODY_BYTES = 64 * 1024  # a label is ~100 bytes; anything near this is a mistake or an attack
# The page and its scripts come from this server only; nothing inline runs, so even a rendering mistake cannot
# execute a model output.
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


# ---------------------------------------------------------------------------------------------- assignment


class Leases:
    """Who is working on which pair, until when. One lease per annotator: their current pair. Kept in memory:
    after a restart the unanswered pairs are simply handed out again."""

    def __init__(self, timeout_s: float, clock=time.monotonic):
        self.timeout_s = timeout_s
        self._clock = clock
        self._held: dict[str, tuple[str, float]] = {}  # annotator -> (pair id, expiry)

    def _live(self) -> dict[str, tuple[str, float]]:
        now = self._clock()
        self._held = {a: held for a, held in self._held.items() if held[1] > now}
        return self._held

    def held_by(self, annotator: str) -> Optional[str]:
        held = self._live().get(annotator)
        return held[0] if held else None

    def holders(self, pair_id: str, other_than: str) -> int:
        return sum(1 for a, (pid, _) in self._live().items() if pid == pair_id and a != other_than)

    def count(self) -> int:
        return len(self._live())

    def take(self, pair_id: str, annotator: str) -> None:
        self._held[annotator] = (pair_id, self._clock() + self.timeout_s)

    def release(self, pair_id: str, annotator: str) -> None:
        if self._held.get(annotator, ("",))[0] == pair_id:
            del self._held[annotator]


class Annotation:
    """The app's logic, free of HTTP: which pair an annotator gets next, and recording their answer."""

    def __init__(self, db: AnnotationDB, overlap: int = 1, seed: int = 0, lease_s: float = 600.0):
        if overlap < 1:
            raise ValueError("overlap must be at least 1")
        self.db, self.overlap, self.seed = db, overlap, seed
        self.leases = Leases(lease_s)
        self._lock = threading.Lock()  # choosing a pair and leasing it is one step

    def next_pair(self, annotator: str) -> Optional[dict]:
        with self._lock:
            pair_id = self.leases.held_by(annotator)  # a reload shows the same pair rather than using up another
            if pair_id is None:
                # only pairs leased to others can be passed over, so this many candidates always suffice
                for pid, n_labels in self.db.open_pairs(annotator, self.overlap, limit=self.leases.count() + 1):
                    if n_labels + self.leases.holders(pid, annotator) < self.overlap:
                        pair_id = pid
                        break
                else:
                    return None
            self.leases.take(pair_id, annotator)
        pair = self.db.pair(pair_id)
        left, right = (
            (pair.response_a, pair.response_b)
            if shown_order(self.seed, annotator, pair.id) == "ab"
            else (pair.response_b, pair.response_a)
        )
        return {
            "pair_id": pair.id,
            "prompt": pair.prompt,
            "response_a": left,
            "response_b": right,
            "principle": pair.principle_text,
        }

    def answer(self, annotator: str, pair_id: str, choice: str) -> dict:
        pair = self.db.pair(pair_id)
        if pair is None:
            raise UnknownPair(pair_id)
        order = shown_order(self.seed, annotator, pair_id)
        done = self.db.record(pair_id, annotator, pair_order_label(choice, order, pair.principle_invert), choice, order)
        with self._lock:
            self.leases.release(pair_id, annotator)
        return {
            "pair_id": pair_id,
            "choice": choice,
            "label": done.label,
            "shown_order": order,
            "status": done.status,
            "revision": done.revision,
        }

    def progress(self, annotator: str) -> dict:
        return self.db.progress(annotator, self.overlap)


# ---------------------------------------------------------------------------------------------- HTTP


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pair_id: str = Field(min_length=1, max_length=1024, description="The pair's id, as GET /api/pairs/next gave it.")
    choice: Literal["a", "b", "tie", "skip"] = Field(
        description="The response that answers the principle, in the order shown (a = left), or tie, or skip."
    )


class _Guard:
    """ASGI middleware in front of every route: security headers on every response, and the bearer token on /api
    (checked before the body is even read; the body cap, BodyLimit, comes after it)."""

    def __init__(self, app, tokens: dict[str, str]):
        self.app = app
        self._tokens = [(t.encode(), name) for t, name in tokens.items()]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + _SECURITY_HEADERS}
            await send(message)

        headers = dict(scope["headers"])
        if scope["path"].startswith("/api/"):
            annotator = self._annotator(headers.get(b"authorization", b""))
            if annotator is None:
                return await reply(
                    send_with_headers, 401, "missing or unknown bearer token", [(b"www-authenticate", b"Bearer")]
                )
            scope.setdefault("state", {})["annotator"] = annotator
        await self.app(scope, receive, send_with_headers)

    def _annotator(self, header: bytes) -> Optional[str]:
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            return None
        token = token.strip()
        for known, name in self._tokens:
            if hmac.compare_digest(token, known):  # constant time: the comparison gives no prefix away
                return name
        return None


def create_app(annotation: Annotation, tokens: dict[str, str]):
    """The ASGI app: the page at /, its files under /static, the JSON API under /api (bearer token)."""

    @asynccontextmanager
    async def lifespan(app):
        yield
        # on a clean stop (uvicorn waits for requests in flight first) the WAL is folded into the main file
        annotation.db.close()

    app = FastAPI(title="rlaif annotate", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, e: RequestValidationError):
        return JSONResponse({"detail": validation_line(e.errors())}, status_code=422)

    @app.exception_handler(UnknownPair)
    async def unknown_pair(request: Request, e: UnknownPair):
        return JSONResponse({"detail": f"no pair with id {e.args[0]!r}"}, status_code=404)

    @app.exception_handler(sqlite3.Error)
    async def database_error(request: Request, e: sqlite3.Error):
        # Whatever failed was rolled back; every label acknowledged before stays committed in the file.
        kind = error_kind(e)
        if kind == "locked":
            return JSONResponse(
                {"detail": "the database is locked by another process; nothing was saved, retry shortly"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        what = "the database file is damaged" if kind == "damaged" else "database error"
        print(f"rlaif annotate: {what}: {e}", file=sys.stderr, flush=True)
        return JSONResponse(
            {
                "detail": f"{what} ({e}); nothing was saved. Labels acknowledged before are in the "
                f"file: stop the server and check it"
            },
            status_code=500,
        )

    @app.get("/api/pairs/next")
    def next_pair(request: Request):
        pair = annotation.next_pair(request.state.annotator)
        return Response(status_code=204) if pair is None else pair

    @app.post("/api/labels", status_code=201)
    def post_label(body: LabelIn, request: Request, response: Response):
        result = annotation.answer(request.state.annotator, body.pair_id, body.choice)
        if result["status"] != "created":
            response.status_code = 200  # nothing new was created: a repeat, or a revision of an earlier label
        return result

    @app.get("/api/progress")
    def progress(request: Request):
        return annotation.progress(request.state.annotator)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return _Guard(app, tokens)


# ---------------------------------------------------------------------------------------------- entry point


def serve(
    pairs: Union[str, Path],
    db_path: Union[str, Path],
    constitution: Optional[Union[str, Path]] = None,
    seed: int = 0,
    host: str = "127.0.0.1",
    port: int = 8000,
    tokens_file: Optional[Union[str, Path]] = None,
    overlap: int = 1,
    lease_s: float = 600.0,
    skip_invalid: bool = False,
    allow_remote: bool = False,
) -> None:
    """Load the pairs into the database (idempotent) and serve the app until stopped. The app speaks plain HTTP,
    so listening beyond loopback (tokens and labels in clear on the network) needs `allow_remote`."""
    if overlap < 1:
        raise ValueError("--overlap must be at least 1")
    remote = not is_loopback(host)
    refusal = remote_host_refusal(
        host, "the annotation app", "with annotators' tokens and labels unencrypted", allow_remote
    )
    if refusal:  # refused before anything is written
        raise ValueError(refusal)
    tokens = load_tokens(tokens_file) if tokens_file else None
    const = load_constitution(constitution) if constitution else None
    # a taken port or an unknown host is refused before anything is written
    with listening(host, port) as sockets, contextlib.closing(AnnotationDB(db_path)) as db:
        invalid: Optional[list[str]] = [] if skip_invalid else None
        total, added = db.load_pairs(
            served_pairs(pairs, const, seed, invalid),
            {"seed": str(seed), "constitution_sha256": const.sha256 if const else None},
        )
        for line in invalid or []:
            _log(f"skipped {line}")
        tokens = tokens or _one_annotator()
        app = create_app(Annotation(db, overlap=overlap, seed=seed, lease_s=lease_s), tokens)
        _log(
            f"{total} pairs in {db_path} ({added} new), {len(tokens)} annotator(s), {overlap} label(s) per pair; "
            f"open {url(host, sockets)}"
        )
        if remote:
            _log(
                f"warning: listening on {host} (--allow-remote): tokens and labels travel unencrypted unless a "
                f"reverse proxy adds TLS in front"
            )
        run(app, sockets)


@contextlib.contextmanager
def served_in_background(
    db_path: Union[str, Path], seed: int, port: int = 0, tokens_file: Optional[Union[str, Path]] = None
) -> Iterator[str]:
    """The app on loopback, served from a thread while the block runs, over the database `db_path`, whose pairs
    its owner adds as it goes (`rlaif loop`, each iteration's queue); yields the address to open."""
    host = "127.0.0.1"
    tokens = load_tokens(tokens_file) if tokens_file else None
    with listening(host, port) as sockets, contextlib.closing(AnnotationDB(db_path)) as db:
        tokens = tokens or _one_annotator("no feedback.annotate.tokens")
        app = create_app(Annotation(db, seed=seed), tokens)
        _log(f"serving the pairs of {db_path} to {len(tokens)} annotator(s): open {url(host, sockets)}")
        with in_background(app, sockets, name="annotation app"):
            yield url(host, sockets)


def _one_annotator(why: str = "no --tokens file") -> dict[str, str]:
    """With no tokens file: one annotator, whose fresh token is printed (the only place it can be read)."""
    token = secrets.token_urlsafe(16)
    _log(f"{why}: sign in as 'annotator' with the token {token}")
    return {token: "annotator"}


def _log(line: str) -> None:
    print(f"rlaif annotate: {line}", file=sys.stderr, flush=True)
