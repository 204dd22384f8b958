"""The command line as a user runs it (subprocesses): help, constitution check/show/schema, label, export."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rlaif.config.judge import load_judge_config
from tests.helpers import ROOT

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def run(*args, check=False):
    p = subprocess.run(
        [sys.executable, "-m", "rlaif.cli", *map(str, args)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_help_lists_commands_without_importing_torch():
    p = run("--help", check=True)
    for cmd in ("label", "constitution", "export"):
        assert cmd in p.stdout
    code = (
        "import sys, rlaif, rlaif.cli, rlaif.config, rlaif.labeling; "
        "sys.argv=['rlaif','--help']\ntry:\n    rlaif.cli.main()\nexcept SystemExit:\n    pass\n"
        "bad=[m for m in ('torch','transformers','vllm','httpx') if m in sys.modules]; print(bad); "
        "sys.exit(1 if bad else 0)"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_constitution_check_ok_and_errors(tmp_path):
    p = run("constitution", "check", *sorted((ROOT / "constitutions").glob("*.yaml")), check=True)
    assert p.stdout.count(": ok: ") == len(list((ROOT / "constitutions").glob("*.yaml")))
    assert "sha256=" in p.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: x\nversion: '1'\nprinciples:\n  - id: a\n    text: Which?\n    wieght: 2\n"
        "  - id: b\nsampling: sometimes\n"
    )
    p = run("constitution", "check", bad)
    assert p.returncode == 2  # bad input (issue 9's exit-code table)
    lines = p.stderr.strip().splitlines()
    assert f"{bad}:6: principles[0].wieght: unknown field" in lines[0]
    assert any(line.startswith(f"{bad}:7: principles[1].text:") for line in lines)
    assert "Traceback" not in p.stderr


def test_constitution_schema_and_show():
    schema = json.loads(run("constitution", "schema", check=True).stdout)
    assert "principles" in schema["properties"]
    p = run("constitution", "show", ROOT / "constitutions" / "harmless.yaml", check=True)
    assert "Response A:" in p.stdout and "Question:" in p.stdout


def test_every_shipped_judge_parses():
    files = sorted((ROOT / "judges").glob("*.yaml"))
    assert {f.name for f in files} >= {"default.yaml", "openai.yaml", "vllm.yaml"}
    for f in files:
        cfg = load_judge_config(f)
        assert cfg.model


def test_judge_config_errors_name_file_and_line(tmp_path):
    from rlaif.config.yamlfile import ConfigFileError

    f = tmp_path / "j.yaml"
    f.write_text("backend: openai\nmodel: m\nbase_urls: []\nconcurency: 3\n")
    with pytest.raises(ConfigFileError) as e:
        load_judge_config(f)
    text = "\n".join(e.value.errors)
    assert f"{f}:3: base_urls:" in text and f"{f}:4: concurency: unknown field" in text


def test_label_and_export_through_the_cli(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps(
                {"prompt": [{"role": "user", "content": f"q{i}"}], "response_a": f"please {i}", "response_b": f"no {i}"}
            )
            + "\n"
            for i in range(5)
        )
    )
    judge = tmp_path / "judge.yaml"
    judge.write_text("backend: python\nfunction: tests.judge_fns:prefers_polite\n")
    const = ROOT / "constitutions" / "helpful.yaml"
    p = run("label", "--pairs", pairs, "--constitution", const, "--judge", judge, "--out", tmp_path / "out", check=True)
    assert "position consistency" in p.stdout
    p = run("export", "--labels", tmp_path / "out", "--out", tmp_path / "trl.jsonl", check=True)
    assert json.loads(p.stdout.strip().splitlines()[-1])["written"] == 5
    row = json.loads((tmp_path / "trl.jsonl").read_text().splitlines()[0])
    assert row["prompt"] == [{"role": "user", "content": "q0"}]
    assert row["chosen"] == [{"role": "assistant", "content": "please 0"}] and row["p_chosen"] > 0.5


def test_label_reports_missing_options_and_bad_files(tmp_path):
    p = run("label", "--pairs", "x.jsonl")
    assert p.returncode == 2 and "missing --constitution, --judge, --out" in p.stderr
    p = run(
        "label",
        "--pairs",
        tmp_path / "none.jsonl",
        "--constitution",
        ROOT / "constitutions/helpful.yaml",
        "--judge",
        ROOT / "judges/rule-length.yaml",
        "--out",
        tmp_path / "o",
    )
    assert p.returncode == 2 and "none.jsonl" in p.stderr and "Traceback" not in p.stderr


def test_a_tensor_parallel_judge_on_ray_needs_one_gpu_per_rank(tmp_path):
    """resources.num_gpus of a vLLM judge with tensor_parallel_size N is N (one GPU per engine rank in the
    worker's placement group) or 0 (a CPU engine); anything else is refused at its line."""
    from rlaif.config.yamlfile import ConfigFileError

    f = tmp_path / "vllm.yaml"
    for gpus, ok in ((2, True), (0, True), (1, False), (4, False)):
        f.write_text(f"backend: vllm\nmodel: m\ntensor_parallel_size: 2\nresources:\n  num_gpus: {gpus}\n")
        if ok:
            assert load_judge_config(f).resources.num_gpus == gpus
            continue
        with pytest.raises(ConfigFileError) as e:
            load_judge_config(f)
        assert any("set resources.num_gpus to 2" in line for line in e.value.errors), e.value.errors


def test_ray_help_names_the_extra_to_install():
    p = subprocess.run(
        [sys.executable, "-m", "rlaif.cli", "label", "--help"],
        cwd=ROOT,
        env={**ENV, "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0 and "Needs pip install 'rlaif[ray]'." in p.stdout, p.stdout


def _commands_with_out(command, path=()):
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands_with_out(sub, (*path, name))
    if any("--out" in getattr(p, "opts", ()) for p in command.params):
        yield path


def test_an_empty_out_is_refused_by_every_command(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from rlaif.cli import app

    monkeypatch.chdir(tmp_path)  # where an empty --out would write
    paths = list(_commands_with_out(typer.main.get_command(app)))
    assert {("label",), ("score",), ("revise",), ("export",), ("human", "import")} <= set(paths)
    for path in paths:
        for out in (["--out", ""], ["--out="]):
            result = CliRunner().invoke(app, [*path, *out])
            assert result.exit_code == 2, (path, result.output)
            assert result.stderr.strip() == (
                "error: --out is empty: name the folder or file to write (--out . for the working directory)"
            )
    assert list(tmp_path.iterdir()) == []
