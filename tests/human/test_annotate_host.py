"""`rlaif annotate serve --host`: the app speaks plain HTTP, so listening beyond loopback is refused (exit 2, before
anything is written) unless --allow-remote says so; the refusal says why and that TLS belongs in front."""

from __future__ import annotations

import pytest

from tests.helpers import run_cli
from tests.human.test_human_server import AnnotateServer, write_pairs

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "annotate.example.org"])
def test_a_host_beyond_loopback_is_refused_without_allow_remote(tmp_path, host):
    write_pairs(tmp_path / "pairs.jsonl", 2)
    db = tmp_path / "labels.sqlite"
    done = run_cli("annotate", "serve", "--pairs", tmp_path / "pairs.jsonl", "--db", db, "--host", host,
                   "--port", "0", timeout=60)
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
