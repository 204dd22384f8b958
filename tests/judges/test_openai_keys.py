"""The API key against a real echo server on 127.0.0.1: a server that echoes the key back in an error body, in
each of the forms a server may use (as written, URL-encoded, JSON-escaped, base64 at each alignment, upper-cased,
broken over lines), gets none of it into labels.jsonl, stats.json, stdout or stderr (`rlaif label` as a
subprocess). And a key no HTTP header can carry is refused in one line that names its variable, never the key."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from urllib.parse import quote

import pytest

from tests.helpers import ROOT, run_cli, write_jsonl
from tests.judges.test_openai_judge import FakeServer, Reply
from tests.labeling.jobfiles import strict_records
from tests.revision.files import cli

pytestmark = pytest.mark.slow

# With '/' and '+' every 6 characters (URL-encoding splits it into runs shorter than 8) and both letter cases.
KEY = "sk-pr/" + "/+".join(
    base64.b64encode(hashlib.sha256(f"{i}".encode()).digest()).decode()[:6].replace("/", "x").replace("+", "y")
    for i in range(14)
)
ECHOES = {  # the form of the key each pair's requests get echoed
    "as written": KEY,
    "URL-encoded": quote(KEY, safe=""),
    "JSON-escaped": json.dumps(KEY).replace("/", "\\/"),  # as PHP's json_encode writes it
    "base64": base64.b64encode(KEY.encode()).decode(),
    "base64 after 1 byte": base64.b64encode(b"u" + KEY.encode()).decode(),
    "base64 after 2 bytes (Basic u:KEY)": base64.b64encode(b"u:" + KEY.encode()).decode(),
    "base64url": base64.urlsafe_b64encode(b"u:" + KEY.encode()).decode(),
    "upper case": KEY.upper(),
    "broken over lines": "\n".join(KEY[i : i + 7] for i in range(0, len(KEY), 7)),
    "broken over lines in a JSON string": json.dumps("\n ".join(KEY[i : i + 5] for i in range(0, len(KEY), 5))),
    "base64 wrapped at 76": base64.encodebytes(b"u:" + KEY.encode()).decode(),
}
CONSTITUTION = "name: c\nversion: '1'\nprinciples:\n  - id: polite\n    text: Which is more polite?\n"


def leaks(text: str, form: str, run: int = 8) -> list[str]:
    """The runs of `run` characters of `form` found in `text`, both compared without case and gaps (whitespace,
    and JSON's escaped line breaks)."""

    def squeezed(s: str) -> str:
        return re.sub(r"\s|\\n", "", s).lower()

    text, form = squeezed(text), squeezed(form)
    return [form[i : i + run] for i in range(len(form) - run + 1) if form[i : i + run] in text]


def test_the_key_echoed_in_each_form_reaches_no_output(tmp_path, monkeypatch):
    # URL-encoded, the key falls apart into runs of fewer than 8 characters
    assert max(map(len, re.split("%[0-9A-F]{2}", quote(KEY, safe="")))) < 8
    forms = list(ECHOES.values())
    server = FakeServer()

    def echo(body: dict) -> Reply:  # the pair's number, in the prompt, picks the form: both orders get the same
        return Reply(500, "invalid key " + forms[int(re.search(r"question (\d+)", json.dumps(body))[1])])

    server.default = echo
    monkeypatch.setenv("RLAIF_TEST_KEY", KEY)
    (tmp_path / "c.yaml").write_text(CONSTITUTION)
    (tmp_path / "judge.yaml").write_text(
        json.dumps(
            {
                "backend": "openai",
                "model": "m",
                "base_urls": [server.url],
                "api_key_env": "RLAIF_TEST_KEY",
                "max_retries": 1,
                "backoff_s": 0.01,
                "max_backoff_s": 0.01,
            }
        )
    )
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl",
        [{"id": f"p{i}", "prompt": f"question {i}", "response_a": "a", "response_b": "b"} for i in range(len(forms))],
    )
    out = tmp_path / "out"
    try:
        done = run_cli(
            "label",
            "--pairs",
            pairs,
            "--constitution",
            tmp_path / "c.yaml",
            "--judge",
            tmp_path / "judge.yaml",
            "--out",
            out,
        )
    finally:
        server.stop()
    assert done.returncode == 4, done.stderr
    assert all(r["headers"].get("Authorization") == f"Bearer {KEY}" for r in server.requests)
    assert "retry 1" in done.stderr  # the retries were logged, with the echo in them
    records = {r["id"]: r for r in strict_records(out / "labels.jsonl")}
    for i, name in enumerate(ECHOES):
        assert records[f"p{i}"]["status"] == "failed" and "[api key]" in records[f"p{i}"]["error"], name
    outputs = {
        "labels.jsonl": (out / "labels.jsonl").read_text(),
        "stats.json": (out / "stats.json").read_text(),
        "stdout": done.stdout,
        "stderr": done.stderr,
    }
    for where, text in outputs.items():
        for name, form in [("the key", KEY), *ECHOES.items()]:
            assert leaks(text, form) == [], f"{where} holds {name}"


@pytest.mark.parametrize(
    "key, what",
    [
        (KEY + "\n", f"a line break at character {len(KEY) + 1} of {len(KEY) + 1}"),
        (KEY[:20] + "\t" + KEY[20:], f"a control character (U+0009) at character 21 of {len(KEY) + 1}"),
        ("\u201c" + KEY + "\u201d", f"a character outside ASCII (U+201C) at character 1 of {len(KEY) + 2}"),
    ],
)
def test_a_key_no_header_can_carry_is_refused_naming_its_variable(tmp_path, monkeypatch, key, what):
    server = FakeServer()
    monkeypatch.setenv("RLAIF_TEST_KEY", key)
    (tmp_path / "judge.yaml").write_text(
        f"backend: openai\nmodel: m\nbase_urls: [{server.url}]\napi_key_env: RLAIF_TEST_KEY\n"
    )
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": "q", "response_a": "a", "response_b": "b"}])
    try:
        result = cli(
            "label",
            "--pairs",
            pairs,
            "--constitution",
            ROOT / "constitutions" / "harmless.yaml",
            "--judge",
            tmp_path / "judge.yaml",
            "--out",
            tmp_path / "out",
            "--quiet",
        )
    finally:
        server.stop()
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: the environment variable RLAIF_TEST_KEY holds {what}; remove it (an "
        f"API key travels in an HTTP header, which cannot carry it)"
    )
    assert leaks(result.stderr + result.stdout, KEY) == [] and server.count == 0
