"""What rlaif's two HTTP servers share: the annotation app (rlaif.human.server) and `rlaif serve reward`
(rlaif.rewards.server), both on the `human` extra's fastapi and uvicorn. It sits below both, so that neither
server's package imports the other's. The listening sockets are bound before any work, so a taken port or an unknown
host is one line and exit 2, and `--port 0` can announce the port it got; uvicorn serves the app on them; a body
over the cap gets 413 before the app reads it; a refusal is one plain line. Importing this module imports neither
fastapi nor uvicorn.
"""

from __future__ import annotations

import contextlib
import errno
import json
import re
import socket
from typing import Callable, Iterator, Optional, Sequence

_BIND_PROBLEMS = {
    errno.EADDRINUSE: "the port is in use (pick another --port, or --port 0 for a free one)",
    errno.EACCES: "permission denied (a port below 1024 needs privileges: pick a --port above 1023, or 0)",
    errno.EADDRNOTAVAIL: "that address is not one of this machine's (give one of its addresses, or 127.0.0.1)",
}


@contextlib.contextmanager
def listening(host: str, port: int) -> Iterator[list[socket.socket]]:
    """Sockets listening on every address `host` resolves to ("" for every interface), all on one port (port 0:
    a free one), closed on leaving. A ValueError says in one line why they cannot be had. Bound here rather than
    by uvicorn, which logs a failed bind and exits 3 (rlaif's spending-cap code) and never says which port 0
    became."""
    where = f"{_bracketed(host) or '*'}:{port}"
    try:
        found = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ValueError(f"cannot listen on {where}: the host does not resolve ({reason})") from None
    sockets: list[socket.socket] = []
    skipped: Optional[OSError] = None
    for family, kind, proto, _, address in dict.fromkeys(found):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart can take its port back at once
            if family == socket.AF_INET6:  # "::" and "0.0.0.0" of one "" each get their own socket, as in asyncio
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if sockets:  # port 0: the first socket's free port, so every address answers on the one announced
                address = (address[0], port_of(sockets), *address[2:])
            sock.bind(address)
            sock.listen(2048)
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRNOTAVAIL:  # a family switched off here (::1 of "localhost" without IPv6)
                skipped = e
                continue
            for bound in sockets:
                bound.close()
            raise ValueError(_bind_problem(where, e)) from None
        sockets.append(sock)
    if not sockets:
        raise ValueError(_bind_problem(where, skipped))
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _bind_problem(where: str, e: Optional[OSError]) -> str:
    reason = _BIND_PROBLEMS.get(e.errno, e.strerror or str(e)) if e is not None else "no address to bind"
    return f"cannot listen on {where}: {reason}"


def port_of(sockets: Sequence[socket.socket]) -> int:
    """The port the sockets listen on (the real one after --port 0)."""
    return sockets[0].getsockname()[1]


def url(host: str, sockets: Sequence[socket.socket], path: str = "/") -> str:
    """Where a client on this machine reaches the server (for the startup line)."""
    return f"http://{_bracketed(host) or '0.0.0.0'}:{port_of(sockets)}{path}"


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def run(app, sockets: Sequence[socket.socket]) -> None:
    """Serve the ASGI `app` on `sockets` until stopped (Ctrl-C or SIGTERM; requests in flight finish first)."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    try:
        server.run(sockets=sockets)
    except SystemExit:  # uvicorn exits 3 when the app's startup fails; 3 is rlaif's spending-cap code
        raise RuntimeError("the server stopped while starting (the lines above say why)") from None


@contextlib.contextmanager
def in_background(app, sockets: Sequence[socket.socket], name: str = "server") -> Iterator[None]:
    """Serve the ASGI `app` on `sockets` from a thread while the block runs (`rlaif loop` serving its annotation
    app); on leaving, it stops the way Ctrl-C stops `run`, requests in flight finishing first."""
    import threading
    import time

    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    # uvicorn installs no signal handlers outside the main thread: the owner's Ctrl-C stays the owner's
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, name=name, daemon=True)
    thread.start()
    try:
        while not server.started and thread.is_alive():
            time.sleep(0.01)
        if not server.started:
            raise RuntimeError(f"the {name} stopped while starting (the lines above say why)")
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# ---------------------------------------------------------------------------------------------- refusals


def refusal_line(scope: dict, status: int, detail: str) -> str:
    """A refused request as the server logs it: clients may show only the status (OpenRLHF does, then retries)."""
    client = "{}:{}".format(*scope["client"]) if scope.get("client") else "?"
    return f"{status} for {scope.get('method')} {scope.get('path')} from {client}: {detail}"


async def reply(send, status: int, detail: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A JSON reply {"detail": DETAIL} straight on the ASGI `send`, for middleware that answers before the app."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


_SHOULD = re.compile(r"^(Input|String|List|Value|Dictionary|Object) should\b")
_JSON_OBJECT = {"dict_type", "model_type", "model_attributes_type"}


def validation_line(errors: Sequence[dict]) -> str:
    """FastAPI's request validation errors (pydantic's list of loc, msg, type, input) as one plain line naming the
    first field at fault, e.g. "query[3]: must be a valid string"; never the input itself. The alternatives of a
    union share the field's line: "prompts[0]: must be a valid string or a valid list"."""
    if not errors:
        return "the request is not valid"
    first = errors[0]
    if first.get("type") == "json_invalid":
        at = first["loc"][-1] if len(first.get("loc", ())) > 1 else None
        why = (first.get("ctx") or {}).get("error") or "not JSON"
        return f"the request body is not valid JSON ({why}{f' at character {at}' if at is not None else ''})"
    located = [(_field(e.get("loc", ()), stop_at_union=True), _field(e.get("loc", ())), _plain(e)) for e in errors]
    field = located[0][0]
    here = list(dict.fromkeys(said for at, full, said in located if at == field and full == field))
    deeper = list(dict.fromkeys(f"{full} {said}" for at, full, said in located if at == field and full != field))
    said = " or ".join(here[:1] + [s.removeprefix("must be ") for s in here[1:]])
    said = ", or ".join(([said] if said else []) + deeper)
    line = f"{field}: {said}" if field else f"the request body {said}"
    others = len({at for at, _, _ in located}) - 1
    return line + (f" (and {others} more field{'s' if others > 1 else ''} at fault)" if others else "")


def _field(loc: Sequence, stop_at_union: bool = False) -> str:
    """pydantic's location as a field path: ("body", "query", 3) -> "query[3]". A name right after an index is
    a union member's tag (list items in these requests are never objects): left out, or the path ends there."""
    parts, after_index = [], False
    for part in loc[1:] if loc and loc[0] in ("body", "query", "path", "header", "cookie") else loc:
        if after_index and not isinstance(part, int):
            if stop_at_union:
                break
        elif isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(f".{part}" if parts else str(part))
        after_index = isinstance(part, int)
    return "".join(parts)


def _plain(error: dict) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind in _JSON_OBJECT:
        return "must be a JSON object"
    msg = _SHOULD.sub("must", str(error.get("msg", "is not valid")))
    return msg[:1].lower() + msg[1:]


# ---------------------------------------------------------------------------------------------- body cap


class BodyLimit:
    """ASGI middleware: a request whose body is over `max_bytes` gets 413 before the app sees it. A declared
    Content-Length over the cap is refused without reading a byte; a chunked body is counted as it arrives, so
    at most the cap (and one chunk) is ever held. `hint` ends the 413 line; `log` gets each refusal."""

    def __init__(self, app, max_bytes: int, hint: str = "", log: Optional[Callable[[str], None]] = None):
        self.app, self.max_bytes, self.hint, self.log = app, max_bytes, hint, log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        body = None if declared.isdigit() and int(declared) > self.max_bytes else await self._read(receive)
        if body is None:
            detail = f"the request body is over {_size(self.max_bytes)}{self.hint}"
            if self.log is not None:
                self.log(refusal_line(scope, 413, detail))
            return await reply(send, 413, detail)
        if body is not _GONE:
            await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive):
        """The whole body; None once it is over the cap; _GONE when the client left before sending it all."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return _GONE
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


_GONE = object()


def _replay(body: bytes, receive):
    sent = False

    async def replayed():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _size(n: int) -> str:
    return f"{n / 2**20:g} MB" if n >= 2**20 else f"{n} bytes"
