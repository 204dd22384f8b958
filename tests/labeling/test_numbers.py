"""A record is `ok` only when its numbers are probabilities: infinite weights are refused where they are written,
NaN from a judge becomes a failed record (never NaN in the file), an odd label mass is flagged and counted; and
a run whose judge cannot tell the responses apart says so in one plain line."""

from __future__ import annotations

import json
import math

import pytest

from rlaif.config.judge import PythonJudgeConfig
from rlaif.constitution import Constitution, Principle
from rlaif.feedback.export import export_trl
from rlaif.judges.base import Judge
from rlaif.labeling.job import label
from rlaif.labeling.pairwise import OUT_OF_RANGE
from rlaif.records import Verdict
from tests.helpers import run_cli
from tests.labeling.jobfiles import job_files, polite_rows, rlaif_label, stored, strict_records, write_rows

TWO = Constitution(
    name="two",
    version="1",
    sampling="all",
    principles=[Principle(id="polite", text="Which is more polite?"), Principle(id="kind", text="Which is kinder?")],
)


@pytest.mark.parametrize("weight", [".inf", ".nan", "-.inf"])
def test_a_weight_that_is_no_finite_positive_number_is_file_line(tmp_path, weight):
    files = job_files(
        tmp_path,
        polite_rows(2),
        constitution=(
            "name: c\nversion: '1'\nsampling: all\nprinciples:\n  - id: polite\n    text: Which is more polite?\n"
            f"  - id: kind\n    text: Which is kinder?\n    weight: {weight}\n"
        ),
    )
    p = rlaif_label(files)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith(f"{files['constitution']}:9: principles[1].weight: Input should be")
    assert not files["out"].exists()
    check = run_cli("constitution", "check", files["constitution"])
    assert check.returncode != 0 and f"{files['constitution']}:9: principles[1].weight:" in check.stderr


def test_numbers_out_of_range_make_a_failed_record_not_a_nan_label(tmp_path):
    # an infinite weight that bypassed validation (a constitution built in code) makes every mean NaN
    const = TWO.model_copy(
        update={"principles": [TWO.principles[0], TWO.principles[1].model_copy(update={"weight": math.inf})]}
    )
    pairs = write_rows(tmp_path / "pairs.jsonl", polite_rows(3))
    label(pairs, const, PythonJudgeConfig(function="tests.judge_fns:prefers_polite"), tmp_path / "out", progress=False)
    recs = stored(tmp_path / "out")  # strict JSON: no NaN anywhere
    for r in recs.values():
        assert r["status"] == "failed" and r["p_a"] is None and r["label"] is None
        assert r["error"] == (
            f"{OUT_OF_RANGE}: principle weight 2 is inf, not a finite number above 0 (check the constitution's weights)"
        )
    assert export_trl(tmp_path / "out", tmp_path / "trl.jsonl")["written"] == 0


class _Numbers(Judge):
    """Answers every query with the (p_first, label_mass) the pair's prompt names."""

    ANSWERS = {"nan": (math.nan, None), "above": (1.2, None), "mass": (0.8, 1.5), "fine": (0.8, 0.97)}

    def __init__(self):
        super().__init__(PythonJudgeConfig(function="tests.judge_fns:prefers_polite"))

    def judge(self, queries):
        out = []
        for q in queries:
            p, mass = self.ANSWERS[q.prompt]
            out.append(Verdict(p if q.first.startswith("A") else 1 - p, label_mass=mass))
        return out


def test_a_judge_verdict_out_of_range_fails_and_an_odd_label_mass_is_flagged(tmp_path):
    pairs = write_rows(
        tmp_path / "pairs.jsonl",
        [{"id": k, "prompt": k, "response_a": "A one", "response_b": "B two"} for k in _Numbers.ANSWERS],
    )
    const = TWO.model_copy(update={"sampling": "polite"})
    result = label(pairs, const, _Numbers(), tmp_path / "out", progress=False)
    recs = stored(tmp_path / "out")
    assert recs["nan"]["status"] == recs["above"]["status"] == "failed"
    assert "p_first of 'polite' (a first) is nan, not a finite number" in recs["nan"]["error"]
    assert "p_first of 'polite' (a first) = 1.2 is outside [0, 1]" in recs["above"]["error"]
    assert recs["mass"]["status"] == "ok" and recs["mass"]["flags"] == ["label_mass_out_of_range"]
    assert recs["mass"]["label_mass"] == pytest.approx(1.5)
    assert recs["fine"]["status"] == "ok" and "flags" not in recs["fine"]
    assert result.stats["flags"] == {"label_mass_out_of_range": 1}
    assert result.stats["failed_judge"] == 2 and result.stats["failed_this_run"] == 2


@pytest.mark.parametrize(
    "function, note", [("tests.judge_fns:first_slot", True), ("tests.judge_fns:prefers_polite", False)]
)
def test_the_summary_says_plainly_when_the_judge_cannot_tell(tmp_path, function, note):
    files = job_files(tmp_path, polite_rows(4), function=function)
    p = rlaif_label(files)
    assert p.returncode == 0, p.stderr
    notes = [line for line in p.stdout.splitlines() if line.startswith("Note:")]
    if not note:
        assert notes == []
        return
    assert notes == [
        "Note: 4 of this run's 4 labels are ties and in 4 of 4 pairs the judge picked a different "
        "response once the order was swapped: this judge cannot tell these responses apart, so these "
        "labels will not teach a preference. Use a more capable judge: judges/vllm.yaml (a GPU) or "
        "judges/openai.yaml (an OpenAI-compatible server)."
    ]
    stats = json.loads((files["out"] / "stats.json").read_text())
    assert stats["run_labels"] == {"a": 0, "b": 0, "tie": 4} and stats["run_inconsistent"] == 4
    assert len(strict_records(files["out"] / "labels.jsonl")) == 4
