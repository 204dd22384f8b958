"""Fuzz: the numbers guard (rlaif/numbers.py). Label, score and revision folders edited by hand (any field set to
any value, a field dropped, a line repeated) through `rlaif export`; feedback files through the training reader;
judge outputs of any value through the record builders. The invariant: never an `ok` record, an exported row or a
training pair with a non-finite or off-range number, never a traceback or an internal error (see
tests/fuzz/helpers.py for what every command run must end in)."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlaif.config.feedback import FeedbackConfig
from rlaif.config.judge import PythonJudgeConfig
from rlaif.config.run import PairsConfig
from rlaif.constitution import Constitution, Principle
from rlaif.judges.base import Judge
from rlaif.labeling.job import label
from rlaif.labeling.pairwise import judge_pairs
from rlaif.numbers import label_problem, real, score_record_problem
from rlaif.records import Pair, ScoreVerdict, Verdict
from rlaif.revision.job import revise
from rlaif.scoring.job import score
from rlaif.scoring.rate import rate_responses
from rlaif.train.data import read_feedback
from tests.fuzz.helpers import anything, assert_clean_end, cli, fuzz_settings, numbers, strict_json
from tests.labeling.jobfiles import polite_rows, write_rows
from tests.revision.files import CONSTITUTION as REVISABLE
from tests.revision.files import prompt_rows

pytestmark = pytest.mark.filterwarnings("ignore")

TWO = Constitution(
    name="two",
    version="1",
    sampling="all",
    principles=[
        Principle(id="polite", text="Which is more polite?", weight=2),
        Principle(id="rude", text="Which is ruder?", invert=True),
    ],
)
values = st.one_of(anything, numbers, st.sampled_from([0.5, 1.0, 0.0, -0.0, 1.0000001, "a", "b", "tie", "ok"]))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("fuzz-folders")
    (tmp / "judge.yaml").write_text("backend: python\nfunction: tests.judge_fns:prefers_polite\n")
    (tmp / "score.yaml").write_text("backend: python\nmode: score\nfunction: tests.judge_fns:score_polite\n")
    (tmp / "reviser.yaml").write_text("backend: python\nfunction: tests.revision.revisers:polite\n")
    (tmp / "c.yaml").write_text(REVISABLE)
    pairs = write_rows(tmp / "pairs.jsonl", polite_rows(3) + [{**polite_rows(1, "t")[0], "response_b": "please"}])
    label(pairs, TWO, tmp / "judge.yaml", tmp / "labels", progress=False)
    score(pairs, tmp / "c.yaml", tmp / "score.yaml", tmp / "scores", progress=False)
    revise(
        write_rows(tmp / "prompts.jsonl", prompt_rows(3)),
        tmp / "c.yaml",
        tmp / "reviser.yaml",
        tmp / "revisions",
        progress=False,
    )
    return {"labels": tmp / "labels", "scores": tmp / "scores", "revisions": tmp / "revisions"}


edits = st.lists(
    st.tuples(
        st.sampled_from(["set", "set", "set", "drop", "repeat"]),
        st.integers(0, 7),
        st.sampled_from(
            [
                "p_a",
                "label",
                "status",
                "id",
                "prompt",
                "response_a",
                "response_b",
                "p_a_orders",
                "per_principle",
                "scores",
                "source",
                "p_a_raw",
                "label_mass",
                "score",
                "reward",
                "distribution",
                "prompt_id",
                "response",
                "invert",
                "principle_id",
                "final",
                "initial",
                "rounds",
                "annotator",
            ]
        ),
        values,
    ),
    min_size=1,
    max_size=3,
)


def edited_copy(src: Path, dst: Path, name: str, changes) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file() and f.name != "job.lock":
            (dst / f.name).write_bytes(f.read_bytes())
    records = [json.loads(x) for x in (src / name).read_text().splitlines()]
    for op, line, field, value in changes:
        record = records[line % len(records)]
        if op == "set":
            record[field] = value
        elif op == "drop":
            record.pop(field, None)
        else:
            records.append(dict(record))
    # json.dumps writes NaN and Infinity as a hand-edited file may hold them
    (dst / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return dst


def exported(path: Path) -> list[dict]:
    return [strict_json(x) for x in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def assert_probability_rows(rows: list[dict]) -> None:
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), ids
    for r in rows:
        assert real(r["p_chosen"]) is not None and 0.5 <= r["p_chosen"] <= 1.0, r


@fuzz_settings(60, shrink=False)
@given(changes=edits)
def test_fuzz_edited_label_folders_through_export_and_training(folders, changes):
    with tempfile.TemporaryDirectory() as tmp:
        folder = edited_copy(folders["labels"], Path(tmp) / "labels", "labels.jsonl", changes)
        result = cli("export", "--labels", folder, "--out", Path(tmp) / "trl.jsonl")
        assert_clean_end(result)
        assert_probability_rows(exported(Path(tmp) / "trl.jsonl"))
        try:
            data = read_feedback(FeedbackConfig(source="ai", ai=str(folder)), PairsConfig(eval_fraction=0))
        except ValueError as e:
            assert str(folder) in str(e) or "feedback" in str(e), e  # refused, naming the file (or the pair)
        else:
            assert all(real(p.p_a) is not None and 0.0 <= p.p_a <= 1.0 for p in data.train)
            assert len({p.id for p in data.train}) == len(data.train)


@fuzz_settings(60, shrink=False)
@given(changes=edits, pairs_from=st.sampled_from([None, "best-vs-worst", "all-above-margin"]))
def test_fuzz_edited_score_folders_through_export(folders, changes, pairs_from):
    with tempfile.TemporaryDirectory() as tmp:
        folder = edited_copy(folders["scores"], Path(tmp) / "scores", "scores.jsonl", changes)
        extra = ["--pairs-from", pairs_from] if pairs_from else []
        result = cli("export", "--labels", folder, "--out", Path(tmp) / "trl.jsonl", *extra)
        assert_clean_end(result)
        rows = exported(Path(tmp) / "trl.jsonl")
        assert_probability_rows(rows)
        for r in rows:
            for s in (r.get("score_chosen"), r.get("score_rejected")):
                assert s is None or (real(s) is not None and 1 <= s <= 10)


@fuzz_settings(40, shrink=False)
@given(changes=edits, fmt=st.sampled_from(["sft", "trl"]))
def test_fuzz_edited_revision_folders_through_export(folders, changes, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        folder = edited_copy(folders["revisions"], Path(tmp) / "revisions", "revisions.jsonl", changes)
        result = cli("export", "--revisions", folder, "--out", Path(tmp) / "out.jsonl", "--format", fmt)
        assert_clean_end(result)
        rows = exported(Path(tmp) / "out.jsonl")
        assert len({r["id"] for r in rows}) == len(rows)
        for r in rows:
            final = r["messages"][-1]["content"] if fmt == "sft" else r["chosen"][0]["content"]
            assert isinstance(final, str) and final.strip()


feedback_records = st.lists(
    st.fixed_dictionaries(
        {
            "id": st.one_of(st.sampled_from(["a", "b", "c"]), values),
            "status": st.sampled_from(["ok"] * 4 + ["failed", 1]),
            "prompt": st.sampled_from(["q", "r"]),
            "response_a": st.just("x"),
            "response_b": st.just("y"),
            "p_a": st.one_of(st.floats(0, 1), values),
            "label": st.sampled_from(["a", "b", "tie", None, "x"]),
        },
        optional={
            "source": st.sampled_from(["ai", "human", "robot"]),
            "annotator": st.sampled_from(["ann", "bob"]),
            "p_a_orders": st.lists(values, max_size=3),
        },
    ),
    min_size=1,
    max_size=6,
)


@fuzz_settings(80)
@given(records=feedback_records, soft=st.booleans())
def test_fuzz_feedback_files_never_give_a_training_pair_off_range(records, soft):
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "labels.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in records))
        try:
            data = read_feedback(FeedbackConfig(source="ai", ai=str(f)), PairsConfig(eval_fraction=0, soft=soft))
        except ValueError as e:  # refused: at FILE:LINE, or nothing usable (named as such)
            assert f"{f}:" in str(e) or "no usable" in str(e), e
            return
        for p in data.train:
            assert real(p.p_a) is not None and 0.0 <= p.p_a <= 1.0
        assert len({p.id for p in data.train}) == len(data.train)


class AnyJudge(Judge):
    """A judge whose every answer is drawn: any p_first and label mass, any score distribution and mass."""

    def __init__(self, data, mode: str = "pairwise"):
        super().__init__(
            PythonJudgeConfig(function="tests.judge_fns:prefers_polite", mode=mode)
            if mode == "score"
            else PythonJudgeConfig(function="tests.judge_fns:prefers_polite")
        )
        self.data = data

    def judge(self, queries):
        return [
            Verdict(
                self.data.draw(st.one_of(st.floats(0, 1), numbers, st.none())),
                label_mass=self.data.draw(st.one_of(st.none(), numbers)),
            )
            for _ in queries
        ]

    def score(self, queries):
        n = len(self.config.score.values)
        probs = st.one_of(
            st.lists(st.floats(0, 1), min_size=n, max_size=n).map(
                lambda ps: [p / sum(ps) for p in ps] if sum(ps) > 0 else ps
            ),
            st.lists(st.one_of(numbers, st.floats(0, 1)), min_size=n - 1, max_size=n + 1),
            st.none(),
        )
        return [
            ScoreVerdict(self.data.draw(probs), mass=self.data.draw(st.one_of(st.none(), numbers))) for _ in queries
        ]


@fuzz_settings(80)
@given(data=st.data())
def test_fuzz_judge_outputs_never_make_an_ok_record_off_range(data):
    pairs = [Pair("q", "please, yes", "no"), Pair("r", "fine", "please")]
    for r in judge_pairs(AnyJudge(data), pairs, TWO):
        record = r.to_json()
        json.dumps(record, allow_nan=False)  # strict JSON, whatever the judge said
        assert (r.status == "ok") == (label_problem(record) is None and r.p_a is not None), record
    judge = AnyJudge(data, mode="score")
    for r in rate_responses(judge, "q", ["please", "no"], TWO):
        record = r.to_json()
        json.dumps(record, allow_nan=False)
        if r.status == "ok":
            assert score_record_problem(record, (1, 10)) is None and math.isfinite(r.score)
        else:
            assert r.error and r.score is None and r.reward is None
