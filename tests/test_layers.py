"""The shape of the package: the layer contract in pyproject.toml holds (each stage imports only from its own
layer or below, lazy imports included), no module takes part in an import cycle, and the contract really fails
when an import runs back up."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytest.importorskip("importlinter", reason="the layer contract needs import-linter (the dev extra)")


def lint_imports(root) -> subprocess.CompletedProcess:
    """import-linter on the package found under `root`, with the contract of this repository's pyproject.toml."""
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_stage_imports_only_from_its_own_layer_or_below():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_no_module_takes_part_in_an_import_cycle():
    import grimp
    import networkx as nx

    graph = grimp.build_graph("rlaif", cache_dir=None)
    edges = nx.DiGraph(
        (m, d) for m in graph.modules for d in graph.find_modules_directly_imported_by(m) if d in graph.modules
    )
    cycles = [sorted(c) for c in nx.strongly_connected_components(edges) if len(c) > 1]
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_contract_fails_on_an_import_that_runs_back_up(tmp_path):
    shutil.copytree(ROOT / "rlaif", tmp_path / "rlaif", ignore=shutil.ignore_patterns("__pycache__"))
    labels = tmp_path / "rlaif" / "data" / "labels.py"
    labels.write_text(labels.read_text() + "\n\ndef _upward():\n    from ..recipes import run_recipe  # noqa\n")
    done = lint_imports(tmp_path)
    assert done.returncode == 1
    assert "rlaif.data is not allowed to import rlaif.recipes" in done.stdout
    assert "rlaif.data.labels -> rlaif.recipes" in done.stdout
