"""Tier 4: the annotation page in a real headless browser — Debian's chromium driven by Playwright — against a
real `rlaif annotate serve`: sign in, label with clicks and keys, change an answer, and find it all in the
export. Model outputs carrying markup must show as characters and run nothing.

Needs `chromium` on PATH (bash scripts/setup-browser.sh) and the playwright package (dev extra); Playwright's
own browser download is never used.
"""

from __future__ import annotations

import json
import shutil

import pytest

from .test_human_server import TOKENS, AnnotateServer

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH: run bash scripts/setup-browser.sh")

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
PROMPT_XSS = '<img src=x onerror="window.__pwned=2">Is <b>this</b> bold?'
PAIRS = [
    {
        "id": "p0",
        "prompt": "How do I boil an egg?",
        "response_a": "Simmer it for nine minutes.",
        "response_b": "Microwave it in its shell.",
    },
    {
        "id": "p1",
        "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}],
        "response_a": "Paris.",
        "response_b": "Lyon.",
    },
    {"id": "p2", "prompt": PROMPT_XSS, "response_a": f"Here: {SCRIPT} done", "response_b": f"{IMG} and <b>bold</b>"},
    {"id": "p3", "prompt": "Say hi.", "response_a": "Hi!", "response_b": "Hello there!"},
    {"id": "p4", "prompt": "2 + 2?", "response_a": "4", "response_b": "5"},
]

NEXT_SHOWN = """(old) => {
  const work = document.getElementById("work");
  return (!work.hidden && work.dataset.pairId !== old) || !document.getElementById("done").hidden;
}"""


def test_annotator_labels_with_clicks_and_keys_and_markup_stays_text(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    by_id = {p["id"]: p for p in PAIRS}
    with AnnotateServer(tmp_path, pairs) as server, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server.url + "/")

            # sign in: a wrong token is refused on the page, the right one is kept for next time
            page.fill("#token", "not-a-real-token")
            page.click("#login-form button[type=submit]")
            page.wait_for_selector("#login-error:has-text('not accepted')")
            page.fill("#token", TOKENS["alice"])
            page.click("#login-form button[type=submit]")
            page.wait_for_selector("#work:not([hidden])")

            left: dict[str, str] = {}  # pair id -> the pair's own letter shown on the left

            def on_screen() -> str:
                pid = page.get_attribute("#work", "data-pair-id")
                text = page.text_content("#response-left")
                left[pid] = "a" if text == by_id[pid]["response_a"] else "b"
                assert text == by_id[pid]["response_" + left[pid]]
                return pid

            def act(do) -> None:
                old = page.get_attribute("#work", "data-pair-id")
                do()
                page.wait_for_function(NEXT_SHOWN, arg=old)

            assert on_screen() == "p0"
            assert page.text_content("#prompt") == by_id["p0"]["prompt"]
            act(lambda: page.click(".choices button[data-choice=a]"))  # p0: click A (left)

            assert on_screen() == "p1"
            assert page.locator("#prompt .role").all_text_contents() == ["system", "user"]
            assert page.locator("#prompt .message").nth(1).text_content() == "userCapital of France?"
            act(lambda: page.keyboard.press("2"))  # p1: key 2 = B (right)

            assert on_screen() == "p2"  # untrusted markup: shown as characters, nothing runs
            shown = {page.text_content("#response-left"), page.text_content("#response-right")}
            assert shown == {by_id["p2"]["response_a"], by_id["p2"]["response_b"]}
            assert page.text_content("#prompt") == PROMPT_XSS
            assert page.locator("#work img, #work script, #work b").count() == 0
            assert page.evaluate("window.__pwned") is None
            act(lambda: page.keyboard.press("t"))  # p2: tie ...

            assert on_screen() == "p3"
            act(lambda: page.keyboard.press("z"))  # ... then change that answer: back to p2
            assert page.get_attribute("#work", "data-pair-id") == "p2" and page.is_visible("#revising")
            act(lambda: page.keyboard.press("1"))  # p2 revised to A (left); p3 comes back
            assert on_screen() == "p3"
            act(lambda: page.keyboard.press(" "))  # p3: space = skip

            assert on_screen() == "p4"
            act(lambda: page.click(".choices button[data-choice=b]"))  # p4: click B (right)
            page.wait_for_selector("#done:not([hidden])")
            page.wait_for_function("() => document.getElementById('progress').textContent.includes('4 labelled')")
            assert "1 skipped, 0 left" in page.text_content("#progress")

            # the token was kept: a reload goes straight to work without asking again
            page.reload()
            page.wait_for_selector("#done:not([hidden])")
            assert page.is_hidden("#login")
            assert page.evaluate("window.__pwned") is None and errors == []
        finally:
            browser.close()
        records = {r["id"]: r for r in server.export()}

    flip = {"a": "b", "b": "a"}
    assert set(records) == {"p0", "p1", "p2", "p4"}  # the skip is not a label
    assert records["p0"]["label"] == left["p0"]  # clicked the left response
    assert records["p1"]["label"] == flip[left["p1"]]  # pressed 2: the right one
    assert records["p2"]["label"] == left["p2"]  # revised from tie to the left one
    assert records["p4"]["label"] == flip[left["p4"]]
    for r in records.values():
        assert r["annotator"] == "alice" and r["source"] == "human"
        assert r["shown_order"] == ("ab" if left[r["id"]] == "a" else "ba")
