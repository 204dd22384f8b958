"""Juries (`backend: jury`): the combination worked by hand (mean, majority with a split vote, fitted log-odds), each
member's p_a on the record exactly as the member gives it alone (a pairwise rule debiased over both orders, a score
rule through σ((s_a − s_b)/T)), a failed member left out of its pair's combination, every member failing failing
the pair; the hash follows the members, the aggregate and the weights; a bad jury file, member or weights file is
one line naming the jury file and what is wrong; the numbers guard reads `per_member`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import rlaif
from rlaif.config.judge import load_judge_config
from rlaif.config.yamlfile import ConfigFileError
from rlaif.constitution import Constitution, Principle
from rlaif.feedback.calibration.jury import jury_p
from rlaif.feedback.calibration.maps import EPS
from rlaif.judges.registry import load_judge
from rlaif.labeling.pairwise import is_input_failure
from rlaif.numbers import label_problem
from rlaif.preference import JURY_EPS, jury_p_a
from rlaif.records import Pair, weights_sha256

POLITE = "backend: python\nfunction: tests.judge_fns:prefers_polite\n"  # 0.9 / 0.1 / 0.5, either order
BROKEN = "backend: python\nfunction: tests.judge_fns:broken\n"  # raises on "boom", else 0.7 whatever the order
SCORED = "backend: python\nmode: score\nfunction: tests.judge_fns:score_polite\nscore: {temperature: 2.0}\n"
C = Constitution(name="c", version="1", principles=[Principle(id="polite", text="Which is more polite?")])


def sigma(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def logit(p: float) -> float:
    return math.log(p / (1.0 - p))


# -- the maths, by hand --------------------------------------------------------------------------------------------
def test_mean_and_majority_by_hand():
    assert jury_p_a([0.9, 0.6, 0.3], "mean") == pytest.approx(0.6)
    assert jury_p_a([0.9, 0.6, 0.2], "majority") == pytest.approx(2 / 3)
    assert jury_p_a([0.9, 0.5, 0.2, 0.1], "majority") == pytest.approx(1.5 / 4)  # exactly 0.5: half a vote
    # a failed member (None) is left out: the rest are renormalised
    assert jury_p_a([0.9, None, 0.3], "mean") == pytest.approx(0.6)
    assert jury_p_a([0.9, None, 0.2], "majority") == pytest.approx(0.5)
    assert jury_p_a([None, None], "mean") is None and jury_p_a([None], "fitted", [1.0]) is None


def test_fitted_by_hand_and_as_the_fit_computes_it():
    w, b = [1.0, 2.0, -0.5], 0.25
    want = sigma(0.25 + 1.0 * logit(0.8) + 2.0 * logit(0.3) - 0.5 * logit(0.6))
    assert jury_p_a([0.8, 0.3, 0.6], "fitted", w, b) == pytest.approx(want, rel=1e-12)
    # a failed member's term is left out, the other weights stay as fitted (it counts as having said 0.5)
    assert jury_p_a([0.8, None, 0.6], "fitted", w, b) == pytest.approx(sigma(0.25 + logit(0.8) - 0.5 * logit(0.6)))
    assert jury_p_a([0.8, 0.5, 0.6], "fitted", w, b) == jury_p_a([0.8, None, 0.6], "fitted", w, b)
    # 0 and 1 are clipped as the fit clips them: the judge's p_a is the fit's prediction, to the last digit
    assert JURY_EPS == EPS
    ps = np.random.default_rng(0).uniform(size=(50, 3))
    ps[0] = [0.0, 1.0, 0.5]
    got = [jury_p_a(list(row), "fitted", w, b) for row in ps]
    assert got == pytest.approx(list(jury_p(ps, w, b)), rel=1e-9, abs=1e-15)


# -- a jury judging pairs -------------------------------------------------------------------------------------------
def jury_file(tmp_path, body: str, **members: str):
    for name, text in members.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    path = tmp_path / "jury.yaml"
    path.write_text(body)
    return path


def weights_file(path, members: list[tuple[str, str]], weights, intercept=0.0, edit=None):
    """A weights.json as `rlaif calibrate fit --method jury` writes it: `members` (name, judge file)."""
    entries = []
    for name, judge in members:
        cfg = load_judge_config(judge)
        entry = {"name": name, "judge_hash": cfg.settings_sha256(), "labels": f"runs/{name}"}
        if cfg.mode == "score":
            entry["score_temperature"] = cfg.score.temperature
        entries.append(entry)
    doc = {"format": "rlaif-jury-weights", "version": 1, "members": entries, "weights": weights, "intercept": intercept}
    doc["sha256"] = weights_sha256(doc)
    path.write_text(json.dumps({**doc, **(edit or {})}))
    return path


PAIRS = [Pair("q", "please help", "no", id="p1"), Pair("q", "no", "sure, please", id="p2")]


def test_each_member_gives_the_jury_its_p_a_as_alone(tmp_path):
    path = jury_file(tmp_path, "backend: jury\nmembers: [polite.yaml, scored.yaml]\n", polite=POLITE, scored=SCORED)
    with load_judge(path) as jury, load_judge(tmp_path / "polite.yaml") as polite:
        records = rlaif.judge_pairs(jury, PAIRS, C)
        alone = rlaif.judge_pairs(polite, PAIRS, C)
    scored = [sigma((8 - 3) / 2.0), sigma((3 - 8) / 2.0)]  # score_polite: 8 for "please", 3 otherwise; T = 2
    for r, a, s in zip(records, alone, scored):
        assert r.status == "ok" and r.judge.backend == "jury" and r.jury_weights_sha256 is None
        assert [(m.name, m.status) for m in r.per_member] == [("polite", "ok"), ("scored", "ok")]
        assert r.per_member[0].p_a == a.p_a and r.per_member[1].p_a == pytest.approx(s, rel=1e-12)
        assert r.p_a == pytest.approx((a.p_a + s) / 2)
        # each order combined alike: the pairwise member's orders, the score member's p_a in both
        assert r.p_a_orders == pytest.approx([(a.p_a_orders[j] + s) / 2 for j in (0, 1)])
        assert label_problem(r.to_json()) is None
    assert [r.label for r in records] == ["a", "b"]


def test_fitted_weights_combine_the_log_odds_and_mark_the_record(tmp_path):
    jury_file(tmp_path, "", polite=POLITE, scored=SCORED)
    w = weights_file(
        tmp_path / "w.json", [("s", tmp_path / "scored.yaml"), ("p", tmp_path / "polite.yaml")], [0.5, 2.0], 0.1
    )
    path = jury_file(
        tmp_path, "backend: jury\nmembers: [polite.yaml, scored.yaml]\naggregate: fitted\nweights: w.json\n"
    )
    with load_judge(path) as jury:
        r = rlaif.judge_pairs(jury, PAIRS[:1], C)[0]
    # matched by judge hash, not by order: polite's weight is 2.0, the score member's 0.5
    want = sigma(0.1 + 2.0 * logit(0.9) + 0.5 * logit(sigma(2.5)))
    assert r.p_a == pytest.approx(want, rel=1e-9)
    assert r.jury_weights_sha256 == json.loads(w.read_text())["sha256"]
    assert r.to_json()["jury_weights_sha256"] == r.jury_weights_sha256


@pytest.mark.parametrize("aggregate", ["mean", "majority", "fitted"])
def test_a_failed_member_is_left_out_and_all_failed_fails_the_pair(tmp_path, aggregate):
    jury_file(tmp_path, "", polite=POLITE, broken=BROKEN)
    weights = ""
    if aggregate == "fitted":
        members = [("b", tmp_path / "broken.yaml"), ("p", tmp_path / "polite.yaml")]
        weights_file(tmp_path / "w.json", members, [1.5, 0.5], 0.0)
        weights = "weights: w.json\n"
    path = jury_file(tmp_path, f"backend: jury\nmembers: [broken.yaml, polite.yaml]\naggregate: {aggregate}\n{weights}")
    pairs = [Pair("q", "boom, please", "no", id="one-failed"), Pair("q", "fine", "please", id="none-failed")]
    with load_judge(path) as jury:
        one, none = rlaif.judge_pairs(jury, pairs, C)
    assert [m.status for m in one.per_member] == ["failed", "ok"] and one.per_member[0].p_a is None
    assert "the rule cannot judge this pair" in one.per_member[0].error
    polite_only = {"mean": 0.9, "majority": 1.0, "fitted": sigma(0.5 * logit(0.9))}[aggregate]
    assert one.status == "ok" and one.p_a == pytest.approx(polite_only)
    # broken says 0.7 in either order (0.5 once debiased), polite 0.1
    both = {"mean": (0.5 + 0.1) / 2, "majority": 0.25, "fitted": sigma(1.5 * logit(0.5) + 0.5 * logit(0.1))}
    assert none.p_a == pytest.approx(both[aggregate])
    assert one.to_json()["per_member"][0] == {
        "name": "broken",
        "p_a": None,
        "status": "failed",
        "error": one.per_member[0].error,
    }


def test_every_member_failing_fails_the_pair(tmp_path):
    path = jury_file(
        tmp_path,
        "backend: jury\nmembers: [broken.yaml, again.yaml]\n",
        broken=BROKEN,
        again=BROKEN + "tie_margin: 0.1\n",
    )
    with load_judge(path) as jury:
        failed, fine = rlaif.judge_pairs(jury, [Pair("q", "boom", "no", id="f"), Pair("q", "x", "y", id="g")], C)
    assert failed.status == "failed" and failed.p_a is None and failed.label is None
    assert failed.error.startswith("every member of the jury failed (broken: RuntimeError: the rule cannot judge")
    assert "; again: RuntimeError" in failed.error and not is_input_failure(failed.error)
    assert [m.status for m in failed.per_member] == ["failed", "failed"]
    assert label_problem(failed.to_json()) is None
    assert fine.status == "ok" and fine.p_a == pytest.approx(0.5)  # 0.7 in either order: 0.5 once debiased


# -- the hash -------------------------------------------------------------------------------------------------------
def test_the_hash_follows_the_members_the_aggregate_and_the_weights(tmp_path):
    path = jury_file(tmp_path, "backend: jury\nmembers: [polite.yaml, scored.yaml]\n", polite=POLITE, scored=SCORED)
    base = load_judge_config(path).settings_sha256()
    assert load_judge_config(path).settings_sha256() == base  # stable
    (tmp_path / "polite.yaml").write_text(POLITE + "tie_margin: 0.2\n")  # a member's setting
    changed_member = load_judge_config(path).settings_sha256()
    (tmp_path / "polite.yaml").write_text(POLITE)
    (tmp_path / "scored.yaml").write_text(SCORED.replace("2.0", "3.0"))  # T is not in a member's hash
    assert load_judge_config(path).settings_sha256() == base
    path.write_text("backend: jury\nmembers: [polite.yaml, scored.yaml]\naggregate: majority\n")
    majority = load_judge_config(path).settings_sha256()
    members = [("p", tmp_path / "polite.yaml"), ("s", tmp_path / "scored.yaml")]
    path.write_text("backend: jury\nmembers: [polite.yaml, scored.yaml]\naggregate: fitted\nweights: w.json\n")
    weights_file(tmp_path / "w.json", members, [1.0, 1.0])
    fitted = load_judge_config(path).settings_sha256()
    weights_file(tmp_path / "w.json", members, [1.0, 1.25])  # one weight changed
    refitted = load_judge_config(path).settings_sha256()
    assert len({base, changed_member, majority, fitted, refitted}) == 5


# -- refusals, one line each ----------------------------------------------------------------------------------------
def refused(path) -> str:
    with pytest.raises(ConfigFileError) as e:
        load_judge_config(path)
    assert len(e.value.errors) == 1 and "\n" not in e.value.errors[0], e.value.errors
    return e.value.errors[0]


def test_bad_members_are_one_line_naming_the_jury_file_and_the_member(tmp_path):
    jury_file(tmp_path, "", polite=POLITE, bad="backend: python\nfunction: x:y\nsharpness: 1\nsharp: 2\n")
    path = tmp_path / "jury.yaml"
    path.write_text("backend: jury\nmembers:\n  - polite.yaml\n  - missing.yaml\n")
    line = refused(path)
    assert line.startswith(f"{path}:4: members[1]: {tmp_path / 'missing.yaml'}: cannot read")
    path.write_text("backend: jury\nmembers:\n  - bad.yaml\n")
    line = refused(path)
    assert line.startswith(f"{path}:3: members[0]: {tmp_path / 'bad.yaml'}:") and "(and 1 more problems in it)" in line
    (tmp_path / "inner.yaml").write_text("backend: jury\nmembers: [polite.yaml]\n")
    path.write_text("backend: jury\nmembers: [inner.yaml]\n")
    assert "a jury of juries is not supported" in refused(path)
    path.write_text("backend: jury\nmembers: [polite.yaml, ./polite.yaml]\n")
    assert "members[1]: ./polite.yaml is the same judge as members[0] (polite.yaml" in refused(path)
    path.write_text("backend: jury\nmembers: [polite.yaml]\naggregate: fitted\n")
    assert f"{path}:3: aggregate: aggregate: fitted needs `weights`" in refused(path)
    path.write_text("backend: jury\nmembers: [polite.yaml]\nweights: w.json\n")
    assert f"{path}:3: weights: aggregate: fitted needs `weights`" in refused(path)
    path.write_text("backend: jury\nmembers: [polite.yaml]\ncot: {enabled: true}\n")
    assert "cot: a jury's members judge as their own files say" in refused(path)


def test_weights_that_are_not_this_jurys_are_refused_in_one_line(tmp_path):
    jury_file(tmp_path, "", polite=POLITE, scored=SCORED, broken=BROKEN)
    path = jury_file(
        tmp_path, "backend: jury\nmembers: [polite.yaml, scored.yaml]\naggregate: fitted\nweights: w.json\n"
    )
    w = tmp_path / "w.json"
    at = f"{path}:4: weights: {w}: "
    polite, scored, broken = (
        ("p", tmp_path / "polite.yaml"),
        ("s", tmp_path / "scored.yaml"),
        ("b", tmp_path / "broken.yaml"),
    )
    weights_file(
        w, [polite, scored], [1.0, 2.0], edit={"weights": [1.0, 3.0]}
    )  # edited after the fit: its sha256 says so
    assert refused(path).startswith(at + "its sha256 does not match")
    weights_file(w, [polite], [1.0])
    line = refused(path)
    assert line.startswith(at + "fitted for other members than this jury's: no weight for member scored (")
    weights_file(w, [polite, scored, broken], [1.0, 1.0, 1.0])
    assert "a weight for b (" in refused(path) and "which is no member of this jury" in refused(path)
    weights_file(w, [polite, scored], [1.0, 1.0])
    (tmp_path / "scored.yaml").write_text(SCORED.replace("2.0", "1.0"))  # T changed since the fit
    assert "member scored's weight was fitted on preferences derived with score_temperature 2.0" in refused(path)
    w.write_text(json.dumps({"format": "rlaif-calibration"}))
    assert refused(path) == at + "not a jury's weights file (format 'rlaif-jury-weights', version 1)"
    w.write_text("{")
    assert refused(path).startswith(at + "not JSON")


# -- the numbers guard ---------------------------------------------------------------------------------------------
def test_the_numbers_guard_reads_per_member():
    ok = {"id": "x", "prompt": "q", "response_a": "a", "response_b": "b", "status": "ok", "label": "a", "p_a": 0.8}
    member = {"name": "m", "status": "ok", "p_a": 0.8}
    assert label_problem({**ok, "per_member": [member, {"name": "n", "status": "failed", "p_a": None}]}) is None
    assert "per_member[0].p_a = 1.5 is outside [0, 1] (member m)" in label_problem(
        {**ok, "per_member": [{**member, "p_a": 1.5}]}
    )
    assert "failed, yet has p_a" in label_problem({**ok, "per_member": [{**member, "status": "failed"}]})
    assert "every member in per_member failed" in label_problem(
        {**ok, "per_member": [{"name": "m", "status": "failed", "p_a": None}]}
    )
    assert "not a member's name" in label_problem({**ok, "per_member": [{"p_a": 0.8, "status": "ok"}]})
    assert "not a list" in label_problem({**ok, "per_member": {}})
