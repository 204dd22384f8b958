"""Tier 4, in its own environment: the Label Studio bridge against a real Label Studio server on 127.0.0.1, which
`bash scripts/test-label-studio.sh` installs (.venv-label-studio), starts with its telemetry off, and names here
through RLAIF_LABEL_STUDIO_URL and RLAIF_LABEL_STUDIO_TOKEN (skipped without them).

Through Label Studio's own API, as a team would: create a project with the labeling config `rlaif annotate
export-tasks` wrote, import its tasks, let a second annotator join by the project's invite link, answer every
task as each annotator sees it (one tie, one skip), export the project as JSON and read it back with `rlaif human
import`. One task, the one whose responses carry markup, is labelled in Label Studio's own editor in Debian's
headless chromium (Playwright), with the choice's hotkey and the Submit button: the markup must show as text. The
export is saved where RLAIF_LABEL_STUDIO_EXPORT says (the script passes the fixture the main suite replays).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid

import pytest

from tests.helpers import run_cli
from tests.human import label_studio_case as case

httpx = pytest.importorskip("httpx")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
CHROMIUM = shutil.which("chromium")
URL = os.environ.get("RLAIF_LABEL_STUDIO_URL")
TOKEN = os.environ.get("RLAIF_LABEL_STUDIO_TOKEN")
pytestmark = [
    pytest.mark.skipif(
        not (URL and TOKEN), reason="needs a Label Studio server: run bash scripts/test-label-studio.sh"
    ),
    pytest.mark.skipif(CHROMIUM is None, reason="no `chromium` on PATH: run bash scripts/setup-browser.sh"),
]
MARKUP_PAIR = "markup"  # the pair labelled in the editor: its responses carry <b>, <script> and &amp;
HOTKEYS = {"A": "1", "B": "2", "Tie": "3"}


def api(token: str) -> "httpx.Client":
    return httpx.Client(base_url=URL, headers={"Authorization": f"Token {token}"}, timeout=60)


def join_by_invite(admin, email: str, password: str) -> str:
    """A new annotator signs up through the organisation's invite link; returns their API token."""
    invite = admin.get("/api/invite")
    assert invite.status_code == 200, invite.text
    link = invite.json()["invite_url"]
    with httpx.Client(base_url=URL, timeout=60) as browser:
        assert browser.get(link).status_code == 200  # the sign-up page sets the CSRF cookie
        csrf = browser.cookies["csrftoken"]
        r = browser.post(
            link,
            data={"email": email, "password": password, "csrfmiddlewaretoken": csrf},
            headers={"Referer": URL + link},
        )
        assert r.status_code == 302, r.text[:500]  # signed up and logged in
        r = browser.get("/api/current-user/token")
        assert r.status_code == 200, r.text
        return r.json()["token"]


def annotate(client, task_id: int, annotator: str) -> str:
    """Answer one task as `annotator` sees it; returns what was answered (skip for Label Studio's Skip)."""
    shown = client.get(f"/api/tasks/{task_id}")
    assert shown.status_code == 200, shown.text
    choice = case.answer(annotator, shown.json()["data"])
    # the bodies Label Studio's editor sends: a choices result, or a cancelled (skipped) annotation
    body = (
        {"was_cancelled": True, "result": []}
        if choice is None
        else {
            "result": [
                {
                    "id": uuid.uuid4().hex[:10],
                    "from_name": "choice",
                    "to_name": "prompt",
                    "type": "choices",
                    "origin": "manual",
                    "value": {"choices": [choice]},
                }
            ]
        }
    )
    r = client.post(f"/api/tasks/{task_id}/annotations/", json=body)
    assert r.status_code == 201, r.text
    return choice or "skip"


def label_in_the_editor(email: str, password: str, project: int, task_id: int, annotator: str, admin) -> str:
    """Sign in to Label Studio in a headless browser, open the task, check its responses show as text, answer
    with the choice's hotkey and press Submit; returns the choice."""
    data = admin.get(f"/api/tasks/{task_id}").json()["data"]
    choice = case.answer(annotator, data)
    dialogs: list[str] = []
    outside: list[str] = []  # requests the page tried beyond the server: none may leave this machine

    def only_the_server(route):
        if route.request.url.startswith(URL + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.route("**/*", only_the_server)
            page.goto(f"{URL}/user/login/")
            page.fill("input[name=email]", email)
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_load_state("networkidle")
            page.goto(f"{URL}/projects/{project}/data?task={task_id}")
            # Label Studio's <Text> puts the value in text lines: the markup is there as characters
            for side in ("left", "right"):
                page.locator(".lsf-richtext__line", has_text=data[side]).wait_for(timeout=60_000)
            assert page.evaluate("() => document.querySelectorAll('b').length") == 0
            page.keyboard.press(HOTKEYS[choice])
            page.get_by_role("button", name="Submit").click()
            for _ in range(150):
                if admin.get(f"/api/tasks/{task_id}/annotations/").json():
                    break
                time.sleep(0.2)
            else:
                raise AssertionError("the editor's Submit created no annotation")
        finally:
            browser.close()
    assert dialogs == []  # the <script> in a response never ran
    assert outside == []  # the editor sends no telemetry either
    return choice


def test_tasks_labelled_in_label_studio_import_as_human_labels_in_the_pairs_own_order(tmp_path):
    pairs, constitution = case.write_inputs(tmp_path)
    p = run_cli(
        "annotate",
        "export-tasks",
        "--format",
        "label-studio",
        "--pairs",
        pairs,
        "--constitution",
        constitution,
        "--out",
        tmp_path / "ls",
        "--seed",
        str(case.SEED),
    )
    assert p.returncode == 0, p.stderr
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text(encoding="utf-8"))
    config = (tmp_path / "ls" / "config.xml").read_text(encoding="utf-8")

    with api(TOKEN) as alice:
        project = alice.post(
            "/api/projects",
            json={"title": f"rlaif pairs {uuid.uuid4().hex[:6]}", "label_config": config, "maximum_annotations": 2},
        )
        assert project.status_code == 201, project.text  # Label Studio checked the config
        pid = project.json()["id"]
        imported = alice.post(f"/api/projects/{pid}/import", json=tasks)
        assert imported.status_code == 201 and imported.json()["task_count"] == len(tasks), imported.text
        listed = alice.get("/api/tasks", params={"project": pid, "page_size": 100}).json()["tasks"]
        task_ids = sorted(t["id"] for t in listed)
        assert len(task_ids) == len(tasks)
        # what Label Studio stored is what was written: the text of every response exactly, markup included
        stored = sorted((t["data"] for t in listed), key=lambda d: d["rlaif"]["pair_id"])
        assert stored == sorted((t["data"] for t in tasks), key=lambda d: d["rlaif"]["pair_id"])

        bob_password = f"bob-{uuid.uuid4().hex}"
        bob_token = join_by_invite(alice, "bob@rlaif.test", bob_password)
        by_pair = {t["data"]["rlaif"]["pair_id"]: t["id"] for t in listed}
        in_editor = label_in_the_editor("bob@rlaif.test", bob_password, pid, by_pair[MARKUP_PAIR], case.BOB, alice)
        users = {}
        with api(bob_token) as bob:
            for name, client in ((case.ALICE, alice), (case.BOB, bob)):
                users[name] = f"label-studio:{client.get('/api/current-user/whoami').json()['id']}"
                answers = [
                    in_editor if (name, tid) == (case.BOB, by_pair[MARKUP_PAIR]) else annotate(client, tid, name)
                    for tid in task_ids
                ]
                assert answers.count("skip") == (name == case.BOB) and answers.count("Tie") == (name == case.BOB)

        export = alice.get(f"/api/projects/{pid}/export", params={"exportType": "JSON"})
        assert export.status_code == 200, export.text
    export_file = tmp_path / "export.json"
    export_file.write_bytes(export.content)
    if os.environ.get("RLAIF_LABEL_STUDIO_EXPORT"):
        shutil.copyfile(export_file, os.environ["RLAIF_LABEL_STUDIO_EXPORT"])

    p = run_cli("human", "import", export_file, "--out", tmp_path / "human.jsonl")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["labels"] == 2 * len(tasks) - 1
    records = [json.loads(line) for line in (tmp_path / "human.jsonl").read_text().splitlines()]
    case.check_labels(records, pairs, constitution, users)
