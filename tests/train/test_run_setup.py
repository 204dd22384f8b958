"""What every recipe sets up: the accelerator a run computes with."""

from __future__ import annotations

from types import SimpleNamespace


def test_runs_in_one_process_may_use_different_precisions():
    """A notebook (or the fuzz tests) may train in bf16 and then in fp32 in one process; accelerate keeps the first
    run's precision process-wide unless its state is reset."""
    from rlaif.train.run import make_accelerator

    assert make_accelerator(SimpleNamespace(precision="bf16")).mixed_precision == "bf16"
    assert make_accelerator(SimpleNamespace(precision="fp32")).mixed_precision == "no"
