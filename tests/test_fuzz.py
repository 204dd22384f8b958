"""Fuzz tests: constitutions, training configs and pair rows, generated valid and broken by hypothesis and fed to
the command line in-process. Every run must end in success (0, or 3 and 4 where a cap or judge failures apply) or
in exit code 2 with clean lines on stderr — never a traceback or an internal error — and after every labelling run
the store must be strict JSON (no NaN, no Infinity) with one record per id.

Derandomized: CI draws the same examples every run, and bounded (a few hundred CLI runs, under a minute on two
cores). Families that today fail only in the label store or the labelling job (issue 9, being fixed beside this)
are kept, marked `xfail(strict=True)` with the reason, so they flip to failures the day they pass.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.helpers import ROOT

pytestmark = pytest.mark.filterwarnings("ignore")


def fuzz_settings(examples: int, shrink: bool = True):
    """Derandomized (the same examples in CI every run), no example database, no deadline (a first training run
    imports torch); families expected to fail skip shrinking, which could take minutes."""
    phases = (Phase.explicit, Phase.generate) + ((Phase.shrink,) if shrink else ())
    return settings(derandomize=True, database=None, deadline=None, max_examples=examples, phases=phases,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def cli(*args):
    from rlaif.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def assert_clean_end(result, allowed=(0,)):
    """Success (an allowed code) or exit 2 with clean lines: no traceback, no internal error, no exception."""
    err = result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in err and "internal error" not in err, err[-2000:]
    assert result.exit_code in (*allowed, 2), (result.exit_code, err[-2000:])
    if result.exit_code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines, "exit 2 with nothing said"


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def assert_store_valid(out: Path) -> None:
    """labels.jsonl holds strict JSON objects, one record per id."""
    store = out / "labels.jsonl"
    if not store.exists():
        return
    ids = [strict_json(line)["id"] for line in store.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(ids) == len(set(ids)), f"duplicate ids in {store}: {sorted(i for i in ids if ids.count(i) > 1)}"


# -- the pieces files are made of --------------------------------------------------------------------------------
short_text = st.text(max_size=12)
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10),
                    st.sampled_from([0, -1, 1e308, 10 ** 40, 1e-320]))
anything = st.one_of(st.none(), st.booleans(), numbers, short_text, st.lists(short_text, max_size=2),
                     st.dictionaries(short_text, short_text, max_size=2))


def damaged(text: str, damage: str) -> bytes:
    """A YAML file's bytes after one of the ways files go wrong."""
    raw = text.encode("utf-8")
    lines = text.splitlines(keepends=True)
    if damage == "truncated":
        return raw[: len(raw) // 2]
    if damage == "latin1":
        return raw + b"description: caf\xe9\n"
    if damage == "utf16":
        return text.encode("utf-16")
    if damage == "duplicate_key" and lines:
        return (text + lines[0]).encode("utf-8")
    if damage == "deep":
        return raw + b"deep: " + b"[" * 3000 + b"]" * 3000 + b"\n"
    if damage == "control":
        return raw + b"description: a\x00b\n"
    if damage == "alias_bomb":
        rows = ["b0: &b0 [x, x, x, x, x, x, x, x, x, x]"]
        rows += [f"b{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * 10) + "]" for i in range(1, 7)]
        return raw + ("\n".join(rows) + "\n").encode()
    if damage == "not_a_mapping":
        return b"- just\n- a list\n"
    return raw


DAMAGE = st.sampled_from(["none"] * 12 + ["truncated", "latin1", "utf16", "duplicate_key", "deep", "control",
                                         "alias_bomb", "not_a_mapping"])


def as_yaml(data) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


# -- constitutions ----------------------------------------------------------------------------------------------
ids = st.from_regex(r"[A-Za-z0-9_.\-]{1,8}", fullmatch=True)
usual_weights = st.one_of(st.floats(min_value=0.01, max_value=100), st.integers(1, 10), st.just("heavy"),
                          st.sampled_from([0, -1, -0.5, None]))
extreme_weights = st.sampled_from([math.inf, -math.inf, math.nan, 1e308, 10 ** 400, 5e-324])
principle = st.fixed_dictionaries({"id": ids, "text": st.text(min_size=1, max_size=30)},
                                  optional={"weight": st.floats(min_value=0.01, max_value=100),
                                            "invert": st.booleans(), "critique": st.text(min_size=1, max_size=10)})
example = st.fixed_dictionaries({"prompt": st.text(min_size=1, max_size=10), "response_a": st.text(max_size=8),
                                 "response_b": st.text(min_size=1, max_size=8),
                                 "preferred": st.sampled_from(["a", "b"])})
valid_constitution = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=10), "version": st.sampled_from(["1", "2.0", "v3"]),
     "principles": st.lists(principle, min_size=1, max_size=4, unique_by=lambda p: p["id"])},
    optional={"sampling": st.sampled_from(["one_per_pair", "all"]), "tie_margin": st.floats(0, 0.5),
              "description": st.text(max_size=20), "few_shot": st.lists(example, max_size=2),
              "instructions": st.text(min_size=1, max_size=20)})
# what a user gets wrong: a field of the wrong type, a misspelt or unknown key, a missing field, a repeated or
# reserved principle id, a weight that is no weight
MUTATIONS = st.lists(st.tuples(st.sampled_from(["top", "principle", "unknown", "drop", "dup_id", "reserved_id",
                                                "weight", "sampling"]),
                               st.sampled_from(["name", "version", "principles", "sampling", "tie_margin",
                                                "few_shot", "id", "text", "weight", "invert"]), anything),
                     max_size=2)


def mutated(spec: dict, mutations, weights) -> dict:
    spec = json.loads(json.dumps(spec))
    for kind, name, value in mutations:
        listed = spec.get("principles") if isinstance(spec.get("principles"), list) else []
        first = listed[0] if listed and isinstance(listed[0], dict) else {}  # an earlier mutation may have broken it
        if kind == "top":
            spec[name] = value
        elif kind == "principle":
            first[name] = value
        elif kind == "unknown":
            spec["principels" if name == "principles" else "wieght"] = value
        elif kind == "drop":
            spec.pop(name, None)
        elif kind == "dup_id":
            listed.append(dict(first))
        elif kind == "reserved_id":
            first["id"] = "all"
        elif kind == "sampling":
            spec["sampling"] = first["id"] if name == "id" else "sometimes"
        else:
            first["weight"] = weights
    return spec


PAIRS = [{"id": f"p{i}", "prompt": f"question {i}", "response_a": "a" * (i + 1), "response_b": "b" * (3 - i)}
         for i in range(3)]


def write_pairs(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def check_constitution(spec, damage: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        f = tmp / "constitution.yaml"
        f.write_bytes(damaged(as_yaml(spec), damage))
        checked = cli("constitution", "check", f)
        assert_clean_end(checked)
        if checked.exit_code == 2:  # every problem is named at the file (FILE:LINE or FILE: cannot read)
            assert all(line.startswith(str(f)) for line in checked.stderr.splitlines() if line.strip())
        out = tmp / "labels"
        labelled = cli("label", "--pairs", write_pairs(tmp / "pairs.jsonl", PAIRS), "--constitution", f, "--judge",
                       ROOT / "judges/rule-length.yaml", "--out", out, "--quiet")
        assert_clean_end(labelled, allowed=(0, 3, 4))
        if checked.exit_code == 2:  # a constitution `check` refuses, `label` refuses too, naming the file
            assert labelled.exit_code == 2 and str(f) in labelled.stderr, labelled.stderr
        else:  # and one `check` passes labels well-formed pairs
            assert labelled.exit_code != 2, labelled.stderr
        assert_store_valid(out)


@fuzz_settings(150)
@given(spec=valid_constitution, mutations=MUTATIONS, weight=usual_weights, damage=DAMAGE)
def test_fuzz_constitutions_through_check_and_label(spec, mutations, weight, damage):
    check_constitution(mutated(spec, mutations, weight), damage)


@pytest.mark.xfail(strict=True, reason="label store / constitution weights (issue 9, the other half): a weight of "
                   ".inf (or one that overflows the weighted mean) passes `constitution check`, then labelling fails "
                   "with 'Out of range float values are not JSON compliant' (the p_a is NaN)")
@fuzz_settings(40, shrink=False)
@given(spec=valid_constitution, weight=extreme_weights, sampling=st.sampled_from(["all", "one_per_pair"]))
def test_fuzz_constitution_weights_that_are_not_numbers_a_mean_can_use(spec, weight, sampling):
    spec = {**spec, "sampling": sampling}
    spec["principles"][0]["weight"] = weight
    check_constitution(spec, "none")


# -- pair rows through `rlaif label` ------------------------------------------------------------------------------
JUDGES = {"rule-length": ROOT / "judges/rule-length.yaml",
          "polite": "backend: python\nfunction: tests.judge_fns:prefers_polite\n",
          "broken": "backend: python\nfunction: tests.judge_fns:broken\n"}  # fails on pairs saying "boom"
CONSTITUTIONS = {"one": {"name": "c", "version": "1", "principles": [{"id": "kind", "text": "Which is kinder?"},
                                                                      {"id": "short", "text": "Which is shorter?",
                                                                       "weight": 2}]},
                 "all": {"name": "c", "version": "1", "sampling": "all",
                         "principles": [{"id": "kind", "text": "Which is kinder?", "weight": 0.5},
                                        {"id": "rude", "text": "Which is ruder?", "invert": True}]}}
def mostly(valid, broken, weight: int = 4):
    """`valid` about `weight` times as often as `broken`."""
    return st.one_of(*[valid] * weight, broken)


messages = st.lists(st.fixed_dictionaries({"role": mostly(st.sampled_from(["user", "assistant", "system"]),
                                                          st.just("robot")),
                                           "content": mostly(st.text(min_size=1, max_size=12), anything)}),
                    min_size=1, max_size=3)
responses = mostly(st.text(min_size=1, max_size=30).map(lambda t: t + "."),
                   st.one_of(st.sampled_from(["please do", "boom", "", "  "]), anything))
rows = st.fixed_dictionaries(
    {"prompt": mostly(st.one_of(st.text(min_size=1, max_size=20), messages), anything), "response_a": responses,
     "response_b": responses},
    optional={"principle": st.sampled_from(["kind", "short", "rude"]), "label": st.sampled_from(["a", "b", "tie", "x"]),
              "p_a": numbers, "note": anything})
# lines that are not rows at all
BROKEN_LINES = ["not json", '{"prompt": "q", "response_a": "a"', "[1, 2]", "3", '{"prompt": "q", "response_a": NaN, '
                '"response_b": "b"}', "null", '"a string"', '{"prompt": "q", "response_a": "a", "response_b": "b", '
                '"id": {"nested": 1}}']
lines = st.one_of(rows.map(lambda r: ("row", r)), rows.map(lambda r: ("row", r)), rows.map(lambda r: ("row", r)),
                  st.sampled_from(BROKEN_LINES).map(lambda line: ("raw", line)))
ID_STYLES = st.sampled_from(["str"] * 6 + ["none", "int", "empty"])


def pairs_bytes(items, id_styles, encoding: str) -> bytes:
    out = []
    for i, ((kind, value), style) in enumerate(zip(items, id_styles)):
        if kind == "raw":
            out.append(value)
            continue
        row = dict(value)
        ids = {"str": f"r{i}", "int": i, "empty": "", "repeat": f"r{max(i - 1, 0)}"}
        if style in ids:
            row["id"] = ids[style]
        out.append(json.dumps(row, ensure_ascii=False))
    text = "".join(line + "\n" for line in out)
    if encoding == "latin1-line":
        return text.encode() + b'{"prompt": "caf\xe9", "response_a": "a", "response_b": "b"}\n'
    if encoding == "truncated-gz":
        import gzip
        return gzip.compress(text.encode())[:-12]
    return text.encode("utf-8-sig" if encoding == "bom" else "utf-8")


def run_label(tmp: Path, data: bytes, gz: bool, judge: str, constitution: str, options: list[str]):
    pairs = tmp / ("pairs.jsonl.gz" if gz else "pairs.jsonl")
    pairs.write_bytes(data)
    judge_file = JUDGES[judge] if isinstance(JUDGES[judge], Path) else tmp / "judge.yaml"
    if judge_file == tmp / "judge.yaml":
        judge_file.write_text(JUDGES[judge])
    const = tmp / "constitution.yaml"
    const.write_text(as_yaml(CONSTITUTIONS[constitution]))
    return cli("label", "--pairs", pairs, "--constitution", const, "--judge", judge_file, "--out", tmp / "out",
               "--quiet", *options)


options = st.tuples(st.sampled_from([True, True, False]), st.one_of(st.none(), st.none(), st.integers(-3, 6)),
                    st.sampled_from([100_000] * 4 + [12, 0, -1]), st.one_of(st.none(), st.integers(-1, 3)),
                    st.sampled_from([None] * 8 + ["jsonl", "json", "parquet"]), st.integers(0, 3))


def label_options(skip_invalid, limit, max_chars, batch_size, fmt, seed) -> list[str]:
    out = ["--max-chars", str(max_chars), "--seed", str(seed)] + (["--skip-invalid"] if skip_invalid else [])
    out += [] if limit is None else ["--limit", str(limit)]
    out += [] if batch_size is None else ["--batch-size", str(batch_size)]
    return out + ([] if fmt is None else ["--format", fmt])


@fuzz_settings(200)
@given(items=st.lists(lines, min_size=1, max_size=6), id_styles=st.lists(ID_STYLES, min_size=6, max_size=6),
       encoding=st.sampled_from(["utf-8"] * 8 + ["bom", "latin1-line", "truncated-gz"]),
       judge=st.sampled_from(list(JUDGES)), constitution=st.sampled_from(list(CONSTITUTIONS)), opts=options,
       rerun=st.booleans())
def test_fuzz_pair_rows_through_label(items, id_styles, encoding, judge, constitution, opts, rerun):
    """Rows of every shape (chat or text prompts, wrong types, empty responses, missing or repeated ids, lines that
    are not JSON), every judge outcome (ok, tie, judge failure) and the options; run again to resume."""
    items = [(k, {key: v for key, v in r.items() if key != "principle" or constitution == "one" or v != "short"})
             if k == "row" else (k, r) for k, r in items]  # a row names a principle of its constitution
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = pairs_bytes(items, id_styles, encoding)
        for _ in range(2 if rerun else 1):
            result = run_label(tmp, data, encoding == "truncated-gz", judge, constitution, label_options(*opts))
            assert_clean_end(result, allowed=(0, 3, 4))
            assert_store_valid(tmp / "out")


# -- families that fail today in the label store or the labelling job (the other half of issue 9) -----------------
valid_rows = st.fixed_dictionaries({"prompt": st.text(min_size=1, max_size=20),
                                    "response_a": st.text(min_size=1, max_size=20).map(lambda t: t + "."),
                                    "response_b": st.text(min_size=1, max_size=20).map(lambda t: t + "!")})
STORE = "label store / labelling job (issue 9, the other half): "


def label_twice(first: list[str], second: list[str], skip_invalid: bool) -> None:
    """Label `first` (JSONL lines), then `second` into the same folder: both runs end cleanly, the store stays
    strict JSON with one record per id."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        opts = ["--skip-invalid"] if skip_invalid else []
        for text in (first, second):
            result = run_label(tmp, "".join(line + "\n" for line in text).encode(), False, "rule-length", "one",
                               opts)
            assert_clean_end(result, allowed=(0, 3, 4))
            assert_store_valid(tmp / "out")


@pytest.mark.xfail(strict=True, reason=STORE + "a row whose `principle` is not in the constitution ends in "
                   "'internal error: KeyError' (and leaves the manifest at status running)")
@fuzz_settings(20, shrink=False)
@given(row=valid_rows, principle=st.text(min_size=1, max_size=8).filter(lambda p: p not in ("kind", "short")),
       skip_invalid=st.booleans())
def test_fuzz_rows_naming_a_principle_the_constitution_lacks(row, principle, skip_invalid):
    label_twice([json.dumps({**row, "id": "p0", "principle": principle})], [], skip_invalid)


@pytest.mark.xfail(strict=True, reason=STORE + "a pair edited in place (same id, new text), or fixed after "
                   "--skip-invalid, and labelled again keeps two records for its id")
@fuzz_settings(20, shrink=False)
@given(rows_=st.lists(valid_rows, min_size=1, max_size=3), fix_invalid=st.booleans())
def test_fuzz_a_pair_changed_in_place_then_labelled_again(rows_, fix_invalid):
    before = [dict(r, id=f"p{i}") for i, r in enumerate(rows_)]
    after = [dict(r) for r in before]
    if fix_invalid:  # first run: the row is unusable and recorded as failed; then the user fixes it
        before[0]["response_b"] = ""
    else:
        after[0]["response_a"] += " (edited)"
    label_twice([json.dumps(r) for r in before], [json.dumps(r) for r in after], skip_invalid=True)


@pytest.mark.xfail(strict=True, reason=STORE + "under --skip-invalid, an unusable row that repeats an id, or the "
                   "synthetic id `line-N` of an unreadable line N next to a real row with that id, gives two records "
                   "for one id")
@fuzz_settings(20, shrink=False)
@given(rows_=st.lists(valid_rows, min_size=1, max_size=3), synthetic=st.booleans())
def test_fuzz_ids_that_collide_under_skip_invalid(rows_, synthetic):
    if synthetic:  # line 1 cannot be read, so it is recorded as `line-1`; a real row carries that id too
        text = ["not json"] + [json.dumps(dict(r, id="line-1" if i == 0 else f"p{i}")) for i, r in enumerate(rows_)]
    else:
        text = [json.dumps(dict(r, id=f"p{i}")) for i, r in enumerate(rows_)]
        text.append(json.dumps({"id": "p0", "prompt": "q", "response_a": "a", "response_b": None}))
    label_twice(text, text, skip_invalid=True)


# -- training configs through `rlaif train dpo | reward` ------------------------------------------------------------
PATHS = ["good", "missing", "folder", "empty", "a_file"]


def train_configs(command: str, broken: bool):
    """`command`'s training config. `broken`: each field is sometimes wrong (a wrong type, out of range, another
    method's), the model or feedback sometimes not there; else every value is one a user may well write."""
    def field(valid: list, invalid: list):
        return mostly(st.sampled_from(valid), st.sampled_from(invalid), weight=6) if broken else st.sampled_from(valid)

    def sometimes(valid, invalid):
        return mostly(valid, invalid, weight=4) if broken else valid

    tiny = st.fixed_dictionaries({"type": st.just("tiny")}, optional={
        "hidden_size": field([16, 8], [12, 0, "wide"]), "num_heads": field([2, 1], [3, 0]),
        "num_kv_heads": field([1], [2, -1]), "num_layers": field([1, 2], [0]), "intermediate_size": field([32, 8], [7]),
        "max_positions": field([64, 128], [8]), "seed": st.integers(-1, 2),
        "vocab": st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=6), max_size=6))})
    pretrained = st.fixed_dictionaries({"type": st.just("pretrained"), "path": field(
        ["tiny_model"], ["missing", "folder", "a_file", "org/not-cached"])})
    model = sometimes(st.one_of(tiny, tiny, pretrained), st.one_of(tiny.map(lambda m: {**m, "colour": "red"}), anything))
    feedback = sometimes(st.fixed_dictionaries({"source": st.just("ai"), "ai": field(["good"], PATHS[1:])}), st.one_of(
        st.fixed_dictionaries({"source": st.sampled_from(["human", "mixed", "people"]), "ai": st.sampled_from(PATHS),
                               "human": st.sampled_from(PATHS)}), anything))
    loss = {"dpo": st.fixed_dictionaries({"type": field(["sigmoid", "ipo"], ["kto"])}, optional={
                "beta": field([0.1, 1e-3, 5.0], [0, -1, math.nan, math.inf]),
                "label_smoothing": field([0, 0.25], [0.5, -1])}),
            "reward": st.fixed_dictionaries({}, optional={"margin": field([0, 1], [-1]),
                                                          "center_coef": field([0, 0.1], [math.inf, -1])})}[command]
    optim = st.fixed_dictionaries({}, optional={
        "lr": field([1e-3, 1e-5, 10.0], [0, -1, math.nan, math.inf]), "warmup_steps": field([0, 3], [-1]),
        "scheduler": field(["linear", "cosine", "constant"], ["step"]), "max_grad_norm": field([None, 1.0], [0]),
        "betas": field([[0.9, 0.999]], [[1.5, 2.0], "x"]), "weight_decay": field([0, 0.1], [-1])})
    pairs = st.fixed_dictionaries({}, optional={
        "soft": field([True, False], ["maybe"]), "min_margin": field([None, 0, 0.2, 0.49], [0.5, -1]),
        "eval_fraction": field([0, 0.15, 0.5, 0.9], [1, -0.1]), "eval_paths": field([[], ["good"]], [["missing"]])})
    optional = {
        "pairs": pairs, "optim": optim, "loss": loss, "batch_size": field([2, 4, 1], [0, "two"]),
        "grad_accum": field([1, 2], [0]), "max_length": field([64, 32, 16], [4]), "eval_batch_size": field([4, 16], [0]),
        "save_steps": field([1, 2, 1000], [0]), "save_total_limit": field([None, 1], [0]),
        "eval_steps": field([None, 1], [0]), "precision": field(["fp32", "auto", "bf16"], ["fp16"]),
        "gradient_checkpointing": st.booleans(), "seed": field([0, 1, 2**32 - 1], [-1, 2**32]),
        "num_epochs": field([1, 0.5], [0, -1]),
        "lora": field([None, {"r": 2}], [{"r": 0}, {"r": 2, "target_modules": ["no_such_module"]}]),
        "report_to": field([[]], [["nothing"], "tensorboard"])}
    if command == "dpo":
        optional["precompute_reference"] = st.booleans()
    return st.fixed_dictionaries(
        {"method": field([command], ["dpo", "reward", "ppo", "loop", "sft", None]),
         "output_dir": field(["fresh"], ["a_file", "under_file", "shared"]), "model": model, "feedback": feedback},
        optional=optional)


OVERRIDES = mostly(st.just([]), st.lists(st.sampled_from([
    "optim.lr=[", "batch_size=two", "pairs.eval_fraction=0.5", "loss.beta=0.2", "model.hidden_size=abc", "oops",
    "=1", "a..b=1", "max_length=" + "[" * 500]), max_size=1), weight=3)


@pytest.fixture(scope="module")
def train_files(tmp_path_factory):
    """What the generated configs point at: a small label file, a saved tiny model, a folder, an empty file, a
    file, and a run folder the examples share (so some find a run with a different config in it)."""
    from tests.conftest import build_tiny_model
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger("transformers")  # its handler takes stderr now, not a runner's stream that closes later
    root = tmp_path_factory.mktemp("train-fuzz")
    good = root / "labels.jsonl"
    good.write_text("".join((ROOT / "examples/tiny/data/labels.jsonl").read_text().splitlines(keepends=True)[:24]))
    (root / "folder").mkdir()
    (root / "empty.jsonl").write_text("")
    (root / "a_file").write_text("a file")
    return {"good": good, "missing": root / "missing", "folder": root / "folder", "empty": root / "empty.jsonl",
            "a_file": root / "a_file", "tiny_model": build_tiny_model(root / "tiny-model"), "shared": root / "shared",
            "under_file": root / "a_file" / "run", "root": root}


def resolved(spec, files: dict, fresh: Path):
    """The config with its symbolic paths made real."""
    if isinstance(spec, dict):
        return {k: resolved(v, files, fresh) for k, v in spec.items()}
    if isinstance(spec, list):
        return [resolved(v, files, fresh) for v in spec]
    if spec == "fresh":
        return str(fresh)
    return str(files[spec]) if isinstance(spec, str) and spec in files and spec != "root" else spec


def check_training(files: dict, command: str, spec: dict, overrides: list[str], damage: str) -> int:
    """Run `rlaif train COMMAND` on the config (two steps at most); returns the exit code."""
    n = len(list(files["root"].glob("config-*.yaml")))
    fresh, config = files["root"] / f"run-{n}", files["root"] / f"config-{n}.yaml"
    spec = {k: v for k, v in spec.items() if v is not None or k != "method"}
    config.write_bytes(damaged(as_yaml(resolved(spec, files, fresh)), damage))
    result = cli("train", command, "--config", config, "max_steps=2", "cpu_threads=1", *overrides)
    assert_clean_end(result)
    if result.exit_code == 0:
        saved = Path(result.stdout.strip().splitlines()[-1].split(" saved to ")[-1])
        assert {"config.json", "adapter_config.json"} & {f.name for f in saved.iterdir()}  # a model, or LoRA adapters
    elif result.stderr.startswith(str(config)) or "override" in result.stderr:
        assert not fresh.exists()  # refused before the run folder (or any model) was made
    return result.exit_code


def test_fuzz_training_configs_that_a_user_may_write_train(train_files):
    """Valid `train dpo | reward` configs (tiny models, two steps): they train and save, or are refused in one
    clean line for what the data allows (e.g. fewer pairs than a batch)."""
    codes = []

    @fuzz_settings(30)
    @given(spec=st.sampled_from(["dpo", "reward"]).flatmap(lambda c: st.tuples(st.just(c), train_configs(c, False))))
    def run(spec):
        codes.append(check_training(train_files, spec[0], spec[1], [], "none"))

    run()
    assert codes.count(0) >= len(codes) // 2, codes  # most of them really train


def test_fuzz_broken_training_configs(train_files):
    """Broken configs, files and overrides: FILE:LINE errors (exit 2) before any run folder or model is made."""
    @fuzz_settings(100)
    @given(spec=st.sampled_from(["dpo", "reward"]).flatmap(lambda c: st.tuples(st.just(c), train_configs(c, True))),
           overrides=OVERRIDES, damage=mostly(st.just("none"), DAMAGE))
    def run(spec, overrides, damage):
        check_training(train_files, spec[0], spec[1], overrides, damage)

    run()
