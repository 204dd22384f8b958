"""Bad input to every command ends in one clean line and exit code 2 (issue 9's table), never a traceback:
config files that are not UTF-8 or nest thousands deep, output paths that are folders (or files where a folder
is meant), models that are not there, and the other commands fed bad paths, folders for files, empty files and
wrong types. Run in-process through typer's runner; HF_HUB_OFFLINE=1 is set for every test (tests/conftest.py),
so a hub id that is not cached is refused at once instead of hanging."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.helpers import ROOT, run_cli

DPO = str(ROOT / "examples/tiny/dpo.yaml")
LABELS = str(ROOT / "examples/tiny/data/labels.jsonl")
RULE_JUDGE = str(ROOT / "judges/rule-length.yaml")
HELPFUL = str(ROOT / "constitutions/helpful.yaml")


def cli(*args):
    from rlaif.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def one_clean_line(result, code: int = 2) -> str:
    """The command failed with `code` and said so in exactly one stderr line, with no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == code, (result.exit_code, result.stderr, result.stdout)
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    return lines[0]


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """Bad inputs of every shape: a folder, an empty file, bytes that are not UTF-8, JSON of the wrong type."""
    (tmp_path / "folder").mkdir()
    made = {
        "folder": tmp_path / "folder",
        "missing": tmp_path / "missing.jsonl",
        "empty": tmp_path / "empty.jsonl",
        "latin1": tmp_path / "latin1.yaml",
        "deep": tmp_path / "deep.yaml",
        "numbers": tmp_path / "numbers.jsonl",
        "a_file": tmp_path / "a_file",
        "pairs": tmp_path / "pairs.jsonl",
        "empty_yaml": tmp_path / "empty.yaml",
        "list_json": tmp_path / "list.json",
    }
    made["empty"].write_text("")
    made["empty_yaml"].write_text("")
    made["latin1"].write_bytes(b"name: x\nversion: '1'\nprinciples:\n  - id: a\n    text: caf\xe9?\n")
    made["deep"].write_text("name: x\nprinciples: " + "[" * 5000 + "]" * 5000 + "\n")
    made["numbers"].write_text("1\n2\n")
    made["list_json"].write_text("[1, 2]")
    made["a_file"].write_text("not a folder")
    made["pairs"].write_text(json.dumps({"id": "p1", "prompt": "q", "response_a": "a", "response_b": "bb"}) + "\n")
    return made


# -- config files: constitutions, through check and through label --------------------------------------------------
@pytest.mark.parametrize(
    "kind, message",
    [("latin1", ":5: not UTF-8 text: byte 0xe9 at column 14"), ("deep", ":2: yaml: nested deeper than 100 levels")],
)
def test_constitution_files_that_yaml_cannot_read_are_one_line_naming_file_and_line(files, tmp_path, kind, message):
    line = one_clean_line(cli("constitution", "check", files[kind]))
    assert line.startswith(f"{files[kind]}{message}")
    out = tmp_path / "labels"
    line = one_clean_line(
        cli(
            "label",
            "--pairs",
            files["pairs"],
            "--constitution",
            files[kind],
            "--judge",
            RULE_JUDGE,
            "--out",
            out,
            "--quiet",
        )
    )
    assert line.startswith(f"{files[kind]}{message}")


def test_constitution_check_of_good_and_bad_files_exits_2_and_reports_each(files):
    result = cli("constitution", "check", HELPFUL, files["latin1"], files["folder"])
    assert result.exit_code == 2 and ": ok: " in result.stdout
    assert [line.split(":")[0] for line in result.stderr.strip().splitlines()] == [
        str(files["latin1"]),
        str(files["folder"]),
    ]


# -- training: output_dir and model paths, refused before any model is built ---------------------------------------
@pytest.mark.parametrize("method, config", [("dpo", "dpo"), ("reward", "reward"), ("ppo", "ppo"), ("loop", "loop")])
def test_an_output_dir_that_is_a_file_is_refused_by_every_method(files, method, config):
    command = ["loop"] if method == "loop" else ["train", method]
    path = ROOT / "examples/tiny" / f"{config}.yaml"
    line = one_clean_line(cli(*command, "--config", path, f"output_dir={files['a_file']}"))
    assert line.startswith(f"{path}:") and f": output_dir: {files['a_file']} is a file; give a folder" in line
    line = one_clean_line(cli(*command, "--config", path, f"output_dir={files['a_file']}/run"))
    assert f"output_dir: {files['a_file']} is a file, so {files['a_file']}/run cannot be created under it" in line
    assert files["a_file"].read_text() == "not a folder"


def _no_tokenizer(tmp_path: Path) -> Path:
    folder = tmp_path / "weights-only"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    return folder


@pytest.mark.parametrize(
    "path, message",
    [
        ("{tmp}/nowhere", "no such folder: {tmp}/nowhere"),
        (
            "someone/not-cached-anywhere",
            "'someone/not-cached-anywhere' is not a local folder, and not in the Hugging "
            "Face cache while HF_HUB_OFFLINE is set",
        ),
        ("not a hub id", "no such folder: not a hub id"),
        ("{folder}", "{folder} is not a saved model directory (an empty folder)"),
        ("{a_file}", "{a_file} is a file, not a model folder"),
        ("{no_tokenizer}", "{no_tokenizer} has no tokenizer files (tokenizer.json, tokenizer_config.json, ...)"),
    ],
    ids=["missing-folder", "uncached-hub-id", "invalid-id", "empty-folder", "a-file", "no-tokenizer"],
)
def test_a_model_that_is_not_there_is_one_line_about_model_path(files, tmp_path, path, message):
    names = {
        "tmp": tmp_path,
        "folder": files["folder"],
        "a_file": files["a_file"],
        "no_tokenizer": _no_tokenizer(tmp_path),
    }
    out = tmp_path / "run"
    line = one_clean_line(
        cli(
            "train",
            "dpo",
            "--config",
            DPO,
            f"output_dir={out}",
            f"model={{type: pretrained, path: '{path.format(**names)}'}}",
        )
    )
    assert line == f"{DPO}:7: model.path: {message.format(**names)}" or line.startswith(
        f"{DPO}:7: model.path: {message.format(**names)}"
    )
    assert not out.exists()  # refused before the run folder (or any model) was made


def test_a_ppo_reward_model_must_be_a_reward_model(files, tmp_path):
    ppo = ROOT / "examples/tiny/ppo.yaml"
    line = one_clean_line(
        cli(
            "train",
            "ppo",
            "--config",
            ppo,
            f"output_dir={tmp_path / 'run'}",
            f"reward={{type: model, path: {files['folder']}}}",
        )
    )
    assert line.startswith(f"{ppo}:21: reward.path: {files['folder']} is not a saved model directory")


@pytest.mark.parametrize(
    "reward_type, judge_yaml, said",
    [
        ("judge", "backend: python\nmode: score\nfunction: tests.judge_fns:score_polite\n", "is a score judge"),
        ("judge_score", "backend: python\nfunction: tests.judge_fns:prefers_polite\n", "is a pairwise judge"),
        ("judge", "backend: policy\n", "has no model of its own"),
    ],
)
def test_a_ppo_judge_that_cannot_give_the_reward_is_refused_before_any_model_loads(
    tmp_path, reward_type, judge_yaml, said
):
    """A judge of the other kind for the reward type, or the policy judge (only `rlaif loop` attaches a model to
    it), is refused as `rlaif label` refuses it: one line naming the judge file, exit 2, before the run folder or
    any model is made."""
    judge = tmp_path / "judge.yaml"
    judge.write_text(judge_yaml)
    out = tmp_path / "run"
    line = one_clean_line(
        cli(
            "train",
            "ppo",
            "--config",
            ROOT / "examples/tiny/ppo.yaml",
            f"output_dir={out}",
            f"reward={{type: {reward_type}, judge: {judge}}}",
        )
    )
    assert line.startswith(f"error: {judge}") and said in line, line
    assert not out.exists()


def test_a_training_run_refused_for_its_input_exits_2_not_1(files, tmp_path):
    line = one_clean_line(
        cli(
            "train",
            "dpo",
            "--config",
            DPO,
            f"output_dir={tmp_path / 'run'}",
            f"feedback.ai={files['missing']}",
            "max_steps=1",
        )
    )
    assert line == f"error: no labels at {files['missing']}"


# -- output files that are folders, for every command that writes one ----------------------------------------------
def test_annotate_export_to_a_folder_is_refused_and_leaves_nothing_behind(files, tmp_path):
    from rlaif.human.db import AnnotationDB, ServedPair

    db = AnnotationDB(tmp_path / "db.sqlite")
    db.load_pairs([ServedPair("p0", "q", "first", "second")], {"seed": "0"})
    db.record("p0", "alice", "a", "a", "ab")
    db.close()
    (files["folder"] / "keep.txt").write_text("mine")
    before = sorted(tmp_path.rglob("*"))
    line = one_clean_line(cli("annotate", "export", "--db", tmp_path / "db.sqlite", "--out", files["folder"]))
    assert line == f"error: --out: {files['folder']} is a folder; give a file name (e.g. {files['folder']}/out.jsonl)"
    assert sorted(tmp_path.rglob("*")) == before and (files["folder"] / "keep.txt").read_text() == "mine"
    result = cli("annotate", "export", "--db", tmp_path / "db.sqlite", "--out", tmp_path / "labels.jsonl")
    assert result.exit_code == 0 and json.loads(result.stdout)["labels"] == 1


@pytest.mark.parametrize(
    "args",
    [
        ["export", "--labels", LABELS, "--out", "{folder}"],
        ["human", "import", LABELS, "--out", "{folder}"],
        ["annotate", "select", "--labels", LABELS, "--budget", "2", "--out", "{folder}"],
        ["calibrate", "fit", "--ai", LABELS, "--human", LABELS, "--out", "{folder}"],
        ["generate", "--policy", "{folder}", "--prompts", "{pairs}", "--out", "{folder}"],
        ["reward", "score", "--model", "{folder}", "--pairs", "{pairs}", "--out", "{folder}"],
        [
            "eval",
            "winrate",
            "--policy",
            "{folder}",
            "--baseline",
            "{folder}",
            "--prompts",
            "{pairs}",
            "--judge",
            RULE_JUDGE,
            "--constitution",
            HELPFUL,
            "--out",
            "{folder}",
        ],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_writing_a_file_where_a_folder_is_is_one_clean_line(files, args):
    line = one_clean_line(cli(*[a.format(**files) for a in args]))
    assert str(files["folder"]) in line and "Is a directory" not in line


@pytest.mark.parametrize(
    "args",
    [
        ["calibrate", "--ai", LABELS, "--human", LABELS, "--out", "{a_file}"],
        ["calibrate", "apply", "--map", "{a_file}", "--labels", LABELS, "--out", "{a_file}"],
    ],
    ids=["calibrate", "calibrate apply"],
)
def test_an_output_folder_that_is_a_file_is_one_clean_line(files, args):
    line = one_clean_line(cli(*[a.format(**files) for a in args]))
    assert line == f"error: --out: {files['a_file']} is a file; give a folder (it is created if missing)"


# -- the other commands: bad paths, folders for files, empty files, wrong types ------------------------------------
@pytest.mark.parametrize(
    "args, expected",
    [
        (["generate", "--policy", "{missing}", "--prompts", "{pairs}", "--out", "{tmp}/g.jsonl"], "--policy: no such"),
        (["generate", "--policy", "{folder}", "--prompts", "{pairs}", "--out", "{tmp}/g.jsonl"], "an empty folder"),
        (
            ["generate", "--policy", "org/not-cached", "--prompts", "{pairs}", "--out", "{tmp}/g.jsonl"],
            "HF_HUB_OFFLINE",
        ),
        (
            [
                "generate",
                "--policy",
                "{folder}",
                "--prompts",
                "{pairs}",
                "--out",
                "{tmp}/g.jsonl",
                "--config",
                "{empty_yaml}",
            ],
            "empty.yaml:1: (top level): the file is empty",
        ),
        (["generate", "--policy", "{folder}", "--prompts", "{empty}", "--out", "{tmp}/g.jsonl"], "holds no prompts"),
        (
            [
                "eval",
                "winrate",
                "--policy",
                "{folder}",
                "--baseline",
                "{folder}",
                "--prompts",
                "{pairs}",
                "--judge",
                RULE_JUDGE,
                "--constitution",
                HELPFUL,
            ],
            "--policy: {folder} is not a saved model directory",
        ),
        (
            [
                "eval",
                "winrate",
                "--policy",
                "{no_tokenizer}",
                "--baseline",
                "{no_tokenizer}",
                "--prompts",
                "{pairs}",
                "--judge",
                RULE_JUDGE,
                "--constitution",
                HELPFUL,
            ],
            "--policy: {no_tokenizer} has no tokenizer files",
        ),
        (["reward", "score", "--model", "{missing}", "--pairs", "{pairs}"], "--model: no such folder"),
        (["reward", "score", "--model", "{no_tokenizer}", "--pairs", "{pairs}"], "has no tokenizer files"),
        (["reward", "score", "--model", "{a_file}", "--pairs", "{pairs}"], "is a file, not a model folder"),
        (["serve", "reward", "--judge", "{folder}"], "folder: cannot read: Is a directory"),
        (["serve", "reward", "--judge", "{latin1}"], "latin1.yaml:5: not UTF-8 text"),
        (["serve", "reward", "--judge", "{empty_yaml}"], "empty.yaml:1: backend:"),
        (["calibrate", "--ai", "{folder}", "--human", "{folder}", "--out", "{tmp}/c"], "no labels at"),
        (
            ["calibrate", "apply", "--map", "{folder}", "--labels", LABELS, "--out", "{tmp}/c"],
            "cannot read calibration",
        ),
        (
            ["calibrate", "apply", "--map", "{list_json}", "--labels", LABELS, "--out", "{tmp}/c"],
            "not a calibration map",
        ),
        (
            ["calibrate", "apply", "--map", "{numbers}", "--labels", LABELS, "--out", "{tmp}/c"],
            "numbers.jsonl:2: not JSON",
        ),
        (["human", "import", "{folder}", "--out", "{tmp}/h.jsonl"], "not one written by datasets' save_to_disk"),
        (["human", "import", "{numbers}", "--out", "{tmp}/h.jsonl"], "numbers.jsonl:1: row must be a JSON object"),
        (["human", "import", "{latin1}", "--out", "{tmp}/h.jsonl"], "latin1.yaml"),
        (["export", "--labels", "{folder}", "--out", "{tmp}/e.jsonl"], "no labels at"),
        (["export", "--feedback", "{empty_yaml}", "--out", "{tmp}/e.jsonl"], "empty.yaml:1: (top level)"),
        (["export", "--feedback", "{deep}", "--out", "{tmp}/e.jsonl"], "deep.yaml:2: yaml: nested deeper"),
        (["train", "dpo", "--config", "{folder}"], "folder: cannot read: Is a directory"),
        (["train", "dpo", "--config", "{empty_yaml}"], "the file is empty"),
        (["train", "dpo", "--config", DPO, "optim.lr=["], "override 'optim.lr=[': yaml:"),
        (["train", "dpo", "--config", DPO, "optim.lr=" + "[" * 3000], "nested deeper than 100 levels"),
    ],
)
def test_every_command_answers_bad_input_with_one_clean_line(files, tmp_path, args, expected):
    names = {**files, "tmp": tmp_path, "no_tokenizer": _no_tokenizer(tmp_path)}
    line = one_clean_line(cli(*[a.format(**names) for a in args]))
    assert expected.format(**names) in line


def test_a_port_out_of_range_is_a_usage_error_not_an_internal_one():
    result = cli("serve", "reward", "--judge", RULE_JUDGE, "--port", "99999")
    assert result.exit_code == 2 and "internal error" not in result.stderr and "--port" in result.stderr


def test_a_library_runtime_error_is_an_internal_error_and_ours_is_bad_input():
    """Training's exit codes: a refused run is 2; torch's bare RuntimeError (a shape mismatch: a bug) stays 1."""
    from rlaif.cli.common import error_lines

    def raised(module: str, exc: BaseException) -> BaseException:
        scope = {"__name__": module, "exc": exc}
        exec(compile("def fail():\n    raise exc\n", f"{module.replace('.', '/')}.py", "exec"), scope)
        try:
            scope["fail"]()
        except BaseException as e:  # noqa: BLE001 - the exception under test
            return e

    assert error_lines(raised("torch.nn.functional", RuntimeError("mat1 and mat2 shapes")))[1] == 1
    assert error_lines(raised("rlaif.labeling.job", RuntimeError("a lock is held")))[1] == 2
    assert error_lines(raised("torch.nn.functional", ValueError("bad value")))[1] == 2
    oom = type("OutOfMemoryError", (RuntimeError,), {})
    lines, code = error_lines(raised("torch.cuda", oom("CUDA out of memory.\nTried to allocate 2 GiB")))
    assert code == 2 and lines == [
        "error: out of memory on the accelerator: lower batch_size or max_length (a "
        "training run resumes from its last checkpoint)"
    ]
    lines, code = error_lines(raised("transformers.utils.hub", OSError("We couldn't connect.\nCheck your internet")))
    assert code == 2 and lines == ["error: We couldn't connect. Check your internet"]


@pytest.mark.parametrize(
    "option, value", [("--tie-margin", "nan"), ("--tie-margin", "5"), ("--tie-margin", "-1"), ("--bins", "1000000")]
)
def test_calibration_options_out_of_range_are_refused_before_the_work(tmp_path, option, value):
    """A NaN tie margin made no label a tie, and a million bins wrote a 120 MB report for ten minutes."""
    from tests.feedback.test_calibration import _matched_files

    ai, human = _matched_files(tmp_path, n=40)
    for command in (["calibrate"], ["calibrate", "fit"]):
        out = tmp_path / "out" / "-".join(command)
        result = cli(*command, "--ai", ai, "--human", human, "--out", out, option, value)
        assert result.exit_code == 2 and "Traceback" not in result.stderr and option in result.stderr
        assert not out.exists()


@pytest.mark.parametrize("kind", ["numbers", "latin1"])
@pytest.mark.parametrize(
    "args",
    [
        ["export", "--labels", "{labels}", "--out", "{tmp}/e.jsonl"],
        ["calibrate", "--ai", LABELS, "--human", "{labels}", "--out", "{tmp}/c"],
        ["train", "dpo", "--config", DPO, "feedback.ai={labels}", "output_dir={tmp}/run"],
    ],
    ids=["export", "calibrate", "train"],
)
def test_label_files_that_are_not_label_records_are_one_line_naming_file_and_line(files, tmp_path, args, kind):
    line = one_clean_line(cli(*[a.format(labels=files[kind], tmp=tmp_path) for a in args]))
    assert f"{files[kind]}:" in line


class _Hub(BaseHTTPRequestHandler):
    """A stand-in for the model hub on 127.0.0.1: every model is missing, as the hub says it."""

    def do_GET(self):  # noqa: N802 - http.server's name
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "Repository not found"}')

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("hub", ["missing-model", "unreachable"])
def test_a_hub_id_that_is_not_cached_is_looked_up_once_not_retried_for_a_minute(tmp_path, hub):
    """With the hub switched on but not reachable, transformers' download retried for ~50 s, then printed a
    paragraph; one request now says what is wrong with model.path."""
    import os
    import subprocess
    import sys
    import threading
    import time

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    if hub == "unreachable":
        server.shutdown()
        server.server_close()  # nothing listens there any more
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", PYTHONPATH=str(ROOT), HF_HOME=str(tmp_path / "hf"))
    started = time.time()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rlaif.cli",
            "train",
            "dpo",
            "--config",
            DPO,
            f"output_dir={tmp_path / 'run'}",
            "model={type: pretrained, path: someone/no-such-model}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if hub == "missing-model":
        server.shutdown()
    assert done.returncode == 2 and time.time() - started < 30, done.stderr
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"{DPO}:7: model.path: 'someone/no-such-model' is not a local folder")
    )
    expected = "the hub has no model of that name" if hub == "missing-model" else "the hub cannot be reached"
    assert expected in done.stderr and "Traceback" not in done.stderr and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "args,expected",
    [
        (["label", "--bogus"], "error: rlaif label: No such option: --bogus"),
        (["labl"], "error: rlaif: No such command 'labl'. Did you mean 'label'?"),
        (["constitution", "check"], "error: rlaif constitution check: Missing argument 'files'."),
        (["train", "dpo", "--config"], "requires an argument"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_command_and_its_help(args, expected):
    done = run_cli(*args, timeout=60)
    (line,) = done.stderr.splitlines()  # one line, not click's usage box
    assert done.returncode == 2 and expected in line and "--help" in line and done.stdout == ""
