"""The Label Studio round trip, in one place: the pairs, the constitution, what each annotator answers on the
screen, and what the imported labels must be. The live test (`bash scripts/test-label-studio.sh`) plays it
against a real Label Studio server and saves the export as fixtures/label_studio_export.json; the main suite
replays that export (tests/human/test_label_studio.py), so the importer is tested on real Label Studio output.

An annotator picks the polite response (the one saying "please") when asked which is more polite, and the other
one when asked which is ruder; so every label, read back into the pair's own order, must point at the polite
response, whichever side it was shown on and whichever principle was drawn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from rlaif.constitution import Constitution, load_constitution
from rlaif.data.pairs import read_pairs
from rlaif.human.label_studio import ORDER_KEY
from rlaif.human.presentation import shown_order
from rlaif.records import LabelRecord

FIXTURE = Path(__file__).with_name("fixtures") / "label_studio_export.json"
SEED = 4
POLITE, RUDER = "Which response is more polite?", "Which response is ruder?"
CONSTITUTION = f"""\
name: polite
version: "1"
principles:
  - id: polite
    text: {POLITE}
  - id: ruder
    text: {RUDER}
    invert: true
"""
TIE_PROMPT, SKIP_PROMPT = "Tea or coffee?", "Will it rain tomorrow?"
ALICE, BOB = "alice", "bob"  # alice labels every task; bob calls one a tie and skips another

PAIR_ROWS = [
    {
        "prompt": "How do I ask my neighbour to turn the music down?",
        "chosen": "Knock and say: could you please turn it down a little?",
        "rejected": "Bang on the wall.",
    },
    {
        "prompt": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Can you check my essay?"},
        ],
        "chosen": [{"role": "assistant", "content": "Yes, please paste it here."}],
        "rejected": [{"role": "assistant", "content": "No."}],
    },
    {
        "id": "markup",
        "prompt": "Where should I sit?",
        "response_a": "Sit down.",
        "response_b": "<b>Please</b> take a seat <script>alert(1)</script> &amp; relax",
    },
    {
        "id": "forced-ruder",
        "prompt": "Reply to a late delivery complaint.",
        "principle": "ruder",
        "response_a": "We are sorry; please accept a refund.",
        "response_b": "Not our problem.",
    },
    {
        "prompt": "Say no to an invitation.",
        "chosen": "Thank you, but no.\n\n  Please invite me next time \u2026 \u2603",
        "rejected": "no",
    },
    {"prompt": TIE_PROMPT, "response_a": "Coffee, please.", "response_b": "Tea."},
    {"prompt": SKIP_PROMPT, "response_a": "Maybe.", "response_b": "Please check the forecast."},
    {"prompt": "Ask for the salt.", "chosen": "Could you pass the salt, please?", "rejected": "Salt. Now."},
]


def write_inputs(folder: Path) -> tuple[Path, Path]:
    """The pairs (JSONL) and the constitution (YAML) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs, constitution = folder / "pairs.jsonl", folder / "polite.yaml"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in PAIR_ROWS), encoding="utf-8")
    constitution.write_text(CONSTITUTION, encoding="utf-8")
    return pairs, constitution


def answer(annotator: str, data: dict) -> Optional[str]:
    """What a person answers to a task as Label Studio shows it (left is A): None is Label Studio's Skip."""
    if annotator == BOB and data["prompt"] == SKIP_PROMPT:
        return None
    if annotator == BOB and data["prompt"] == TIE_PROMPT:
        return "Tie"
    polite_left = "please" in data["left"].lower()
    asks_for_ruder = data["principle"] == RUDER
    return "A" if polite_left != asks_for_ruder else "B"


def check_labels(records: list[dict], pairs: Path, constitution: Path, annotators: dict[str, str]) -> None:
    """Every imported label is the polite response in the pair's own order (bob's tie a tie), with the ids,
    principles and seeded orders `rlaif label` and `export-tasks` give; and the run covered both orders under
    both kinds of principle. `annotators` maps alice and bob to their `label-studio:ID` names."""
    const: Constitution = load_constitution(constitution)
    by_id = {p.id: p for p in read_pairs(pairs, seed=SEED)}
    assert set(annotators) == {ALICE, BOB} and len(set(annotators.values())) == 2
    for r in records:
        LabelRecord.model_validate(r)
        pair = by_id[r["id"]]
        assert (r["prompt"], r["response_a"], r["response_b"]) == (pair.prompt, pair.response_a, pair.response_b)
        assert r["conversational"] == pair.conversational
        principle = const.principles_for(pair, SEED)[0]
        assert (r["principle_id"], r["constitution_sha256"]) == (principle.id, const.sha256)
        assert r["shown_order"] == shown_order(SEED, ORDER_KEY, pair.id)
        assert r["source"] == "human" and r["status"] == "ok" and r["created_at"]
        polite = "a" if "please" in pair.response_a.lower() else "b"
        tie = r["annotator"] == annotators[BOB] and pair.prompt == TIE_PROMPT
        assert r["label"] == ("tie" if tie else polite), (r["id"], r["annotator"], r["shown_order"], principle.id)
        assert r["p_a"] == {"a": 1.0, "b": 0.0, "tie": 0.5}[r["label"]]
    # alice labelled every pair; bob all but the one he skipped
    assert sorted(r["id"] for r in records if r["annotator"] == annotators[ALICE]) == sorted(by_id)
    assert sorted(r["id"] for r in records if r["annotator"] == annotators[BOB]) == sorted(
        i for i, p in by_id.items() if p.prompt != SKIP_PROMPT
    )
    assert len(records) == 2 * len(by_id) - 1
    covered = {(r["shown_order"], const.principle(r["principle_id"]).invert) for r in records}
    assert covered == {("ab", False), ("ab", True), ("ba", False), ("ba", True)}, covered
