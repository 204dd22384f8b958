"""`rlaif model export` as a user runs it (a subprocess): a judge's model written as a Hugging Face folder that
loads to the same weights, the serve command printed under the name judges/vllm-server.yaml asks for, and the
refusals. The served side itself runs in the vLLM environment (tests/judges/test_vllm_server.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from rlaif.config.judge import load_judge_config
from tests.conftest import requires_smollm2
from tests.helpers import ROOT, run_cli


def serve_command(stdout: str) -> list[str]:
    lines = [line for line in stdout.splitlines() if "vllm.entrypoints.openai.api_server" in line]
    assert len(lines) == 1, stdout
    return shlex.split(lines[0])


def test_a_local_model_folder_is_exported_with_its_serve_command(tmp_path, tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    judge = tmp_path / "judge.yaml"
    judge.write_text(f"backend: transformers\nmodel: {tiny_model_dir}\ndtype: float32\n")
    out = tmp_path / "served" / "tiny"
    done = run_cli("model", "export", "--judge", judge, "--out", out, "--port", "8123")
    assert done.returncode == 0, done.stderr
    command = serve_command(done.stdout)
    assert command[:3] == ["python", "-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(command[3::2], command[4::2]))
    assert flags == {
        "--model": str(out),
        "--served-model-name": str(tiny_model_dir),
        "--host": "127.0.0.1",
        "--port": "8123",
        "--dtype": "float32",
    }
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not list(out.parent.glob("*.tmp*"))  # nothing left beside it

    again = run_cli("model", "export", "--judge", judge, "--out", out)
    assert again.returncode == 2 and "is not empty" in again.stderr and "Traceback" not in again.stderr
    http = run_cli("model", "export", "--judge", ROOT / "judges" / "openai.yaml", "--out", tmp_path / "x")
    assert http.returncode == 2 and "no model of its own to export" in http.stderr


def test_vllm_server_yaml_follows_its_own_serve_instructions():
    """The shipped keyless server judge: the served name and tokenizer folder its comment's commands produce,
    no key variable, and the request shape that sends the local backends' prompt."""
    path = ROOT / "judges" / "vllm-server.yaml"
    config, text = load_judge_config(path), path.read_text()
    default = load_judge_config(ROOT / "judges" / "default.yaml")
    export_out = re.search(r"rlaif model export --judge judges/default.yaml --out (\S+)", text).group(1)
    served_name = re.search(r"--served-model-name (\S+)", text).group(1)
    assert config.model == served_name == default.model and config.tokenizer == export_out
    assert config.request == "completions" and config.api_key_env is None
    assert yaml.safe_load(text)["base_urls"] == ["http://127.0.0.1:8000/v1"]


@pytest.mark.slow
@requires_smollm2
def test_the_embedded_judge_exports_its_converted_copy(tmp_path):
    from rlaif.models.loading import resolve_model_dir

    default = load_judge_config(ROOT / "judges" / "default.yaml")
    out = tmp_path / "smollm2-judge"
    done = run_cli("model", "export", "--judge", ROOT / "judges" / "default.yaml", "--out", out, timeout=600)
    assert done.returncode == 0, done.stderr
    command = serve_command(done.stdout)
    flags = dict(zip(command[3::2], command[4::2]))
    assert flags["--served-model-name"] == default.model == load_judge_config(ROOT / "judges/vllm-server.yaml").model
    converted = Path(resolve_model_dir(default.model, default.model_package, default.gguf_file))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in converted.iterdir())
    assert (out / "model.safetensors").read_bytes() == (converted / "model.safetensors").read_bytes()
