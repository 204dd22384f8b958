"""The README's field tables are generated from the config models; they must not drift."""

from pathlib import Path

from rlaif.docs import sync_readme

ROOT = Path(__file__).resolve().parents[1]


def test_readme_field_tables_are_current():
    assert sync_readme(str(ROOT / "README.md"), check=True), "run: python -m rlaif.docs --sync"


def test_readme_names_the_test_command_ci_runs():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/test" in readme and "scripts/test" in (ROOT / ".ci" / "run").read_text()
