"""`rlaif model export`: a judge's model as a Hugging Face folder for an OpenAI-compatible server (vLLM), and the
command that serves it under the name an `openai` judge config asks for."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from ..config.judge import load_judge_config
from ..models.loading import export_model, serve_command
from .common import guard

app = typer.Typer(help="The judge's model outside rlaif: export it for a server.", no_args_is_help=True)


@app.command("export")
def model_export(
    judge: Path = typer.Option(
        ..., help="Judge YAML of a transformers or vllm judge (e.g. judges/default.yaml, the embedded model)."
    ),
    out: Path = typer.Option(..., help="New folder to write the model to."),
    port: int = typer.Option(8000, min=1, max=65535, help="Port in the printed serve command."),
) -> None:
    """Write the judge's model (for a GGUF judge: its converted copy) as a Hugging Face folder; print the command
    that serves it with vLLM's OpenAI-compatible server."""

    def run():

        config = load_judge_config(judge)
        return config, export_model(config, out), serve_command(config, out, port=port)

    config, written, command = guard(run)
    print(f"wrote {config.model} (the model of {judge}) to {written}; serve it with:")
    print(shlex.join(command))
    if config.dtype == "auto":  # the transformers judge's auto is float32 on a CPU; vLLM's is bfloat16 there
        print("(on a CPU, add --dtype float32 for the numbers the transformers judge gives there)")
    print(
        f"and judge through it with an openai judge saying model: {config.model}, request: completions, "
        f"tokenizer: {written} (judges/vllm-server.yaml, for --out models/smollm2-judge)"
    )
