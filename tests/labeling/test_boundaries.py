"""What labeling leaves to the judges: the prompt text (judges/prompting.py, reached through `Judge.queries`) and
whether a judge can label on its own (judges/registry.py). labeling/ imports neither the prompt renderers nor a
backend, lazily or not."""

from __future__ import annotations

import ast

import pytest

from tests.helpers import ROOT

LABELING = sorted((ROOT / "rlaif" / "labeling").glob("*.py"))


def _imports(path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            out |= {f"{'.' * node.level}{node.module or ''}:{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


@pytest.mark.parametrize("path", LABELING, ids=lambda p: p.name)
def test_labeling_renders_no_prompt_and_knows_no_backend(path):
    for name in _imports(path):
        module = name.split(":")[0].lstrip(".")
        assert module not in (
            "judges.prompting",
            "judges.policy",
            "judges.hf",
            "judges.vllm",
            "judges.openai",
            "judges.python",
        ), f"{path.name} imports {name}"
        assert not name.endswith((":render_prefix_user", ":NOT_ATTACHED")), f"{path.name} imports {name}"
