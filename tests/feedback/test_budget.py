"""The mixed source's human budget (`budget: N`, `budget_fraction: f`): exactly the top N pairs by `rlaif annotate
select` priority go to people (ties by id), the rest keep their AI label; its refusals, one line naming the field;
and the fields stay out of a run's config.yaml while unset, so a run started before them resumes."""

from __future__ import annotations

import json

import pytest
import yaml

from rlaif.config.feedback import FeedbackConfig, load_feedback_config
from rlaif.config.train import load_train_config
from rlaif.config.yamlfile import ConfigFileError
from rlaif.feedback.select import select_pairs
from rlaif.feedback.sources import load_feedback
from tests.helpers import ROOT, ai_record, human_record, run_cli, write_jsonl

EXAMPLE = ROOT / "examples/tiny/loop.yaml"

# priorities (rlaif/feedback/priority.py): failed 3; flip 1 + 0.6; split 0.8 + 0.6; close and close2 0.9 each (a
# tie, broken by id); mid 0.6; sure 0.1; bad is unreadable input, never a candidate
RANKED = ["broke", "flip", "split", "close", "close2", "mid", "sure"]


def labels(tmp_path):
    recs = [
        ai_record("sure", 0.95),
        ai_record("close2", 0.45),
        ai_record("mid", 0.7),
        ai_record("flip", 0.5, orders=[0.8, 0.2]),
        ai_record("broke", None, status="failed", error="judge: no verdict"),
        ai_record("bad", None, status="failed", error="invalid input: response_b is empty"),
        ai_record("split", 0.6, principle="all", per_principle={"p1": 0.9, "p2": 0.3}),
        ai_record("close", 0.55),
    ]
    return write_jsonl(tmp_path / "ai/labels.jsonl", recs).parent


def routed(ai_dir, **fields) -> tuple[dict, list[str], dict]:
    """(records by id, the queue's ids in order, stats) of the mixed source on `fields`."""
    stats: dict = {}
    got = {r["id"]: r for r in load_feedback(FeedbackConfig(source="mixed", ai=str(ai_dir), **fields), stats)}
    queue = [json.loads(line)["id"] for line in (ai_dir / "human_queue.jsonl").read_text().splitlines()]
    return got, queue, stats


def test_a_budget_sends_exactly_the_top_n_by_priority_and_the_rest_keep_their_ai_label(tmp_path):
    ai_dir = labels(tmp_path)
    human = write_jsonl(tmp_path / "human.jsonl", [human_record("close", "b", "ann"), human_record("sure", "b", "x")])
    got, queue, stats = routed(ai_dir, budget=4, human=str(human))
    assert queue == RANKED[:4]  # close before close2: equal priority, ties by id
    select_pairs(ai_dir, 4, tmp_path / "sel.jsonl")  # the same ranking as `rlaif annotate select`, one place
    assert [json.loads(line)["id"] for line in (tmp_path / "sel.jsonl").read_text().splitlines()] == queue
    # close2 (|p_a - 0.5| = 0.05) and mid stay the judge's: a margin would have sent close2 to people
    assert {i: r["source"] for i, r in got.items()} == {"close": "human", "close2": "ai", "mid": "ai", "sure": "human"}
    assert got["close2"]["p_a"] == 0.45
    assert (stats["budget"], stats["queued"], stats["queued_failed"], stats["queued_priority"]) == (4, 4, 1, 3)
    assert (stats["pending_dropped"], stats["human_pairs"], stats["ai_pairs"], stats["invalid_input"]) == (3, 2, 2, 1)

    # the queue is a function of the AI labels: people answering it never moves the budget to the next pairs
    more = [human_record(i, "a", "ann") for i in ("broke", "flip", "split", "close")]
    write_jsonl(tmp_path / "human.jsonl", more)
    got, again, _ = routed(ai_dir, budget=4, human=str(human), pending="ai")
    assert again == queue and {i for i, r in got.items() if r["source"] == "human"} == set(queue)

    got, queue, stats = routed(ai_dir, budget=5)
    assert queue == RANKED[:5] and "close2" not in got
    got, queue, _ = routed(ai_dir, budget=3, pending="ai")
    assert queue == RANKED[:3] and "broke" not in got and got["flip"]["source"] == "ai"  # failed: nothing to keep


@pytest.mark.parametrize(
    "fraction, n", [(0.0, 0), (0.3, 2), (0.5, 4), (4 / 7, 4), (1.0, 7)]
)  # of the 7 readable pairs, rounded to the nearest (3.5 up)
def test_a_budget_fraction_is_a_share_of_the_readable_pairs(tmp_path, fraction, n):
    ai_dir = labels(tmp_path)
    got, queue, stats = routed(ai_dir, budget_fraction=fraction)
    assert queue == RANKED[:n] and stats["budget"] == n
    assert set(got) == set(RANKED[n:])  # with no human labels yet, the queued pairs wait (pending: drop)


@pytest.mark.parametrize(
    "body, line, message",
    [
        ("margin: 0.2\nbudget: 3\n", 4, "budget: margin is given too: give one of margin, budget and budget_fraction"),
        (
            "budget: 3\nbudget_fraction: 0.1\n",
            4,
            "budget_fraction: budget is given too: give one of margin, budget and budget_fraction",
        ),
        (
            "budget_fraction: 0.1\nrequire_consistent: false\n",
            4,
            "require_consistent: applies to margin routing, not to budget_fraction (its priority ranks order "
            "disagreement)",
        ),
        ("budget: -1\n", 3, "budget: Input should be greater than or equal to 0"),
        ("budget_fraction: 1.5\n", 3, "budget_fraction: Input should be less than or equal to 1"),
        ("budget: 2.5\n", 3, "budget: Input should be a valid integer, got a number with a fractional part"),
    ],
)
def test_budget_refusals_name_the_field_in_one_line(tmp_path, body, line, message):
    f = tmp_path / "feedback.yaml"
    f.write_text("source: mixed\nai: runs/x\n" + body)
    with pytest.raises(ConfigFileError) as e:
        load_feedback_config(f)
    assert e.value.errors == [f"{f}:{line}: {message}"]


def test_a_budget_is_refused_outside_the_mixed_source_and_through_the_cli(tmp_path):
    f = tmp_path / "feedback.yaml"
    f.write_text("source: ai\nai: runs/x\nbudget: 3\n")
    with pytest.raises(ConfigFileError) as e:
        load_feedback_config(f)
    assert e.value.errors == [f"{f}:3: budget: not used by source ai (only by source mixed)"]
    f.write_text(f"source: mixed\nai: {labels(tmp_path)}\nbudget: 3\nmargin: 0.1\n")
    p = run_cli("export", "--feedback", f, "--out", tmp_path / "out.jsonl")
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        f"{f}:3: budget: margin is given too: give one of margin, budget and budget_fraction"
    ]
    assert not (tmp_path / "out.jsonl").exists()


def test_budget_fields_stay_out_of_a_runs_config_yaml_until_set_and_an_older_run_resumes(tmp_path):
    """A run whose config.yaml was written before the budget fields existed resumes (nothing reads as changed and
    its config.yaml is written back byte for byte); a budget is written, without the margin it replaces, and
    reads back the same; adding one to that older run is a changed config."""
    from rlaif.train.run import make_accelerator, prepare_run_dir

    out = tmp_path / "run"
    older = {"source": "mixed", "human": "h.jsonl", "calibration": None, "margin": 0.1, "require_consistent": True}
    older.update(pending="drop", human_combine="mean")  # the mixed source's fields as a run saved them before

    def loop(feedback: dict):
        return load_train_config(EXAMPLE, "loop", [f"output_dir={out}", f"feedback={json.dumps(feedback)}"])

    config = loop(older)
    assert config.model_dump(mode="json")["feedback"] == older
    (out / "checkpoint-3").mkdir(parents=True)
    (out / "checkpoint-3/trainer_state.json").write_text('{"step": 3}')
    text = yaml.safe_dump({**config.model_dump(mode="json"), "feedback": older}, sort_keys=False)
    (out / "config.yaml").write_text(text)
    assert prepare_run_dir(config, make_accelerator(config)) == out / "checkpoint-3"
    assert (out / "config.yaml").read_text() == text

    on_budget = loop({"source": "mixed", "human": "h.jsonl", "budget": 8})
    written = on_budget.model_dump(mode="json")["feedback"]
    assert written == {k: v for k, v in older.items() if k not in ("margin", "require_consistent")} | {"budget": 8}
    assert load_train_config(EXAMPLE, "loop", [f"output_dir={out}"]).feedback != on_budget.feedback
    assert loop(written) == on_budget  # what is written reads back the same
    with pytest.raises(ValueError, match=r"different config \(feedback changed\)"):
        prepare_run_dir(on_budget, make_accelerator(on_budget))
    assert (out / "config.yaml").read_text() == text


def test_the_loops_mixed_source_spends_its_budget_on_each_iterations_labels(tmp_path):
    from rlaif.recipes.loop_feedback import iteration_feedback

    it_dir = tmp_path / "iter-1"
    recs = [ai_record(f"p{i}", p) for i, p in enumerate([0.9, 0.1, 0.5, 0.55, 0.7, 0.45])]
    write_jsonl(it_dir / "labels/labels.jsonl", recs)
    config = load_train_config(
        EXAMPLE, "loop", [f"output_dir={tmp_path}", "feedback={source: mixed, budget_fraction: 0.5}"]
    )
    got = iteration_feedback(config, it_dir, 1)
    queue = [json.loads(line)["id"] for line in (it_dir / "human_queue.jsonl").read_text().splitlines()]
    assert queue == ["p2", "p3", "p5"]  # 1.0, then 0.9 twice (by id)
    assert [p.id for p in got.train] == ["p0", "p1", "p4"] and got.counts["budget"] == 3
