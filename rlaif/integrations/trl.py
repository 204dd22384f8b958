"""TRL's DPOTrainer and RewardTrainer on rlaif's soft labels: `rlaif export --format trl` writes each pair's
probability `p_chosen` that the chosen response is the better one, which TRL's own trainers ignore (they train
as if every p_chosen were 1). These subclasses train on it, with the losses of `rlaif train` (rlaif/train/losses.py):

    DPO (Rafailov et al. 2023, eq. 7) with a soft target p = p_chosen:
        loss = −[p · log σ(βΔ) + (1 − p) · log σ(−βΔ)],
        Δ = (log π − log π_ref)(chosen) − (log π − log π_ref)(rejected)
    reward model, Bradley-Terry with a soft target (Lee et al. 2023, sec. 2.2):
        loss = −[p · log σ(z) + (1 − p) · log σ(−z)],      z = r(chosen) − r(rejected)

At p_chosen = 1 both are TRL's own sigmoid losses. The column survives TRL's data preparation: the tokenising map
keeps every column, the trainers list `p_chosen` among their signature columns (so `remove_unused_columns` keeps
it), and the collator is wrapped to hand it to the loss as a float tensor.

    from datasets import load_dataset
    from trl import DPOConfig
    from .trl import SoftDPOTrainer

    rows = load_dataset("json", data_files="prefs.jsonl", split="train")   # rlaif export --format trl
    SoftDPOTrainer(model="path/to/sft", args=DPOConfig(output_dir="out"), train_dataset=rows).train()

Both encode two rows per pair, as TRL does: prefix sharing (rlaif/models/prefix.py, on in `rlaif train`) would
need TRL's collators, truncation modes and reference pass rewritten here, so these trainers stay TRL's.

Needs trl (tested with 1.16). SoftDPOTrainer supports DPOConfig's default `loss_type=["sigmoid"]` only, and
refuses the settings that would change that loss (other loss types, ld_alpha, f-divergences, WPO weighting,
label_smoothing, a MoE auxiliary loss): it says so at construction rather than train on another loss.

A diverging run stops as `rlaif train` does: a loss or a gradient that is NaN or infinite raises
rlaif.numbers.TrainingDiverged before its optimizer step, and non-finite weights are never saved, so the last
checkpoint stays the one `trainer.train(resume_from_checkpoint=True)` resumes from. Both trainers add
`StopOnDivergence` themselves; TRL's own trainers take it with `trainer.add_callback(StopOnDivergence())`.
"""

from __future__ import annotations

import inspect
import math
import os
from typing import Any, Optional

import torch
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import DPOTrainer, RewardTrainer

from ..numbers import TrainingDiverged
from ..train.losses import bradley_terry_loss, sigmoid_dpo_loss
from ..train.run import diverged, first_nonfinite, not_finite, on_any_process

P_CHOSEN = "p_chosen"
# Batch entries of TRL's DPO collator that are no model inputs.
_NOT_MODEL_INPUTS = ("completion_mask", "ref_chosen_logps", "ref_rejected_logps")


def p_chosen_tensor(examples: list[dict]) -> torch.Tensor:
    """The examples' p_chosen as a float32 tensor; a missing, non-numeric or out-of-range value is an error naming
    the example, never a silent hard label."""
    values = []
    for i, example in enumerate(examples):
        value = example.get(P_CHOSEN)
        try:
            p = float(value)
        except (TypeError, ValueError):
            p = math.nan
        if not 0.0 <= p <= 1.0:  # NaN fails too
            where = example.get("id", f"example {i} of the batch")
            raise ValueError(f"{where}: {P_CHOSEN} must be a probability in [0, 1], got {value!r}")
        values.append(p)
    return torch.tensor(values, dtype=torch.float32)


class SoftLabelCollator:
    """A TRL collator's batch plus the examples' `p_chosen` (TRL's collators drop columns they do not know)."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.collator(examples)
        batch[P_CHOSEN] = p_chosen_tensor(examples)
        return batch


def _check_has_p_chosen(name: str, dataset: Any) -> None:
    datasets = dataset.values() if isinstance(dataset, dict) else [dataset]
    for d in datasets:
        columns = getattr(d, "column_names", None)  # None: an IterableDataset of unknown columns, checked per batch
        if columns is not None and P_CHOSEN not in columns:
            raise ValueError(
                f"{name} has no '{P_CHOSEN}' column (its columns: {', '.join(columns)}); "
                f"`rlaif export --format trl` writes it. For hard labels use TRL's own trainer."
            )


class StopOnDivergence(TrainerCallback):
    """Stops a transformers / TRL Trainer run (TrainingDiverged) when its gradients before an optimizer step, its
    logged loss or gradient norm, or its weights before a checkpoint are not finite. Under fp16 loss scaling the
    gradients are the scaler's to judge (it skips a step that overflowed). TRL logs a NaN step loss as the running
    mean (`logging_nan_inf_filter`), so the soft trainers also check each micro-batch's loss themselves."""

    def on_pre_optimizer_step(self, args, state, control, model=None, lr_scheduler=None, **kwargs):
        if args.fp16 or model is None:
            return
        name = first_nonfinite((n, p.grad) for n, p in model.named_parameters())
        if on_any_process(name is not None):
            raise stopped(
                args, state, lr_scheduler, f"the gradient of {name or 'a parameter on another process'} is not finite"
            )

    def on_step_end(self, args, state, control, model=None, lr_scheduler=None, **kwargs):
        if control.should_save and model is not None:
            check_weights(args, state, lr_scheduler, model, done=state.global_step)

    def on_log(self, args, state, control, logs=None, lr_scheduler=None, **kwargs):
        keys = ("loss", "eval_loss") if args.fp16 else ("loss", "grad_norm", "eval_loss")
        problems = not_finite({k: (logs or {}).get(k) for k in keys})
        if problems:  # the logged values are gathered over processes: every process sees them
            raise stopped(args, state, lr_scheduler, "; ".join(problems), done=state.global_step)


def stopped(args, state, lr_scheduler, what: str, done: Optional[int] = None) -> TrainingDiverged:
    """TrainingDiverged at step `done` (the step about to be applied by default) of a Trainer run."""
    step = state.global_step + 1 if done is None else done
    lr = lr_scheduler.get_last_lr()[0] if lr_scheduler is not None else None
    last = get_last_checkpoint(args.output_dir) if os.path.isdir(args.output_dir) else None
    return diverged(
        f"step {step}/{state.max_steps}",
        what,
        lr,
        last,
        resumes="the one trainer.train(resume_from_checkpoint=True) resumes from",
    )


def check_weights(args, state, lr_scheduler, model, done: int) -> None:
    name = first_nonfinite(model.named_parameters())
    if on_any_process(name is not None):
        raise stopped(
            args,
            state,
            lr_scheduler,
            f"the weights after it are not finite ({name or 'on another process'})",
            done=done,
        )


class _SoftLabels:
    """What both trainers share: the datasets are checked for `p_chosen`, TRL keeps the column through
    `remove_unused_columns`, and the collator passes it on."""

    def __init__(self, *args, **kwargs):
        bound = inspect.signature(super().__init__).bind(*args, **kwargs)
        config = bound.arguments.get("args")
        if config is not None:
            self._refuse(config)
        _check_has_p_chosen("train_dataset", bound.arguments.get("train_dataset"))
        if bound.arguments.get("eval_dataset") is not None:
            _check_has_p_chosen("eval_dataset", bound.arguments["eval_dataset"])
        super().__init__(*args, **kwargs)
        self._refuse(self.args)
        # Wrapped after TRL's __init__, which may already have run the collator (precomputed reference log-probs)
        self.data_collator = SoftLabelCollator(self.data_collator)
        self.add_callback(StopOnDivergence())

    def training_step(self, model, inputs, *args, **kwargs):
        loss = super().training_step(model, inputs, *args, **kwargs)
        problems = not_finite({"loss": loss})
        if on_any_process(bool(problems)):
            raise stopped(
                self.args,
                self.state,
                self.lr_scheduler,
                "; ".join(problems) or "the loss on another process is not finite",
            )
        return loss

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        if not _internal_call:  # a checkpoint's weights were checked at the end of its step (StopOnDivergence)
            check_weights(self.args, self.state, self.lr_scheduler, self.model, done=self.state.global_step)
        super().save_model(output_dir, _internal_call)

    def _refuse(self, config) -> None:
        """Raise ValueError for a TRL setting the soft loss does not implement."""

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if P_CHOSEN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, P_CHOSEN]


class SoftDPOTrainer(_SoftLabels, DPOTrainer):
    """trl.DPOTrainer trained on each pair's `p_chosen` (see the module docstring). It takes DPOTrainer's
    arguments; the reference is TRL's (a ref_model, the model with its PEFT adapter off, or precomputed log-probs)."""

    def _refuse(self, config) -> None:
        problems = []
        if list(config.loss_type) != ["sigmoid"]:
            problems.append(f"loss_type={config.loss_type!r} (only ['sigmoid'] has a soft form here)")
        if config.ld_alpha is not None:
            problems.append("ld_alpha (LD-DPO)")
        if str(getattr(config.f_divergence_type, "value", config.f_divergence_type)) != "reverse_kl":
            problems.append(f"f_divergence_type={config.f_divergence_type!r}")
        if config.use_weighting:
            problems.append("use_weighting (WPO)")
        if config.label_smoothing:
            problems.append("label_smoothing (p_chosen already carries the uncertainty; lower it in the data)")
        if getattr(self, "aux_loss_enabled", False):
            problems.append("a MoE router auxiliary loss (set router_aux_loss_coef=0)")
        if getattr(self, "_is_vision_dataset", False):
            problems.append("a vision dataset")
        if problems:
            raise ValueError(
                f"SoftDPOTrainer trains the soft sigmoid DPO loss only; not supported: {'; '.join(problems)}"
            )

    def compute_ref_log_probs(self, model, inputs):
        # TRL's precompute pass may see our collator's batches (evaluate() on a new dataset): p_chosen is no input
        return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k != P_CHOSEN})

    def _policy_logps(self, model, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Σ log π(response | prompt) of the chosen and the rejected rows, through the fused LM head TRL adds to
        the model (the same computation as its reference log-probs, so Δ is exactly 0 where π = π_ref)."""
        completion_mask = inputs["completion_mask"]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        model_inputs = {k: v for k, v in inputs.items() if k not in _NOT_MODEL_INPUTS}
        out = model(**model_inputs, labels=labels, use_cache=False, fused_lm_head=True)
        # prompt-learning PEFT prepends virtual tokens: keep the positions of the real ones
        logps = out.log_probs[:, -(completion_mask.size(1) - 1) :].sum(dim=1)
        return logps.chunk(2)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:
            raise ValueError("SoftDPOTrainer computes no logits for compute_metrics; evaluate without it")
        inputs = dict(inputs)
        p_chosen = inputs.pop(P_CHOSEN)
        chosen, rejected = self._policy_logps(model, inputs)
        if self.precompute_ref_logps:
            ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            reference = self.ref_model if self.ref_model is not None else self.model
            ref_chosen, ref_rejected = self.compute_ref_log_probs(reference, inputs)
        chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
        loss = sigmoid_dpo_loss(chosen_ratio - rejected_ratio, p_chosen.to(chosen.device), self.beta).mean()
        self._log_pairs(chosen_ratio.detach(), rejected_ratio.detach(), chosen.detach(), rejected.detach(), p_chosen)
        return loss

    def _log_pairs(self, chosen_ratio, rejected_ratio, chosen, rejected, p_chosen) -> None:
        """TRL's DPO metrics under their names (rewards are β·log π/π_ref), and the mean p_chosen trained on."""
        metrics = self._metrics["train" if self.model.training else "eval"]
        gather = self.accelerator.gather_for_metrics
        rewards_chosen, rewards_rejected = gather(self.beta * chosen_ratio), gather(self.beta * rejected_ratio)
        metrics["rewards/chosen"].append(rewards_chosen.mean().item())
        metrics["rewards/rejected"].append(rewards_rejected.mean().item())
        metrics["rewards/accuracies"].append((rewards_chosen > rewards_rejected).float().mean().item())
        metrics["rewards/margins"].append((rewards_chosen - rewards_rejected).mean().item())
        metrics["logps/chosen"].append(gather(chosen).mean().item())
        metrics["logps/rejected"].append(gather(rejected).mean().item())
        metrics[P_CHOSEN].append(gather(p_chosen.to(chosen.device)).mean().item())


class SoftRewardTrainer(_SoftLabels, RewardTrainer):
    """trl.RewardTrainer trained on each pair's `p_chosen` (see the module docstring). TRL's `margin` column and
    `center_rewards_coefficient` apply as in TRL: z = r(chosen) − r(rejected) − margin."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        p_chosen = inputs.pop(P_CHOSEN)
        # TRL's own pass: one forward, its metrics logged; its hard-label loss is replaced below
        _, outputs = super().compute_loss(model, inputs, return_outputs=True)
        rewards_chosen, rewards_rejected = outputs.logits.squeeze(-1).chunk(2)
        margin: Optional[torch.Tensor] = inputs.get("margin")
        shifted = rewards_chosen - margin if margin is not None else rewards_chosen
        loss = bradley_terry_loss(shifted, rewards_rejected, p_chosen.to(shifted.device)).mean()
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean((rewards_chosen + rewards_rejected) ** 2)
        return (loss, outputs) if return_outputs else loss
