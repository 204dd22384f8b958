"""Feedback sources (ai, human, mixed routing and its human queue), the feedback config file, `rlaif annotate
select` ordering, and `rlaif export --feedback` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlaif.config.feedback import FeedbackConfig, HumanFeedback, load_feedback_config
from rlaif.config.yamlfile import ConfigFileError
from rlaif.data.pairs import read_pairs
from rlaif.feedback.calibration.maps import fit_map
from rlaif.feedback.calibration.match import load_matched
from rlaif.feedback.priority import priority
from rlaif.feedback.select import select_pairs
from rlaif.feedback.sources import combine_human, load_feedback, route
from tests.helpers import ai_record, human_record, run_cli, write_jsonl


def crafted(tmp_path: Path) -> tuple[Path, Path]:
    """AI labels of six pairs, one of each routing case, and human labels for two of them."""
    ai = [
        ai_record("sure", 0.9, principle="physical-safety"),  # confident, consistent: AI
        ai_record("close", 0.55, orders=[0.6, 0.5]),  # |p_a - .5| < .1: people
        ai_record("flip", 0.75, orders=[0.95, 0.45]),  # orders disagree: people
        ai_record("broke", None, status="failed", error="judge: no verdict"),  # failed: people
        ai_record("bad", None, status="failed", error="invalid input: response_a is empty"),  # nobody
        ai_record("sure-b", 0.1, principle="all", per_principle={"p1": 0.1, "p2": 0.1}),  # confident: AI
    ]
    human = [
        human_record("close", "b", "ann1"),
        human_record("close", "b", "ann2"),
        human_record("sure-b", "a", "ann1"),
    ]
    return write_jsonl(tmp_path / "ai" / "labels.jsonl", ai).parent, write_jsonl(tmp_path / "human.jsonl", human)


@pytest.mark.parametrize(
    "record, require_consistent, reason",
    [
        (ai_record("x", 0.9), True, None),
        (ai_record("x", 0.59), True, "low_margin"),
        (ai_record("x", 0.6), True, None),  # the margin itself is confident enough
        (ai_record("x", 0.75, orders=[1.0, 0.5]), True, "inconsistent"),
        (ai_record("x", 0.75, orders=[1.0, 0.5]), False, None),
        (ai_record("x", None, status="failed"), True, "failed"),
    ],
)
def test_route_reasons(record, require_consistent, reason):
    assert route(record, 0.1, require_consistent) == reason


def test_mixed_routes_doubtful_pairs_to_people(tmp_path):
    ai_dir, human = crafted(tmp_path)
    cfg = FeedbackConfig(source="mixed", ai=str(ai_dir), human=str(human), margin=0.1)
    stats: dict = {}
    got = {r["id"]: r for r in load_feedback(cfg, stats)}
    # kept from the judge: "sure"; replaced by people: "close" (queued) and "sure-b" (a human label always wins);
    # queued without a human label yet and dropped: "flip", "broke"; never queued: "bad"
    assert set(got) == {"sure", "close", "sure-b"}
    assert got["sure"]["source"] == "ai" and got["sure"]["p_a"] == 0.9
    assert got["close"]["source"] == "human" and got["close"]["label"] == "b" and got["close"]["p_a"] == 0.0
    assert got["close"]["annotator"] == "ann1,ann2"
    assert got["sure-b"]["source"] == "human" and got["sure-b"]["label"] == "a"
    assert stats["queued"] == 3 and stats["queued_low_margin"] == 1 and stats["queued_inconsistent"] == 1
    assert stats["queued_failed"] == 1 and stats["pending_dropped"] == 2 and stats["invalid_input"] == 1
    assert stats["ai_pairs"] == 1 and stats["human_pairs"] == 2

    queue = ai_dir / "human_queue.jsonl"
    assert stats["queue"] == str(queue)
    rows = [json.loads(line) for line in queue.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["close", "flip", "broke"]
    assert set(rows[0]) == {"id", "prompt", "response_a", "response_b", "principle"}
    assert "human_label" not in rows[0]
    # the queue is valid `rlaif label` / `rlaif annotate serve` input, in each pair's own order
    pairs = list(read_pairs(queue))
    assert [(p.id, p.response_a, p.principle) for p in pairs][0] == ("close", "short", "p1")


def test_mixed_without_write_queue_reads_the_same_and_writes_nothing(tmp_path):
    """The other processes of a multi-process run read the same records but leave the queue to the main one."""
    ai_dir, human = crafted(tmp_path)
    cfg = FeedbackConfig(source="mixed", ai=str(ai_dir), human=str(human), margin=0.1)
    main_stats: dict = {}
    other_stats: dict = {}
    other = [r["id"] for r in load_feedback(cfg, other_stats, write_queue=False)]
    assert not (ai_dir / "human_queue.jsonl").exists() and not (ai_dir / "human_queue.jsonl.tmp").exists()
    assert other == [r["id"] for r in load_feedback(cfg, main_stats)] and other_stats == main_stats
    assert (ai_dir / "human_queue.jsonl").exists()


def test_mixed_pending_ai_and_each_annotator(tmp_path):
    ai_dir, human = crafted(tmp_path)
    queue = tmp_path / "q" / "queue.jsonl"
    cfg = FeedbackConfig(
        source="mixed", ai=str(ai_dir), human=str(human), pending="ai", human_combine="each", queue=str(queue)
    )
    got = list(load_feedback(cfg))
    ids = [r["id"] for r in got]
    assert ids.count("close") == 2  # one record per annotator
    assert "flip" in ids and next(r for r in got if r["id"] == "flip")["source"] == "ai"
    assert "broke" not in ids  # a failed label has nothing to keep
    assert queue.exists() and not (ai_dir / "human_queue.jsonl").exists()


def test_mixed_without_human_labels_yet_and_an_abandoned_read(tmp_path):
    ai_dir, _ = crafted(tmp_path)
    cfg = FeedbackConfig(source="mixed", ai=str(ai_dir), human=str(tmp_path / "not-yet.jsonl"))
    assert {r["id"] for r in load_feedback(cfg)} == {"sure", "sure-b"}
    assert len((ai_dir / "human_queue.jsonl").read_text().splitlines()) == 3
    (ai_dir / "human_queue.jsonl").unlink()
    it = load_feedback(cfg)
    next(it)
    it.close()  # a reader that stops early leaves no half-written queue behind
    assert not list(ai_dir.glob("human_queue.jsonl*"))


def test_ai_and_human_sources(tmp_path):
    ai_dir, human = crafted(tmp_path)
    assert [r["id"] for r in load_feedback(FeedbackConfig(source="ai", ai=str(ai_dir)))] == [
        "sure",
        "close",
        "flip",
        "broke",
        "bad",
        "sure-b",
    ]
    stats: dict = {}
    got = list(load_feedback(FeedbackConfig(source="human", human=str(human)), stats))
    assert [(r["id"], r["source"]) for r in got] == [("close", "human"), ("sure-b", "human")]
    assert stats == {"human_pairs": 2}
    # AI labels that carry a known human choice serve as human labels
    write_jsonl(tmp_path / "hh.jsonl", [ai_record("x", 0.9, human="b")])
    (r,) = load_feedback(FeedbackConfig(source="human", human=str(tmp_path / "hh.jsonl")))
    assert (r["source"], r["label"], r["p_a"], r["annotator"]) == ("human", "b", 0.0, "imported")
    with pytest.raises(FileNotFoundError):
        list(load_feedback(FeedbackConfig(source="human", human=str(tmp_path / "missing"))))


def test_ai_source_applies_a_calibration_map(tmp_path):
    recs = [ai_record(f"i{i}", 0.95 if i % 2 else 0.05, human="a" if i % 4 < 3 else "b") for i in range(40)]
    ai_dir = write_jsonl(tmp_path / "ai" / "labels.jsonl", recs).parent
    cmap = fit_map(load_matched(ai_dir, ai_dir), method="platt", holdout=0.0)
    (tmp_path / "map.json").write_text(json.dumps(cmap))
    got = list(load_feedback(FeedbackConfig(source="ai", ai=str(ai_dir), calibration=str(tmp_path / "map.json"))))
    assert all(r["p_a_raw"] in (0.95, 0.05) and r["calibration_sha256"] == cmap["sha256"] for r in got)
    assert all(0.05 < r["p_a"] < 0.95 for r in got)  # the judge was overconfident here


def test_combine_human_mean():
    got = combine_human([human_record("x", "a", "z"), human_record("x", "tie", "y"), human_record("x", "b", "w")])
    assert (got["p_a"], got["label"], got["annotator"]) == (0.5, "tie", "w,y,z")
    assert "shown_order" not in got
    assert combine_human([human_record("x", "a", "z"), human_record("x", "tie", "y")])["label"] == "a"


def test_feedback_config_checks_and_files(tmp_path):
    with pytest.raises(ValueError, match="required when source is mixed"):
        FeedbackConfig(source="mixed")
    with pytest.raises(ValueError, match="Extra inputs"):
        FeedbackConfig(source="ai", ai="x", margn=0.2)
    f = tmp_path / "train.yaml"
    f.write_text("recipe: dpo\nfeedback:\n  source: mixed\n  ai: runs/x\n  margin: 0.2\n")
    cfg = load_feedback_config(f)
    assert (cfg.source, cfg.margin, cfg.queue_path()) == ("mixed", 0.2, Path("runs/human_queue.jsonl"))
    f.write_text("recipe: dpo\nfeedback:\n  source: mixed\n  ai: runs/x\n  margn: 0.2\n")
    with pytest.raises(ConfigFileError) as e:
        load_feedback_config(f)
    assert e.value.errors == [
        f"{f}:5: margn: unknown field; did you mean 'margin'? (fields here: source, ai, "
        "human, calibration, margin, budget, budget_fraction, require_consistent, queue, pending, human_combine)"
    ]
    f.write_text("source: human\nmargin: 2\n")
    with pytest.raises(ConfigFileError) as e:
        load_feedback_config(f)
    assert any(err.startswith(f"{f}:2: margin:") for err in e.value.errors)


def test_each_source_takes_its_own_fields(tmp_path):
    f = tmp_path / "feedback.yaml"
    f.write_text("source: ai\nai: runs/x\nmargin: 0.3\nhuman: people.jsonl\n")
    with pytest.raises(ConfigFileError) as e:
        load_feedback_config(f)
    assert e.value.errors == [
        f"{f}:3: margin: not used by source ai (only by source mixed)",
        f"{f}:4: human: not used by source ai (only by source human and mixed)",
    ]
    f.write_text("source: people\n")
    with pytest.raises(ConfigFileError) as e:
        load_feedback_config(f)
    assert e.value.errors == [f"{f}:1: source: Input should be 'ai', 'human' or 'mixed'"]
    # a run's config.yaml from before the sources had their own classes holds every field, the unused ones at
    # their defaults: it still loads, as the source it names
    old = {
        "source": "human",
        "ai": None,
        "human": "h.jsonl",
        "calibration": None,
        "margin": 0.1,
        "require_consistent": True,
        "queue": None,
        "pending": "drop",
        "human_combine": "each",
    }
    assert FeedbackConfig(**old).root == HumanFeedback(source="human", human="h.jsonl", human_combine="each")


def test_feedback_errors_in_a_training_config_point_at_the_field(tmp_path):
    from rlaif.config.train import load_train_config

    bad = tmp_path / "dpo.yaml"
    head = "method: dpo\noutput_dir: o\nmodel: {type: tiny}\nfeedback:\n"
    bad.write_text(head + "  source: mixed\n  ai: runs/x\n  margn: 1\n")
    with pytest.raises(ConfigFileError) as e:
        load_train_config(bad, "dpo")
    assert e.value.errors == [
        f"{bad}:7: feedback.margn: unknown field; did you mean 'margin'? (fields here: "
        "source, ai, human, calibration, margin, budget, budget_fraction, require_consistent, queue, pending, "
        "human_combine)"
    ]
    bad.write_text(head + "  source: mixed\n")
    with pytest.raises(ConfigFileError) as e:
        load_train_config(bad, "dpo")
    assert e.value.errors == [f"{bad}:4: feedback.ai: required when source is mixed"]


def test_select_orders_by_priority(tmp_path):
    recs = [
        ai_record("sure", 0.95),  # 0.1
        ai_record("close", 0.55),  # 0.9
        ai_record("flip", 0.5, orders=[0.8, 0.2]),  # 1 + 0.6
        ai_record("split", 0.6, principle="all", per_principle={"p1": 0.9, "p2": 0.3}),  # 0.8 + 0.6
        ai_record("broke", None, status="failed", error="judge: no verdict"),  # 3
        ai_record("bad", None, status="failed", error="invalid input: response_b is empty"),
        ai_record("close2", 0.45),  # 0.9, after "close" by id
    ]
    assert priority(recs[2])["order_disagreement"] == pytest.approx(0.6)
    assert priority(recs[3])["principle_disagreement"] == pytest.approx(0.6)
    assert priority(recs[0])["score"] == pytest.approx(0.1)
    labels = write_jsonl(tmp_path / "labels.jsonl", recs)
    out = tmp_path / "queue.jsonl"
    summary = select_pairs(labels, 5, out)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == [
        "broke",
        "flip",
        "split",
        "close",
        "close2",
    ]
    assert summary["selected"] == 5 and summary["skipped_invalid_input"] == 1 and summary["failed"] == 1
    human = write_jsonl(tmp_path / "human.jsonl", [human_record("flip", "a", "ann")])
    select_pairs(labels, 2, out, human=human)
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["broke", "split"]
    with pytest.raises(ValueError, match="at least 1"):
        select_pairs(labels, 0, out)


def test_cli_export_feedback_and_annotate_select(tmp_path):
    ai_dir, human = crafted(tmp_path)
    cfg = tmp_path / "feedback.yaml"
    cfg.write_text(f"source: mixed\nai: {ai_dir}\nhuman: {human}\nqueue: {tmp_path / 'queue.jsonl'}\n")
    out = tmp_path / "trl.jsonl"
    p = run_cli("export", "--feedback", cfg, "--out", out)
    assert p.returncode == 0, p.stderr
    counts = json.loads(p.stdout)
    assert (counts["written"], counts["written_ai"], counts["written_human"]) == (3, 1, 2)
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["close"]["source"] == "human" and rows["close"]["chosen"] == "a longer reply"
    assert rows["sure"]["source"] == "ai" and rows["sure"]["p_chosen"] == 0.9
    assert len((tmp_path / "queue.jsonl").read_text().splitlines()) == 3

    p = run_cli("export", "--labels", ai_dir, "--feedback", cfg, "--out", out)
    assert p.returncode == 2 and "one of --labels or --feedback" in p.stderr

    p = run_cli("annotate", "select", "--labels", ai_dir, "--budget", "2", "--out", tmp_path / "sel.jsonl")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["selected"] == 2
    # broke: failed (3); close: 0.9 + order gap 0.1 (0.5 picks neither) = flip: 0.5 + 0.5, then by id
    assert [pair.id for pair in read_pairs(tmp_path / "sel.jsonl")] == ["broke", "close"]
