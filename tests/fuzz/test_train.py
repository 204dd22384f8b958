"""Fuzz: training configs, valid and broken, through `rlaif train dpo | reward` (two steps at most; see
tests/fuzz/helpers.py for what every run must end in)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.helpers import DAMAGE, anything, as_yaml, assert_clean_end, cli, damaged, fuzz_settings, mostly
from tests.helpers import ROOT

pytestmark = pytest.mark.filterwarnings("ignore")  # libraries warn per run: hundreds of runs bury the summary

PATHS = ["good", "missing", "folder", "empty", "a_file"]


def train_configs(command: str, broken: bool):
    """`command`'s training config. `broken`: each field is sometimes wrong (a wrong type, out of range, another
    method's), the model or feedback sometimes not there; else every value is one a user may well write."""

    def field(valid: list, invalid: list):
        return mostly(st.sampled_from(valid), st.sampled_from(invalid), weight=6) if broken else st.sampled_from(valid)

    def sometimes(valid, invalid):
        return mostly(valid, invalid, weight=4) if broken else valid

    tiny = st.fixed_dictionaries(
        {"type": st.just("tiny")},
        optional={
            "hidden_size": field([16, 8], [12, 0, "wide"]),
            "num_heads": field([2, 1], [3, 0]),
            "num_kv_heads": field([1], [2, -1]),
            "num_layers": field([1, 2], [0]),
            "intermediate_size": field([32, 8], [7]),
            "max_positions": field([64, 128], [8]),
            "seed": st.integers(-1, 2),
            "vocab": st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=6), max_size=6)),
        },
    )
    pretrained = st.fixed_dictionaries(
        {
            "type": st.just("pretrained"),
            "path": field(["tiny_model"], ["missing", "folder", "a_file", "org/not-cached"]),
        }
    )
    model = sometimes(
        st.one_of(tiny, tiny, pretrained), st.one_of(tiny.map(lambda m: {**m, "colour": "red"}), anything)
    )
    feedback = sometimes(
        st.fixed_dictionaries({"source": st.just("ai"), "ai": field(["good"], PATHS[1:])}),
        st.one_of(
            st.fixed_dictionaries(
                {
                    "source": st.sampled_from(["human", "mixed", "people"]),
                    "ai": st.sampled_from(PATHS),
                    "human": st.sampled_from(PATHS),
                }
            ),
            anything,
        ),
    )
    loss = {
        "dpo": st.fixed_dictionaries(
            {"type": field(["sigmoid", "ipo"], ["kto"])},
            optional={
                "beta": field([0.1, 1e-3, 5.0], [0, -1, math.nan, math.inf]),
                "label_smoothing": field([0, 0.25], [0.5, -1]),
            },
        ),
        "reward": st.fixed_dictionaries(
            {}, optional={"margin": field([0, 1], [-1]), "center_coef": field([0, 0.1], [math.inf, -1])}
        ),
    }[command]
    optim = st.fixed_dictionaries(
        {},
        optional={
            "lr": field([1e-3, 1e-5, 10.0], [0, -1, math.nan, math.inf]),
            "warmup_steps": field([0, 3], [-1]),
            "scheduler": field(["linear", "cosine", "constant"], ["step"]),
            "max_grad_norm": field([None, 1.0], [0]),
            "betas": field([[0.9, 0.999]], [[1.5, 2.0], "x"]),
            "weight_decay": field([0, 0.1], [-1]),
        },
    )
    pairs = st.fixed_dictionaries(
        {},
        optional={
            "soft": field([True, False], ["maybe"]),
            "min_margin": field([None, 0, 0.2, 0.49], [0.5, -1]),
            "eval_fraction": field([0, 0.15, 0.5, 0.9], [1, -0.1]),
            "eval_paths": field([[], ["good"]], [["missing"]]),
        },
    )
    optional = {
        "pairs": pairs,
        "optim": optim,
        "loss": loss,
        "batch_size": field([2, 4, 1], [0, "two"]),
        "grad_accum": field([1, 2], [0]),
        "max_length": field([64, 32, 16], [4]),
        "eval_batch_size": field([4, 16], [0]),
        "save_steps": field([1, 2, 1000], [0]),
        "save_total_limit": field([None, 1], [0]),
        "eval_steps": field([None, 1], [0]),
        "precision": field(["fp32", "auto", "bf16"], ["fp16"]),
        "gradient_checkpointing": st.booleans(),
        "seed": field([0, 1, 2**32 - 1], [-1, 2**32]),
        "num_epochs": field([1, 0.5], [0, -1]),
        "lora": field([None, {"r": 2}], [{"r": 0}, {"r": 2, "target_modules": ["no_such_module"]}]),
        "report_to": field([[]], [["nothing"], "tensorboard"]),
    }
    if command == "dpo":
        optional["precompute_reference"] = st.booleans()
    return st.fixed_dictionaries(
        {
            "method": field([command], ["dpo", "reward", "ppo", "loop", "sft", None]),
            "output_dir": field(["fresh"], ["a_file", "under_file", "shared"]),
            "model": model,
            "feedback": feedback,
        },
        optional=optional,
    )


OVERRIDES = mostly(
    st.just([]),
    st.lists(
        st.sampled_from(
            [
                "optim.lr=[",
                "batch_size=two",
                "pairs.eval_fraction=0.5",
                "loss.beta=0.2",
                "model.hidden_size=abc",
                "oops",
                "=1",
                "a..b=1",
                "max_length=" + "[" * 500,
            ]
        ),
        max_size=1,
    ),
    weight=3,
)


@pytest.fixture(scope="module")
def train_files(tmp_path_factory):
    """What the generated configs point at: a small label file, a saved tiny model, a folder, an empty file, a
    file, and a run folder the examples share (so some find a run with a different config in it)."""
    from tests.conftest import build_tiny_model

    root = tmp_path_factory.mktemp("train-fuzz")
    good = root / "labels.jsonl"
    good.write_text("".join((ROOT / "examples/tiny/data/labels.jsonl").read_text().splitlines(keepends=True)[:24]))
    (root / "folder").mkdir()
    (root / "empty.jsonl").write_text("")
    (root / "a_file").write_text("a file")
    return {
        "good": good,
        "missing": root / "missing",
        "folder": root / "folder",
        "empty": root / "empty.jsonl",
        "a_file": root / "a_file",
        "tiny_model": build_tiny_model(root / "tiny-model"),
        "shared": root / "shared",
        "under_file": root / "a_file" / "run",
        "root": root,
    }


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
    @given(
        spec=st.sampled_from(["dpo", "reward"]).flatmap(lambda c: st.tuples(st.just(c), train_configs(c, True))),
        overrides=OVERRIDES,
        damage=mostly(st.just("none"), DAMAGE),
    )
    def run(spec, overrides, damage):
        check_training(train_files, spec[0], spec[1], overrides, damage)

    run()
