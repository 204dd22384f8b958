"""Fitting a jury against people (`rlaif calibrate fit --method jury`): the jury's formula by hand, the weights of
a known generating model recovered within their bootstrap intervals, pairs matched across members in either
response order, the refusal of too few pairs, and the command writing weights.json and naming a pure-noise member."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rlaif.cli import app
from rlaif.feedback.calibration.jury import PAIRS_PER_WEIGHT, fit_jury, jury_p, weights_sha256
from rlaif.feedback.calibration.match import human_labels, match_members
from rlaif.records import sha256_json
from tests.helpers import ai_record, human_record, run_cli, write_jsonl

SHORT, LONG = "short", "a longer reply"  # the responses of ai_record and human_record


def _judge(k: int) -> dict:
    return {"backend": "python", "model": f"member{k}", "settings_sha256": f"{k:x}" * 64}


def _synthetic(n: int, weights, intercept: float = 0.0, seed: int = 0):
    """A known generating model: member i's log-odds z_i ~ N(0, 1.5²) per pair, people choose a with probability
    σ(b + Σ w_i z_i). Returns the members' p_a (one column each) and people's choices."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, (n, len(weights)))
    chose_a = rng.random(n) < 1 / (1 + np.exp(-(intercept + z @ np.asarray(weights))))
    return 1 / (1 + np.exp(-z)), chose_a


def _runs(p: np.ndarray, chose_a: np.ndarray, swapped=(), failed=None) -> tuple[list[list[dict]], list[dict]]:
    """Each member's label records and people's, one pair per row; a member in `swapped` saw every pair in the
    other response order; `failed` = (member, row) a member failed on."""
    runs = []
    for k in range(p.shape[1]):
        flip = k in swapped
        runs.append(
            [
                ai_record(
                    f"id{i}",
                    None if failed == (k, i) else float(1 - p[i, k] if flip else p[i, k]),
                    status="failed" if failed == (k, i) else "ok",
                    a=LONG if flip else SHORT,
                    b=SHORT if flip else LONG,
                    judge=_judge(k),
                )
                for i in range(len(p))
            ]
        )
    return runs, [human_record(f"id{i}", "a" if c else "b", "ann") for i, c in enumerate(chose_a)]


def _members(k: int) -> list[dict]:
    return [{"name": f"m{i}", "judge_hash": _judge(i)["settings_sha256"]} for i in range(k)]


def test_jury_p_is_the_logistic_combination_by_hand():
    p = np.array([[0.8, 0.3], [0.5, 1.0]])
    want = [
        1 / (1 + math.exp(-(0.1 + 1.0 * math.log(4) + 2.0 * math.log(3 / 7)))),
        1 / (1 + math.exp(-(0.1 + 2.0 * math.log((1 - 1e-6) / 1e-6)))),  # p = 1 is clipped to 1 - 1e-6
    ]
    assert jury_p(p, [1.0, 2.0], 0.1) == pytest.approx(want)


@pytest.mark.parametrize("symmetric", [True, False])
def test_fit_recovers_the_generating_weights_within_their_intervals(symmetric):
    weights, intercept = [1.2, -0.6, 0.4], 0.0 if symmetric else 0.5
    p, chose_a = _synthetic(1500, weights, intercept, seed=1)
    runs, humans = _runs(p, chose_a)
    doc = fit_jury(match_members(runs, human_labels(humans)), _members(3), holdout=0.2, symmetric=symmetric, n_boot=200)
    for w, (lo, hi) in zip(weights, doc["intervals"]):
        assert lo <= w <= hi and hi - lo < 0.5, (weights, doc["weights"], doc["intervals"])
    lo, hi = doc["intercept_interval"]
    assert lo <= intercept <= hi
    if symmetric:  # each pair also entered swapped: no intercept to fit
        assert doc["intercept"] == 0.0 and doc["intercept_interval"] == [0.0, 0.0]
    assert doc["no_signal"] == []
    assert doc["sha256"] == sha256_json(
        {"members": ["0" * 64, "1" * 64, "2" * 64], "weights": doc["weights"], "intercept": doc["intercept"]}
    )
    # the jury beats its best member on the held-out pairs, as the generating model says it should
    rows = {r["name"]: r for r in doc["evaluation"]["heldout"]["rows"]}
    assert rows["jury"]["auc"] > max(rows[f"m{k}"]["auc"] for k in range(3))
    assert doc["evaluation"]["heldout"]["n"] + doc["n_pairs"] == 1500


def test_members_match_by_id_in_either_order_and_a_failed_pair_is_left_out():
    p, chose_a = _synthetic(200, [1.0, 1.0], seed=2)
    plain = fit_jury(match_members(*_with_humans(_runs(p, chose_a))), _members(2), holdout=0.0, n_boot=0)
    ms = match_members(*_with_humans(_runs(p, chose_a, swapped=(1,), failed=(0, 7))))
    assert [len(m) for m in ms] == [199, 199] and ms[0].ids == ms[1].ids and "id7" not in ms[1].ids
    assert ms[1].counts["left_out_by_other_members"] == 1 and ms[0].counts["ai_failed"] == 1
    assert ms[1].p_a.tolist() == pytest.approx(p[np.arange(200) != 7, 1].tolist())  # back in member 1's order
    swapped = fit_jury(ms, _members(2), holdout=0.0, n_boot=0)
    assert swapped["weights"] == pytest.approx(plain["weights"], abs=0.05)


def _with_humans(runs_humans):
    runs, humans = runs_humans
    return runs, human_labels(humans)


def test_too_few_pairs_for_the_members_is_refused():
    p, chose_a = _synthetic(3 * PAIRS_PER_WEIGHT - 1, [1.0, 1.0, 1.0], seed=3)
    ms = match_members(*_with_humans(_runs(p, chose_a)))
    with pytest.raises(ValueError, match=r"29 pairs to fit a jury of 3 on .* at least 10 per weight, 30"):
        fit_jury(ms, _members(3), holdout=0.0)
    with pytest.raises(ValueError, match="at least 10 per weight, 40"):  # and the intercept, when it is fitted
        fit_jury(ms, _members(3), holdout=0.0, symmetric=False)


def _write_runs(tmp_path: Path, p: np.ndarray, chose_a: np.ndarray) -> tuple[list[Path], Path]:
    runs, humans = _runs(p, chose_a)
    dirs = [write_jsonl(tmp_path / name / "labels.jsonl", run).parent for name, run in zip(("a", "b", "noise"), runs)]
    return dirs, write_jsonl(tmp_path / "human.jsonl", humans)


def test_cli_fit_jury_writes_weights_and_names_the_member_with_no_signal(tmp_path):
    p, chose_a = _synthetic(400, [1.5, 1.0, 0.0], seed=4)  # the third member is pure noise
    dirs, human = _write_runs(tmp_path, p, chose_a)
    out = tmp_path / "jury"
    args = ["calibrate", "fit", "--method", "jury", "--human", human, "--out", out, "--resamples", "200"]
    proc = run_cli(*args, *(x for d in dirs for x in ("--ai", d)))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("no signal")]
    assert lines == ["no signal (weight interval contains 0): noise"], proc.stdout
    assert "held-out pairs" in proc.stdout and "jury" in proc.stdout
    doc = json.loads((out / "weights.json").read_text())
    assert doc["format"] == "rlaif-jury-weights" and [m["name"] for m in doc["members"]] == ["a", "b", "noise"]
    assert [m["judge_hash"] for m in doc["members"]] == ["0" * 64, "1" * 64, "2" * 64]
    assert len(doc["weights"]) == len(doc["intervals"]) == 3 and doc["intercept"] == 0.0
    assert doc["sha256"] == weights_sha256(doc) and doc["n_pairs"] > 100
    assert [r["name"] for r in doc["evaluation"]["heldout"]["rows"]] == ["a", "b", "noise", "jury"]
    report = json.loads((out / "report.json").read_text())
    assert report["evaluation"]["heldout"]["rows"][3]["details"]["agreement"]["ci95"] is not None


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "pairs to fit a jury of 3 on"),  # 30 pairs, half held out
        (["--ai", "{a}"], "are labels of the same judge"),
    ],
)
def test_cli_fit_jury_refusals_are_one_line(tmp_path, capsys, extra, message):
    p, chose_a = _synthetic(30, [1.0, 1.0, 1.0], seed=5)
    dirs, human = _write_runs(tmp_path, p, chose_a)
    args = ["calibrate", "fit", "--method", "jury", "--human", str(human), "--out", str(tmp_path / "j")]
    args += [x for d in dirs for x in ("--ai", str(d))] + [a.format(a=dirs[0]) for a in extra]
    result = CliRunner().invoke(app, args)
    text = result.output + capsys.readouterr().err
    assert result.exit_code == 2 and message in text and "Traceback" not in text, text
    assert len(text.strip().splitlines()) == 1 and not (tmp_path / "j").exists()


def test_cli_map_methods_take_one_judge(tmp_path, capsys):
    p, chose_a = _synthetic(30, [1.0, 1.0], seed=6)
    runs, humans = _runs(p, chose_a)
    a, b = (write_jsonl(tmp_path / f"{k}.jsonl", run) for k, run in enumerate(runs))
    args = ["calibrate", "fit", "--ai", str(a), "--ai", str(b), "--human", str(a), "--out", str(tmp_path / "m.json")]
    result = CliRunner().invoke(app, args)
    text = result.output + capsys.readouterr().err
    assert result.exit_code == 2 and "give one --ai (several are for --method jury)" in text
