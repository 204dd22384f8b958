"""The one "auto" choice of device and dtype for a model loaded to run, not to train (a judge, a policy being
sampled, a reward model scoring): a GPU when there is one, else the CPU; bf16 on a GPU, fp32 on a CPU, where bf16
matmuls are ~100x slower without AMX. Training precision is accelerate's (rlaif.train.run.make_accelerator).

torch is imported only when the function runs, so the config package stays slim.
"""

from __future__ import annotations

from typing import Any


def device_and_dtype(device: Any = "auto", dtype: Any = "auto") -> tuple[Any, Any]:
    """(torch.device, torch.dtype) for `device` ("auto", "cpu", "cuda:1", a torch.device) and `dtype` ("auto", a
    torch dtype name such as "bfloat16", or a torch.dtype)."""
    import torch

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    if dtype == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return device, dtype
