"""What every training recipe sets up and tears down alike: the accelerator and its precision, the run directory
and the checkpoint to resume from, the optimiser and schedule, the per-step tail (metrics, evaluation schedule,
progress line, checkpoints), the check that stops a diverging run, and the final save to OUT/model. Recipes
(rlaif/recipes/) call these in order.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from pathlib import Path
from typing import Callable, Optional

from ..files import atomic_write
from ..numbers import TrainingDiverged
from .checkpoint import Checkpointer, latest_checkpoint, remove_partial
from .metrics import MetricsLog

# Fields a resumed run may change: they steer how long and how loudly it runs, or (prefix_sharing, packing: exact
# either way) how it computes, not what it learns per step.
RESUMABLE_CHANGES = {
    "prefix_sharing",
    "packing",
    "max_steps",
    "num_epochs",
    "save_steps",
    "save_total_limit",
    "eval_steps",
    "report_to",
    "project",
    "eval_batch_size",
    "iterations",
}


def end_processes() -> None:
    """Leave the process group of a multi-process run (torchrun, accelerate launch) before the process exits, however
    the run ended: a group still alive at interpreter exit can abort it (gloo's threads: "terminate called without an
    active exception", SIGABRT), turning the run's exit code (0, or 5 after a divergence) into -6."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def with_cpu_threads(train):
    """Run a recipe's `train(config)` with `config.cpu_threads` torch threads, restoring the count afterwards."""

    @functools.wraps(train)
    def run(config):
        import torch

        if config.cpu_threads is None:
            return train(config)
        before = torch.get_num_threads()
        torch.set_num_threads(config.cpu_threads)
        try:
            return train(config)
        finally:
            torch.set_num_threads(before)

    return run


def make_accelerator(config):
    """An `accelerate.Accelerator`: bf16 autocast on a GPU that supports it and fp32 on CPU for `precision: auto`
    (unless `accelerate launch` set mixed precision); gradient accumulation is done by the recipes."""
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    # One process may run several recipes (a notebook, tests): accelerate keeps the first run's precision in a
    # process-wide state and refuses a second that differs. The distributed state (PartialState) is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    # Our schedules count optimizer steps; accelerate would otherwise step a prepared scheduler once per process.
    kwargs = {"step_scheduler_with_optimizer": False}
    precision = config.precision
    if precision == "auto":
        if os.environ.get("ACCELERATE_MIXED_PRECISION"):
            return Accelerator(**kwargs)
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return Accelerator(mixed_precision="bf16" if precision == "bf16" else "no", **kwargs)


def frozen_dtype(accelerator):
    """The dtype of the models a run holds frozen (reference, reward model): bf16 under bf16 mixed precision,
    where autocast computes in bf16 anyway, else fp32."""
    import torch

    return torch.bfloat16 if accelerator.mixed_precision == "bf16" else torch.float32


def prepare_run_dir(config, accelerator) -> Optional[Path]:
    """Create OUT, write OUT/config.yaml, and return the checkpoint to resume from (None for a fresh run).

    A run directory holds one run: restarting it with a config that would change what is learned is refused.
    """
    import yaml

    out = Path(config.output_dir)
    resolved = config.model_dump(mode="json")
    saved = out / "config.yaml"
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        remove_partial(out)
        if saved.exists() and latest_checkpoint(out) is not None:
            old = _normalised(type(config), yaml.safe_load(saved.read_text()) or {})
            changed = sorted(
                k for k in set(old) | set(resolved) if k not in RESUMABLE_CHANGES and old.get(k) != resolved.get(k)
            )
            if changed:
                raise ValueError(
                    f"{out} holds a run with a different config ({', '.join(changed)} changed); "
                    "use a new output_dir, or the same config to resume it"
                )
        with atomic_write(saved) as f:
            f.write(yaml.safe_dump(resolved, sort_keys=False))
    accelerator.wait_for_everyone()
    return latest_checkpoint(out)


def _normalised(model, saved: dict) -> dict:
    """A saved config.yaml as this version of rlaif writes it: a run started by an older version spelled some
    sections out differently (e.g. every feedback field, where now only the chosen source's are written)."""
    try:
        return model.model_validate(saved).model_dump(mode="json")
    except ValueError:
        return saved


def start_run(config):
    """The accelerator, the run directory's checkpoint to resume from (or None), and the seed set:
    (accelerator, resume)."""
    from accelerate.utils import set_seed

    acc = make_accelerator(config)
    resume = prepare_run_dir(config, acc)
    set_seed(config.seed)
    if acc.is_main_process:
        print(
            f"{config.method}: on {_device_name(acc.device)}, "
            f"{'bf16 mixed precision' if acc.mixed_precision == 'bf16' else 'fp32'}, {acc.num_processes} "
            f"process{'es' if acc.num_processes > 1 else ''}",
            flush=True,
        )
    return acc, resume


def _device_name(device) -> str:
    import torch

    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)


def total_steps(config, n_train: int, world: int) -> int:
    if config.max_steps is not None:
        return config.max_steps
    per_epoch = n_train // global_batch(config, world)
    return max(1, int(per_epoch * config.num_epochs))


def global_batch(config, world: int) -> int:
    return config.batch_size * config.grad_accum * world


def make_optimizer(model, optim, steps: int):
    """AdamW over the trainable parameters, with linear warm-up then the configured decay."""
    import torch
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    # the fused kernel (one pass over each tensor) is several times faster than the per-op one, on CPU as well
    # (left to the per-op kernel under FSDP / DeepSpeed, whose sharded parameters it may not support)
    sharded = os.environ.get("ACCELERATE_USE_FSDP") == "true" or os.environ.get("ACCELERATE_USE_DEEPSPEED") == "true"
    fused = not sharded and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    optimizer = torch.optim.AdamW(
        params, lr=optim.lr, betas=optim.betas, eps=optim.eps, weight_decay=optim.weight_decay, fused=fused or None
    )
    name = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}[optim.scheduler]
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=optim.warmup_steps, num_training_steps=steps)
    return optimizer, scheduler


def prepare_for_training(model, config) -> None:
    """Gradient checkpointing (non-reentrant, so frozen inputs under LoRA still get gradients) and no KV cache."""
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if getattr(model, "config", None) is not None:
        model.config.use_cache = False


def clip_gradients(accelerator, model, max_norm: Optional[float]) -> Optional[float]:
    """Clip the gradients to `max_norm` (None: no clipping) and return their norm before clipping, measured either
    way so that a non-finite gradient is seen (None when DeepSpeed's engine, which clips itself, reports none)."""
    norm = accelerator.clip_grad_norm_(model.parameters(), max_norm or math.inf)
    return None if norm is None else float(norm)


def reduce_sums(accelerator, sums: dict) -> dict:
    """Sum a dict of float tensors over processes (one collective); the tensors may sit on different devices (the
    CPU for counts and rewards, the GPU for losses)."""
    import torch

    keys = sorted(sums)
    total = torch.stack([sums[k].detach().float().reshape(()).to(accelerator.device) for k in keys])
    total = accelerator.reduce(total, reduction="sum") if accelerator.num_processes > 1 else total
    return dict(zip(keys, total.tolist()))


def add_into(sums: dict, terms: dict) -> None:
    """Add a batch's statistics (tensors) into running sums kept on the CPU."""
    for k, v in terms.items():
        sums[k] = sums[k] + v.detach().float().cpu()


def save_final(accelerator, model, tokenizer, out_dir: Path) -> Path:
    """The trained model in Hugging Face format at OUT/model (peft adapters under LoRA)."""
    path = Path(out_dir) / "model"
    weights = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(path, state_dict=weights, safe_serialization=True)
        tokenizer.save_pretrained(path)
    accelerator.wait_for_everyone()
    return path


# -- a diverging run stops -----------------------------------------------------------------------------------------
# One NaN or infinity in a loss or a gradient makes every later weight NaN: the step is never applied, nothing is
# saved from it on, and the run ends with TrainingDiverged (exit 5), so its last checkpoint stays the one a rerun
# resumes from and OUT/model is never a broken model.
Check = Callable[..., None]  # check(lr=…, loss=…, grad_norm=…): raises TrainingDiverged before a step is applied


def diverged(
    where: str,
    what: str,
    lr: Optional[float],
    checkpoint: Optional[Path],
    resumes: str = "the one the same command resumes from (other settings, e.g. a lower optim.lr, need a "
    "new output_dir)",
) -> TrainingDiverged:
    """The one message of a diverged run: where (the step), what is not finite, the learning rate, and the
    checkpoint a rerun resumes from (`resumes` says how), or that there is none."""
    rate = f" (lr {lr:g})" if lr is not None else ""
    after = (
        f"{checkpoint} stays the last checkpoint, {resumes}"
        if checkpoint is not None
        else "no checkpoint was written before it, so a rerun starts over"
    )
    return TrainingDiverged(f"{where}: {what}{rate}; nothing from this step on was saved: {after}")


def not_finite(values: dict) -> list[str]:
    """`name is value` for each of `values` (floats or 0-d tensors; None: not measured) that is NaN or infinite."""
    out = []
    for name, value in values.items():
        if value is not None and not math.isfinite(value := float(value)):
            out.append(f"{name} is {value}")
    return out


def first_nonfinite(named) -> Optional[str]:
    """The name of the first of `named` ((name, tensor) pairs: parameters, or their gradients) that holds NaN or
    infinity on this process (its shard under FSDP), or None. Each tensor's min and max carry it (both propagate
    NaN), so no tensor-sized mask is allocated."""
    import torch

    local = ((n, t.to_local() if hasattr(t, "to_local") else t) for n, t in named if t is not None)  # FSDP2 DTensors
    named = [(n, t) for n, t in local if t.numel() and t.is_floating_point()]
    if not named:
        return None
    ends = torch.stack([torch.stack(torch.aminmax(t.detach().reshape(-1))).float() for _, t in named])
    finite = torch.isfinite(ends).all(dim=1).cpu()
    return None if bool(finite.all()) else named[int((~finite).nonzero()[0])][0]


def on_any_process(flag: bool) -> bool:
    """Whether `flag` holds on any process: every process gets the same answer, so all stop together and none
    waits in a collective for one that left."""
    from accelerate import PartialState

    state = PartialState()
    if state.num_processes == 1:
        return flag
    import torch
    from accelerate.utils import reduce

    return bool(reduce(torch.tensor([float(flag)], device=state.device), reduction="sum") > 0)


class RunLog:
    """A run's checkpoints and metrics, resumed together: `state` is the trainer_state.json of the checkpoint the
    run resumes from ({"step": 0} for a fresh run), `start` its step; metrics a killed run logged after it are
    dropped. It also stops a diverging run (`check`, `save`). Build it after `accelerator.prepare` (restoring the
    optimiser needs the prepared one)."""

    def __init__(self, accelerator, config, tokenizer, resume: Optional[Path], keep: Optional[int]):

        self.acc, self.config, self.tokenizer, self.out = accelerator, config, tokenizer, Path(config.output_dir)
        self.checkpointer = Checkpointer(accelerator, self.out, tokenizer, keep=keep)
        self.state = self.checkpointer.load(resume) if resume else {"step": 0}
        self.start = self.state["step"]
        self.metrics = MetricsLog(
            self.out,
            config.report_to,
            config.project,
            config.model_dump(mode="json"),
            resume_step=self.start,
            enabled=accelerator.is_main_process,
        )
        self.where, self.lr = f"step {self.start}", None  # the step last checked, for the messages

    def evaluates(self, done: int, steps: int) -> bool:
        """Whether step `done` (1-based) ends with an evaluation: every eval_steps, and at the end."""
        return done == steps or bool(self.config.eval_steps and done % self.config.eval_steps == 0)

    def check(self, done: int, steps: int, lr: Optional[float], **values) -> None:
        """Stop the run at step `done` (1-based) of `steps` when one of `values` (the step's loss and gradient norm
        before the step is applied, the held-out loss after it; None where not measured) is NaN or infinite on any
        process: raises TrainingDiverged naming the step and the checkpoint a rerun resumes from."""
        self.where, self.lr = f"step {done}/{steps}", lr
        if self.acc.scaler is not None:  # fp16 loss scaling: the scaler skips a step whose gradients overflowed
            values.pop("grad_norm", None)
        problems = not_finite(values)
        if on_any_process(bool(problems)):
            self._stop("; ".join(problems) or "another process's loss or gradient norm is not finite")

    def checks(self, done: int, steps: int) -> Check:
        """`check` of step `done`, for the function that applies the step (it knows the lr, loss and norm)."""
        return functools.partial(self.check, done, steps)

    @contextlib.contextmanager
    def sampling(self, done: int, steps: int):
        """Sampling the policy during step `done`: a step that made the policy's outputs NaN while its weights stay
        finite (a huge learning rate) shows first here, as torch's sampler refusing the probabilities; that is the
        run diverging too."""
        try:
            yield
        except RuntimeError as e:
            if "probability tensor contains" not in str(e):
                raise
            self.where = f"step {done}/{steps}"
            self._stop("sampling the policy met next-token probabilities that are not finite")

    def end_step(self, model, done: int, steps: int, row: dict, line: str, state: dict) -> None:
        """Log step `done`'s metrics row, print `line` about every twentieth of the run, and checkpoint (with
        `state` in trainer_state.json) every save_steps and at the end. A held-out loss that is not finite stops
        the run first."""
        if "eval_loss" in row:  # every process evaluates at the same steps
            self.check(done, steps, row.get("lr"), eval_loss=row["eval_loss"])
        self.metrics.log(done, row)
        if self.acc.is_main_process and (done == steps or done % max(1, steps // 20) == 0):
            print(f"step {done}/{steps} {line}", flush=True)
        if done % self.config.save_steps == 0 or done == steps:
            self.save(model, done, {"total_steps": steps, **state})

    def save(self, model, done: int, state: dict) -> Path:
        """Write checkpoint-`done` (with `state` in trainer_state.json), unless the weights are not finite."""
        self._check_weights(model)
        return self.checkpointer.save(model, done, state)

    def finish(self, model) -> Path:
        """Close the metrics and save the trained model to OUT/model (never non-finite weights); returns its
        directory."""
        self._check_weights(model)
        self.metrics.close()
        return save_final(self.acc, model, self.tokenizer, self.out)

    def _check_weights(self, model) -> None:
        name = first_nonfinite(model.named_parameters())
        if on_any_process(name is not None):
            self._stop(f"the weights after it are not finite ({name or 'on another process'})")

    def _stop(self, what: str):

        self.metrics.close()
        raise diverged(self.where, what, self.lr, latest_checkpoint(self.out))
