"""Calibration: metrics on hand-computed arrays, bootstrap intervals, fitted maps, applying a map, and
`rlaif calibrate` (report, fit, apply) end to end on small files."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import numpy as np
import pytest

from rlaif.data.labels import read_labels
from rlaif.feedback.calibration.maps import (
    METHODS,
    apply_map,
    fit_isotonic,
    fit_map,
    fit_platt,
    load_map,
    predict,
    split_mask,
)
from rlaif.feedback.calibration.match import human_labels, human_target, load_matched, majority, match
from rlaif.feedback.calibration.metrics import (
    agreement,
    agreement_ties_half,
    auc,
    brier,
    cohen_kappa,
    compare,
    ece,
    length_bias,
    longer_choice_rates,
    murphy,
    pairwise_agreement,
    reliability,
    tie_rate,
)
from rlaif.intervals import bootstrap_ci
from rlaif.preference import label_for
from rlaif.records import IMPORTED_ANNOTATOR
from tests.helpers import ai_record, human_record, run_cli, write_jsonl

A = lambda *xs: np.array(xs, dtype=object)  # noqa: E731


# ---------------------------------------------------------------------------------------------- metrics


def test_agreement_counts_ties_separately():
    ai, human = A("a", "b", "a", "tie", "a"), A("a", "a", "a", "b", "tie")
    # decided by both: pairs 0, 1, 2 -> 2 of 3 agree; the judge tied on 1 of the 4 pairs people decided
    assert agreement(ai, human) == pytest.approx(2 / 3)
    assert tie_rate(ai, human) == pytest.approx(1 / 4)
    assert math.isnan(agreement(A("tie"), A("a")))


def test_cohen_kappa_hand_computed():
    x = A("a", "a", "b", "b", "a", "a", "b", "a")
    y = A("a", "b", "b", "b", "a", "a", "a", "a")
    # p_o = 6/8; p_e = (5/8)(5/8) + (3/8)(3/8) = 34/64; kappa = (48/64 - 34/64) / (30/64) = 14/30
    assert cohen_kappa(x, y) == pytest.approx(14 / 30)
    assert cohen_kappa(A("a", "b"), A("a", "b")) == pytest.approx(1.0)
    assert cohen_kappa(A("a", "b"), A("b", "a")) == pytest.approx(-1.0)
    assert math.isnan(cohen_kappa(A("a", "a"), A("a", "a")))  # p_e = 1: undefined


def test_ece_and_reliability_hand_computed():
    p = np.array([0.1, 0.2, 0.8, 1.0])
    y = np.array([0.0, 1.0, 1.0, 1.0])
    # 2 bins: [0, .5) mean p .15 vs y .5 -> .35; [.5, 1] mean p .9 vs y 1 -> .1; ECE = (2*.35 + 2*.1) / 4
    assert ece(p, y, bins=2) == pytest.approx(0.225)
    rel = reliability(p, y, bins=2)
    assert [b["n"] for b in rel] == [2, 2]
    assert rel[1]["mean_p_a"] == pytest.approx(0.9) and rel[1]["human_rate"] == pytest.approx(1.0)
    assert ece(np.array([0.3, 0.7]), np.array([0.3, 0.7])) == pytest.approx(0.0)
    assert brier(p, y) == pytest.approx((0.01 + 0.64 + 0.04 + 0.0) / 4)


def test_murphy_decomposition_hand_computed():
    p = np.array([0.1, 0.1, 0.3, 0.7, 0.7, 0.9])
    y = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 1.0])
    # 2 bins: [0, .5) mean p 1/6, people 1/3; [.5, 1] mean p 23/30, people 1; base rate o = 2/3
    rel, res, unc, within = murphy(p, y, bins=2)
    assert rel == pytest.approx((3 * (1 / 6) ** 2 + 3 * (7 / 30) ** 2) / 6)
    assert res == pytest.approx((3 * (1 / 3) ** 2 + 3 * (1 / 3) ** 2) / 6)  # 1/9
    assert unc == pytest.approx(2 / 9)  # o(1 - o)
    # the binning's remainder: within-bin variance of p minus twice its covariance with y, per pair
    # bin 0: p - f = (-1/15, -1/15, 2/15), y - o_k = (-1/3, 2/3, -1/3); bin 1: p - f the same, y - o_k = 0
    var = 2 * (1 / 225 + 1 / 225 + 4 / 225)
    cov = (1 / 45) - (2 / 45) - (2 / 45)
    assert within == pytest.approx((var - 2 * cov) / 6)
    assert rel - res + unc + within == pytest.approx(brier(p, y))  # 1.1 / 6
    # one p_a per bin: the decomposition is Murphy's exactly, with soft targets' variance as uncertainty
    p, y = np.array([0.2, 0.2, 0.8, 0.8]), np.array([0.0, 0.5, 1.0, 1.0])
    rel, res, unc, within = murphy(p, y, bins=10)
    assert within == pytest.approx(0.0, abs=1e-15)
    assert (rel, res, unc) == pytest.approx(((0.05**2 + 0.2**2) / 2, 0.375**2, np.var(y)))
    assert rel - res + unc == pytest.approx(brier(p, y))
    # a constant judge puts every pair in one bin: no resolution whatever people chose
    assert murphy(np.full(5, 0.5), np.array([1.0, 0, 1, 1, 0]))[1] == 0.0


def test_auc_is_mann_whitney_with_ties_half():
    human = A("a", "a", "b", "b", "tie")
    # positives .9, .5; negatives .5, .1: pairs (.9>.5) (.9>.1) (.5=.5 half) (.5>.1) -> 3.5 / 4; the tie is left out
    assert auc(np.array([0.9, 0.5, 0.5, 0.1, 0.99]), human) == pytest.approx(3.5 / 4)
    assert auc(np.full(5, 0.5), human) == 0.5
    assert auc(np.array([0.1, 0.2, 0.8, 0.9, 0.5]), human) == 0.0
    assert math.isnan(auc(np.array([0.3, 0.4]), A("a", "a")))


def test_agreement_ties_half_counts_every_pair_people_decided():
    ai, human = A("a", "tie", "b", "tie", "a"), A("a", "a", "a", "b", "tie")
    # people decided 4: right 1, tie 1/2, wrong 0, tie 1/2 -> 2 / 4; the pair people tied is left out
    assert agreement_ties_half(ai, human) == pytest.approx(0.5)
    assert agreement(ai, human) == pytest.approx(0.5)  # over the 2 both decided
    # a judge that always ties earns exactly a coin's 1/2, where agreement over decided pairs has no pairs at all
    assert agreement_ties_half(A("tie", "tie"), A("a", "b")) == 0.5
    assert math.isnan(agreement(A("tie", "tie"), A("a", "b")))
    assert math.isnan(agreement_ties_half(A("a"), A("tie")))


@pytest.mark.parametrize(
    "votes, expected", [(["a", "a", "b"], "a"), (["a", "b"], "tie"), (["a", "tie"], "tie"), (["b"], "b")]
)
def test_human_majority(votes, expected):
    assert majority(votes) == expected


def test_human_human_agreement():
    got = pairwise_agreement([["a", "a"], ["a", "b"], ["a", "a", "b"], ["b"]])
    assert got.tolist() == pytest.approx([1.0, 0.0, 1 / 3])  # a pair with one label does not count


def test_length_bias_hand_computed():
    ai, human = A("a", "a", "b", "b", "a"), A("b", "a", "b", "a", "a")
    len_a, len_b = np.array([10, 10, 3, 3, 5.0]), np.array([2, 2, 9, 9, 5.0])
    # last pair: equal lengths, left out. Longer = a, a, b, b. Judge picks longer 4/4, people 2/4.
    assert length_bias(ai, human, len_a, len_b) == pytest.approx(0.5)
    assert longer_choice_rates(ai, human, len_a, len_b) == (1.0, 0.5)


def test_bootstrap_interval_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(1)
    ai = rng.choice(["a", "b"], 200).astype(object)
    human = np.where(rng.random(200) < 0.7, ai, np.where(ai == "a", "b", "a")).astype(object)
    point = agreement(ai, human)
    ci = bootstrap_ci(agreement, [ai, human], n_boot=300, seed=5)
    assert ci[0] < point < ci[1]
    assert 0.05 < ci[1] - ci[0] < 0.2  # about ±1.96·sqrt(.7·.3/200) = ±0.064
    assert ci == bootstrap_ci(agreement, [ai, human], n_boot=300, seed=5)
    assert ci != bootstrap_ci(agreement, [ai, human], n_boot=300, seed=6)
    assert bootstrap_ci(agreement, [A(), A()]) is None


# ---------------------------------------------------------------------------------------------- matching


def test_human_labels_from_human_records_and_from_human_label():
    records = [
        ai_record("x", 0.9, human="a"),
        human_record("y", "b", "ann1"),
        human_record("y", "a", "ann2"),
        human_record("y", "tie", "ann1"),  # ann1 revised their label: the later one counts
        ai_record("z", 0.2),
    ]
    by_id = human_labels(records)
    assert set(by_id) == {"x", "y"}
    assert by_id["x"][0]["source"] == "human" and by_id["x"][0]["annotator"] == IMPORTED_ANNOTATOR
    assert by_id["x"][0]["p_a"] == 1.0
    assert sorted(r["label"] for r in by_id["y"]) == ["a", "tie"]
    assert human_target(by_id["y"]) == pytest.approx(0.75)


def test_read_labels_skips_a_line_in_flight(tmp_path):
    f = tmp_path / "labels.jsonl"
    f.write_text(json.dumps(ai_record("x", 0.9)) + "\n" + '{"id": "half', encoding="utf-8")
    assert [r["id"] for r in read_labels(tmp_path)] == ["x"]
    assert f.read_text(encoding="utf-8").endswith('"half')  # read-only: the writer's line is not cut
    f.write_text(json.dumps(ai_record("x", 0.9)) + "\n" + json.dumps(ai_record("y", 0.1)), encoding="utf-8")
    assert [r["id"] for r in read_labels(f)] == ["x", "y"]  # a whole record with no final newline counts
    f.write_text('{"id": 1\n' + json.dumps(ai_record("x", 0.9)) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"labels.jsonl:1: corrupt"):
        list(read_labels(f))


def test_human_labels_in_the_other_order_are_swapped_to_match():
    ai = [ai_record("x", 0.9, a="first", b="second")]
    swapped = human_record("x", "b", "ann", response_a="second", response_b="first")  # prefers "first"
    m = match(ai, {"x": [swapped, human_record("x", "tie", "ann2", response_a="second", response_b="first")]})
    assert m.human_votes == [["a", "tie"]] and m.human_p.tolist() == [0.75]
    with pytest.raises(ValueError, match="different responses"):
        match(ai, {"x": [human_record("x", "a", "ann", response_a="other", response_b="first")]})


def test_compare_report_figures_on_crafted_pairs():
    ai = [
        ai_record("1", 0.9, human="a"),
        ai_record("2", 0.8, human="b"),
        ai_record("3", 0.1, human="b"),
        ai_record("4", 0.52, orders=[0.74, 0.3], human="a"),  # a tie that leans to a
        ai_record("5", 0.7, principle="all", per_principle={"p1": 0.9, "p2": 0.2}, human="a"),
        ai_record("6", None, status="failed", human="a"),
    ]
    humans = human_labels(ai)
    humans["1"].append(human_record("1", "b", "ann"))  # pair 1: one "a", one "b" -> majority tie
    m = match(ai, humans)
    assert m.counts == {"ai_records": 6, "ai_failed": 1, "ai_without_human": 0, "human_pairs": 6, "matched": 5}
    r = compare(m, bins=10, n_boot=50)
    # decided by both: 2 (a vs b), 3 (b, b), 5 (a, a) -> 2/3; pair 4 the judge tied
    assert r["agreement"] == pytest.approx(0.6667) and r["details"]["agreement"]["n"] == 3
    assert r["agreement_lean"] == 0.75 and r["details"]["agreement_lean"]["n"] == 4
    assert r["ai_tie_rate"] == pytest.approx(0.25)
    assert r["position_consistency"] == pytest.approx(0.8)
    assert r["human_human_agreement"] == 0.0 and r["details"]["human_human_agreement"]["n"] == 1
    # per principle: p1 from pairs 1-4 (2: miss, 3: hit) and pair 5's p1 (0.9 -> a: hit); p2 from pair 5 (miss)
    assert r["per_principle_agreement"] == {"p1": pytest.approx(0.6667), "p2": 0.0}
    for key in ("agreement", "cohen_kappa", "human_human_agreement", "position_consistency", "ece", "length_bias"):
        assert key in r and key in r["details"]
        assert isinstance(r[key], float)
    assert r["n_pairs"] == 5 and len(r["reliability"]) == 10


# ---------------------------------------------------------------------------------------------- fitting


def _miscalibrated(n: int, seed: int):
    """An overconfident judge: truth q ~ U(0, 1), people choose a with prob q, the judge says σ(3·logit(q))."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0.02, 0.98, n)
    y = (rng.random(n) < q).astype(float)
    p = 1 / (1 + np.exp(-3 * np.log(q / (1 - q))))
    return p, y


@pytest.mark.parametrize("method", METHODS)
def test_fitted_maps_are_monotone_and_reduce_heldout_ece(method):
    p, y = _miscalibrated(4000, seed=0)
    p_test, y_test = _miscalibrated(4000, seed=1)
    cmap = {
        "method": method,
        "params": fit_isotonic(p, y) if method == "isotonic" else fit_platt(p, y, temperature=method == "temperature"),
    }
    grid = np.linspace(0, 1, 501)
    assert np.all(np.diff(predict(cmap, grid)) >= -1e-12)
    before, after = ece(p_test, y_test), ece(predict(cmap, p_test), y_test)
    assert before > 0.1 and after < 0.04, (before, after)
    if method != "isotonic":  # the truth is σ(logit(p) / 3): slope 1/3
        assert cmap["params"]["a"] == pytest.approx(1 / 3, abs=0.05)


def test_isotonic_pools_adjacent_violators():
    got = fit_isotonic(np.array([0.1, 0.2, 0.3, 0.3]), np.array([0.0, 1.0, 0.0, 0.0]))
    # 0.2 -> 1 then 0.3 -> 0 (twice) violate the order: pooled to (1 + 0 + 0) / 3
    assert got["x"] == [0.1, 0.2, 0.3] and got["y"] == pytest.approx([0.0, 1 / 3, 1 / 3])


def test_platt_never_reverses_an_anticorrelated_judge():
    p = np.array([0.1, 0.2, 0.8, 0.9] * 10)
    y = np.array([1.0, 1.0, 0.0, 0.0] * 10)
    params = fit_platt(p, y)
    assert params["a"] == 0.0
    assert predict({"method": "platt", "params": params}, [0.1, 0.9]) == pytest.approx([0.5, 0.5])


def _matched_files(tmp_path: Path, n: int = 300, seed: int = 0) -> tuple[Path, Path]:
    p, y = _miscalibrated(n, seed)
    rng = np.random.default_rng(seed + 10)
    ai = [
        ai_record(
            f"id{i}",
            float(p[i]),
            human="a" if y[i] else "b",
            a="x" * int(rng.integers(1, 50)),
            b="y" * int(rng.integers(1, 50)),
        )
        for i in range(n)
    ]
    ai.append(ai_record("failed", None, status="failed", error="judge: no verdict", human="a"))
    f = write_jsonl(tmp_path / "ai" / "labels.jsonl", ai)
    return f.parent, f


def test_fit_map_splits_by_id_and_reports_before_after(tmp_path):
    ai_dir, f = _matched_files(tmp_path)
    m = load_matched(ai_dir, f)
    cmap = fit_map(m, method="isotonic", holdout=0.5, seed=3)
    ev = cmap["evaluation"]
    assert ev["fit"]["n"] + ev["heldout"]["n"] == len(m) == 300
    assert 100 < ev["heldout"]["n"] < 200
    assert ev["heldout"]["after"]["ece"] < ev["heldout"]["before"]["ece"]
    # the split follows the ids, not the file order
    assert split_mask(m.ids[::-1], 0.5, 3).tolist() == split_mask(m.ids, 0.5, 3).tolist()[::-1]
    sym = predict(cmap, [0.2, 0.8])
    assert sym[0] == pytest.approx(1 - sym[1], abs=0.05)  # fitted on both orders of every pair
    with pytest.raises(ValueError, match="unknown calibration method"):
        fit_map(m, method="beta")


def test_apply_keeps_raw_and_refuses_to_calibrate_twice(tmp_path):
    ai_dir, f = _matched_files(tmp_path, n=60)
    cmap = fit_map(load_matched(ai_dir, f), method="temperature", holdout=0.0, tie_margin=0.1)
    map_file = tmp_path / "map.json"
    map_file.write_text(json.dumps(cmap))
    extra = human_record("id0", "a", "ann")
    with open(f, "a") as fh:
        fh.write(json.dumps(extra) + "\n")
    counts = apply_map(map_file, ai_dir, tmp_path / "cal")
    assert counts["calibrated"] == 60 and counts["passed_through"] == 2  # the failed label, the human one
    raw = {r["id"] + r.get("source", ""): r for r in read_labels(f)}
    out = list(read_labels(tmp_path / "cal"))
    for r in out:
        if r["source"] == "ai" and r["status"] == "ok":
            src = raw[r["id"] + "ai"]
            assert r["p_a_raw"] == src["p_a"]
            assert r["p_a"] == pytest.approx(float(predict(cmap, [src["p_a"]])[0]))
            assert r["label"] == label_for(r["p_a"], 0.1)
            assert r["calibration_sha256"] == cmap["sha256"]
            assert r["key"] == src["key"] and r["human_label"] == src["human_label"]
        else:
            assert "p_a_raw" not in r and "calibration_sha256" not in r
    assert json.loads((tmp_path / "cal" / "calibration.json").read_text())["sha256"] == cmap["sha256"]
    with pytest.raises(ValueError, match="already calibrated"):
        apply_map(map_file, tmp_path / "cal", tmp_path / "cal2")
    with pytest.raises(ValueError, match="must differ"):
        apply_map(map_file, ai_dir, ai_dir)
    tampered = {**cmap, "params": {"a": 5.0, "b": 0.0}}
    map_file.write_text(json.dumps(tampered))
    with pytest.raises(ValueError, match="sha256"):
        load_map(map_file)


# ---------------------------------------------------------------------------------------------- CLI


def rlaif(*args, check=True):
    p = run_cli(*args)
    if check:
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    return p


def test_cli_calibrate_fit_apply_end_to_end(tmp_path):
    ai_dir, f = _matched_files(tmp_path, n=120)
    # human labels from a separate file, two annotators on some pairs
    ai = {r["id"]: r for r in read_labels(f)}

    def same(i: int) -> dict:  # human labels of the same responses, in the same order
        return {"response_a": ai[f"id{i}"]["response_a"], "response_b": ai[f"id{i}"]["response_b"]}

    humans = [human_record(f"id{i}", "a" if i % 3 else "b", "ann1", **same(i)) for i in range(0, 120, 2)]
    humans += [human_record(f"id{i}", "a", "ann2", **same(i)) for i in range(0, 40, 2)]
    human_file = write_jsonl(tmp_path / "human.jsonl", humans)

    out = tmp_path / "report"
    p = rlaif("calibrate", "--ai", ai_dir, "--human", human_file, "--out", out, "--resamples", "100")
    assert "agreement" in p.stdout and "brier_resolution" in p.stdout and "auc" in p.stdout
    assert "warning: resolution" not in p.stdout
    report = json.loads((out / "report.json").read_text())
    figures = ("agreement", "cohen_kappa", "human_human_agreement", "position_consistency", "ece", "length_bias")
    for key in (*figures, "brier_reliability", "brier_resolution", "brier_uncertainty", "auc"):
        assert isinstance(report[key], float), key
        d = report["details"][key]
        assert d["n"] > 0 and d["ci95"][0] <= d["ci95"][1]
    assert report["n_pairs"] == 60 and report["details"]["human_human_agreement"]["n"] == 20
    assert isinstance(report["per_principle_agreement"]["p1"], float)
    png = (out / "reliability.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," + base64.b64encode(png).decode() in html

    # the AI file doubles as the human file: its records carry human_label
    p = rlaif(
        "calibrate", "fit", "--ai", ai_dir, "--human", ai_dir, "--out", tmp_path / "map.json", "--method", "platt"
    )
    cmap = json.loads((tmp_path / "map.json").read_text())
    assert cmap["method"] == "platt" and cmap["evaluation"]["heldout"]["n"] > 0
    assert "heldout: ece" in p.stdout
    rlaif("calibrate", "apply", "--map", tmp_path / "map.json", "--labels", ai_dir, "--out", tmp_path / "cal")
    out2 = tmp_path / "report2"
    rlaif("calibrate", "--ai", tmp_path / "cal", "--human", ai_dir, "--out", out2, "--resamples", "0")
    r2 = json.loads((out2 / "report.json").read_text())
    assert r2["ece"] < r2["ece_raw"]


def test_cli_constant_judge_is_calibrated_and_flagged_useless(tmp_path):
    """A judge that always says 0.5 has a near-perfect ECE on balanced pairs; the summary says it has no
    resolution, in one line, and its AUC is 0.5."""
    f = write_jsonl(tmp_path / "labels.jsonl", [ai_record(f"id{i}", 0.5, human="ab"[i % 2]) for i in range(40)])
    out = tmp_path / "report"
    p = rlaif("calibrate", "--ai", f, "--human", f, "--out", out, "--resamples", "20")
    warnings = [line for line in p.stdout.splitlines() if line.startswith("warning: resolution")]
    assert len(warnings) == 1 and "a constant 0.5 is calibrated and useless" in warnings[0], p.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["ece"] == 0.0 and report["brier_resolution"] == 0.0 and report["auc"] == 0.5
    assert report["brier_uncertainty"] == 0.25 and report["details"]["brier_resolution"]["near_zero"] is True
    assert report["p_a_histogram"][25] == 40 and sum(report["p_a_histogram"]) == 40  # one spike at 0.5
    assert "resolution" in (out / "report.html").read_text() and (out / "reliability.png").stat().st_size > 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--ai", "{tmp}/nowhere", "--human", "{ai}", "--out", "{tmp}/r"], "no labels at"),
        (["--ai", "{ai}"], "missing --human, --out"),
        (
            ["fit", "--ai", "{ai}", "--human", "{ai}", "--out", "{tmp}/m.json", "--method", "x"],
            "unknown calibration method 'x'",
        ),
        (["apply", "--map", "{tmp}/not-a-map.json", "--labels", "{ai}", "--out", "{tmp}/c"], "not a calibration map"),
    ],
)
def test_cli_errors_are_one_clean_line(tmp_path, capsys, args, message):
    from typer.testing import CliRunner

    from rlaif.cli import app

    ai_dir, _ = _matched_files(tmp_path, n=10)
    (tmp_path / "not-a-map.json").write_text('{"method": "isotonic"}')
    args = [a.format(tmp=tmp_path, ai=ai_dir) for a in args]
    result = CliRunner().invoke(app, ["calibrate", *args])
    text = result.output + capsys.readouterr().err
    assert result.exit_code == 2, (args, text)
    assert message in text and "Traceback" not in text
