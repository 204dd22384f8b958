"""The docs: the field reference page is generated from the config models and must not drift; the site builds with
`mkdocs build --strict` and no network; and every rlaif file path (`rlaif/labeling/job.py`, `labeling/job.py`) and
dotted name (`rlaif.labeling.job.label`) that a docstring, the README or docs/ cites exists, so that a renamed
module cannot leave the docs pointing at nothing."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rlaif.docs import REFERENCE, sync_reference

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rlaif"

# `rlaif.a.b`, `rlaif.a:b` (an import path as a python judge names it); a sentence's closing dot is not part of it
DOTTED = re.compile(r"\brlaif(?:\.\w+)+(?::\w+)?")
# `a/b.py` or `a/b.py:name`, not inside a longer path or a URL
PATH = re.compile(r"(?<![\w./-])(?:[\w-]+/)+[\w-]+\.py(?::\w+)?")

# Paths in other projects that a docstring cites as a source; they are not ours to check.
EXTERNAL = {"openrlhf/utils/agent.py"}

# Stale names in files that issue 18's step 1 rewrites (rlaif/data/jobpass.py, rlaif/cluster/runner.py,
# rlaif/policy/generate.py, rlaif/revision/job.py, ...), left for that rewrite to fix rather than edited beside it.
# Each entry is (the file that cites it, the name). Empty this list once step 1 has landed: an entry that no longer
# fails is itself reported, so the list cannot hide a fixed name or outlive the rewrite.
STALE: set[tuple[str, str]] = set()


def test_field_reference_is_current():
    assert sync_reference(str(ROOT / REFERENCE), check=True), "run: python -m rlaif.docs --sync"


def test_readme_names_the_test_command_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/test" in readme and "scripts/test" in (ROOT / ".ci" / "run").read_text()


def test_site_builds_strict_without_network(tmp_path):
    """The whole site, API pages included, with every warning an error. Proxies that lead nowhere stand in for a
    machine without network: a plugin that fetched anything (fonts, an inventory) would fail the build."""
    assert importlib.util.find_spec("mkdocs") and importlib.util.find_spec("mkdocstrings"), (
        "mkdocs-material and mkdocstrings come with the dev extra: pip install -e '.[dev]'"
    )
    nowhere = "http://127.0.0.1:9"
    env = {
        **os.environ,
        "NO_MKDOCS_2_WARNING": "1",
        "NO_PROXY": "",
        "no_proxy": "",
        **{k: nowhere for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")},
    }
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    api = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    assert "load_constitution" in api and "Load and check a constitution file" in api  # mkdocstrings rendered it
    for page in site.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert "fonts.googleapis.com" not in text and "fonts.gstatic.com" not in text, page


def _texts():
    """(where, text) for every docstring under rlaif/ (module, class, function and attribute docstrings), the
    README and every page of docs/."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                yield path, node.value.value
    yield ROOT / "README.md", (ROOT / "README.md").read_text(encoding="utf-8")
    for path in sorted((ROOT / "docs").rglob("*.md")):
        yield path, path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def package():
    import griffe  # mkdocstrings' reader: it resolves a name statically, without importing torch or running code

    return griffe.load("rlaif", search_paths=[str(ROOT)], resolve_aliases=True, resolve_external=False)


def _resolves(package, dotted: str) -> bool:
    parts = dotted.replace(":", ".").split(".")[1:]
    if not parts:
        return True
    try:
        obj = package[".".join(parts)]
        if getattr(obj, "is_alias", False):
            obj.final_target  # an import of a name that no longer exists raises here
        return True
    except Exception:
        return False


def _path_problem(package, where: Path, cited: str) -> str | None:
    file, _, attr = cited.partition(":")
    if file in EXTERNAL:
        return None
    bases = [ROOT] if file.startswith("rlaif/") else [ROOT, PACKAGE]
    if where.is_relative_to(PACKAGE):
        bases.append(where.parent)  # `calibration/report.py` in a docstring of feedback/
    found = next((base / file for base in bases if (base / file).is_file()), None)
    if found is None:
        return "no such file"
    if attr and found.is_relative_to(PACKAGE):
        module = ".".join(found.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if not _resolves(package, f"{module}.{attr}"):
            return f"{module} has no {attr}"
    return None


def test_every_cited_module_path_and_name_exists(package):
    found = set()
    for where, text in _texts():
        source = str(where.relative_to(ROOT))
        for match in DOTTED.finditer(text):
            if not _resolves(package, match.group()):
                found.add((source, match.group(), "does not resolve"))
        for match in PATH.finditer(text):
            problem = _path_problem(package, where, match.group())
            if problem:
                found.add((source, match.group(), problem))
    stale = {(source, name) for source, name, _ in found}
    new = sorted(f"{source}: {name} ({why})" for source, name, why in found if (source, name) not in STALE)
    fixed = sorted(f"{source}: {name}" for source, name in STALE - stale)
    assert not new, "cited but not there (fix the name, or the file's docstring):\n" + "\n".join(new)
    assert not fixed, "no longer stale, remove from STALE in tests/test_docs.py:\n" + "\n".join(fixed)


@pytest.mark.parametrize(
    "text, names",
    [
        ("see rlaif.labeling.job.label.", ["rlaif.labeling.job.label"]),
        ("`rlaif.rules:keyword_reviser` and rlaif.numbers' rules", ["rlaif.rules:keyword_reviser", "rlaif.numbers"]),
    ],
)
def test_dotted_names_are_read_as_written(text, names):
    assert [m.group() for m in DOTTED.finditer(text)] == names


def test_a_stale_name_and_path_are_caught(package):
    """The check can fail: names that the issue found stale, and a deleted module, are reported."""
    assert not _resolves(package, "rlaif.data.read_pairs")
    assert not _resolves(package, "rlaif.labeling.job.score_pairs")
    assert _resolves(package, "rlaif.data.pairs.read_pairs") and _resolves(package, "rlaif.rules:keyword_reviser")
    assert _path_problem(package, ROOT / "README.md", "labeling/ray.py") == "no such file"
    assert (
        _path_problem(package, ROOT / "README.md", "train/run.py:no_such_function")
        == "rlaif.train.run has no no_such_function"
    )
    assert _path_problem(package, ROOT / "README.md", "train/run.py:reduce_sums") is None
    assert [m.group() for m in PATH.finditer("see https://x.org/a/b.py and ../shared/c/d.py, not e/f.py")] == ["e/f.py"]
