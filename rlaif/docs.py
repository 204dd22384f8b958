"""Markdown tables of every config field, generated from the pydantic models' own descriptions, so the README,
`--help` and error messages share one text. `python -m rlaif.docs` prints them; a test keeps README in sync."""

from __future__ import annotations

from pydantic import BaseModel

from .config import JUDGE_CONFIGS, CoTConfig
from .constitution import Constitution, FewShotExample, Principle


def _type(field) -> str:
    text = str(field.annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")
    return text.replace("rlaif.config.", "").replace("rlaif.constitution.", "").replace("|", "\\|")


def table(model: type[BaseModel], title: str) -> str:
    lines = [f"#### {title}", "", "| field | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        if len(default) > 30:
            default = "(see meaning)"
        desc = (field.description or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{name}` | `{_type(field)}` | `{default}` | {desc} |")
    return "\n".join(lines)


def render() -> str:
    parts = [table(Constitution, "Constitution"), table(Principle, "Principle (`principles[]`)"),
             table(FewShotExample, "Few-shot example (`few_shot[]`)")]
    for backend, cls in JUDGE_CONFIGS.items():
        parts.append(table(cls, f"Judge, `backend: {backend}`"))
    parts.append(table(CoTConfig, "Chain of thought (`cot:`)"))
    return "\n\n".join(parts) + "\n"




def sync_readme(path: str = "README.md", check: bool = False) -> bool:
    """Rewrite the README's field tables (between `<!-- fields -->` markers); with check, only compare."""
    from pathlib import Path

    text = Path(path).read_text(encoding="utf-8")
    start, end = "<!-- fields -->\n", "<!-- /fields -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    new = head + start + render() + end + tail
    if check:
        return new == text
    Path(path).write_text(new, encoding="utf-8")
    return True


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--sync"]:
        sync_readme()
    else:
        print(render(), end="")
