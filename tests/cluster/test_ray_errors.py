"""What a user sees before any Ray work: `import rlaif` and `rlaif --help` import neither Ray nor torch, and Ray
not installed, or no cluster at the address given, is one line that says what to do (exit 2), with nothing written."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.helpers import ROOT
from tests.labeling.jobfiles import job_files, polite_rows, rlaif_label


def test_import_and_help_import_neither_ray_nor_torch():
    """The jobs that can run on Ray import it only once asked to (and torch only with a model)."""
    code = (
        "import sys, rlaif, rlaif.cli, rlaif.labeling.job, rlaif.revision.job, rlaif.jobs.ray\n"
        "from typer.testing import CliRunner\n"
        "assert CliRunner().invoke(rlaif.cli.app, ['label', '--help']).exit_code == 0\n"
        "print(sorted(m for m in ('ray', 'torch') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_ray_not_installed_is_one_line(tmp_path):
    files = job_files(tmp_path, polite_rows(3))
    code = (
        "import sys; sys.modules['ray'] = None  # as if Ray were not installed\n"
        "from rlaif.cli import main; sys.argv = ['rlaif'] + sys.argv[1:]; main()"
    )
    args = [
        "label",
        "--pairs",
        str(files["pairs"]),
        "--constitution",
        str(files["constitution"]),
        "--judge",
        str(files["judge"]),
        "--out",
        str(files["out"]),
        "--ray",
    ]
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --ray needs Ray, which is not installed here: pip install 'rlaif[ray]' (or run without --ray)"
    ]
    assert not files["out"].exists()


def test_no_cluster_at_the_address_is_one_line(tmp_path):
    files = job_files(tmp_path, polite_rows(3))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = rlaif_label(files, "--ray", "--ray-address", f"127.0.0.1:{port}", timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: no Ray cluster at 127.0.0.1:{port}"), done.stderr
    assert "ray start --head" in lines[0] and not files["out"].exists()


def test_ray_options_without_ray_are_refused(tmp_path):
    files = job_files(tmp_path, polite_rows(3))
    done = rlaif_label(files, "--workers", "2")
    assert done.returncode == 2 and done.stderr.strip() == "error: --ray-address and --workers go with --ray"
