"""Where and how a model runs: its device and dtype, the eval-mode check, reduced-precision autocast.

Shared by sampling, the fast path, adaptive certification and model files, so none of them reaches into another
for it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Autocast = Literal["bf16", "fp16"] | None
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The dtype of the model's first floating parameter or buffer (float32 for none)."""
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def check_model(model: nn.Module) -> nn.Module:
    """An ``nn.Module`` in eval mode."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: must be a torch.nn.Module, got {type(model).__name__}")
    if model.training:
        raise ValueError("model: is in training mode; call model.eval() first "
                         "(train-mode layers such as batch norm make votes depend on the batch)")
    return model


def check_autocast(autocast: Autocast) -> Autocast:
    if autocast not in (None, "bf16", "fp16"):
        raise ValueError(f"autocast: must be None, 'bf16' or 'fp16', got {autocast!r}")
    return autocast


def default_device() -> torch.device:
    """CUDA when present, then MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
