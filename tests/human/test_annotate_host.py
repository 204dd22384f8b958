"""`rlaif annotate serve --host/--port`: the app speaks plain HTTP, so listening beyond loopback is refused (exit 2,
before anything is written) unless --allow-remote says so; the refusal says why and that TLS belongs in front. A
taken port or an address that cannot be had is exit 2 in one line too (never 3, the spending-cap code), and
--port 0 announces the port it got."""

from __future__ import annotations

import re
import socket
import subprocess
import time

import pytest

from tests.helpers import ROOT, rlaif_command, run_cli
from tests.human.test_human_server import ENV, TOKENS, AnnotateServer, httpx, write_pairs

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "annotate.example.org"])
def test_a_host_beyond_loopback_is_refused_without_allow_remote(tmp_path, host):
    write_pairs(tmp_path / "pairs.jsonl", 2)
    db = tmp_path / "labels.sqlite"
    done = run_cli(
        "annotate", "serve", "--pairs", tmp_path / "pairs.jsonl", "--db", db, "--host", host, "--port", "0", timeout=60
    )
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: --host {host} would serve the annotation app beyond this machine over plain HTTP")
    assert "--allow-remote" in line and "reverse proxy that adds TLS" in line
    assert not db.exists()


def test_allow_remote_serves_and_warns(tmp_path):
    write_pairs(tmp_path / "pairs.jsonl", 2)
    with AnnotateServer(tmp_path, tmp_path / "pairs.jsonl", "--host", "0.0.0.0", "--allow-remote") as server:
        with server.client("alice") as alice:
            assert alice.get("/api/progress").status_code == 200  # 0.0.0.0 answers on loopback too
    log = server.log.read_text()
    assert "warning: listening on 0.0.0.0 (--allow-remote)" in log and "TLS" in log


def test_a_taken_port_or_an_address_it_cannot_have_exits_2_before_anything_is_written(tmp_path):
    write_pairs(tmp_path / "pairs.jsonl", 2)
    db = tmp_path / "labels.sqlite"

    def serve(*args):
        return run_cli("annotate", "serve", "--pairs", tmp_path / "pairs.jsonl", "--db", db, *args, timeout=60)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = serve("--port", port)
    assert done.returncode == 2 and done.stderr.splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: the port is in use (pick another --port, or --port 0 for a free "
        "one)"
    ]
    for host, why in [
        ("no-such-host.invalid", "the host does not resolve"),
        ("192.0.2.7", "that address is not one of this machine's"),
    ]:  # TEST-NET-1: never local
        done = serve("--host", host, "--allow-remote", "--port", "8000")
        (line,) = done.stderr.splitlines()
        assert done.returncode == 2 and line.startswith(f"error: cannot listen on {host}:8000: {why}"), done.stderr
    assert not db.exists()


def test_port_0_announces_the_port_it_got(tmp_path):
    write_pairs(tmp_path / "pairs.jsonl", 2)
    (tmp_path / "tokens.txt").write_text(f"alice:{TOKENS['alice']}\n")
    log = tmp_path / "server.log"
    cmd = rlaif_command(
        "annotate",
        "serve",
        "--pairs",
        tmp_path / "pairs.jsonl",
        "--db",
        tmp_path / "l.sqlite",
        "--tokens",
        tmp_path / "tokens.txt",
        "--port",
        "0",
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while not (announced := re.search(r"open http://127\.0\.0\.1:(\d+)/", log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        port = int(announced.group(1))
        assert port != 0
        reply = httpx.get(
            f"http://127.0.0.1:{port}/api/progress", timeout=10, headers={"Authorization": f"Bearer {TOKENS['alice']}"}
        )
        assert reply.status_code == 200 and reply.json()["done"] == 0
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_an_app_that_fails_to_start_is_no_exit_3():
    """uvicorn exits 3 when the app's startup fails; the shared runner makes it an error line (exit 2) instead."""
    from rlaif.serving import listening, run

    async def failing(scope, receive, send):
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "cannot open the store"})

    with listening("127.0.0.1", 0) as sockets, pytest.raises(RuntimeError, match="stopped while starting"):
        run(failing, sockets)
