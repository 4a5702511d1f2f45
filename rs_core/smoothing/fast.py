"""The opt-in fast path for the forward pass: reduced-precision autocast, channels-last memory, ``torch.compile``.

Sampling is nothing but forward passes of one fixed-shape batch, so the usual inference speed-ups apply. None of
them touches the noise (drawn and added in float32 or wider, :mod:`rs_core.smoothing.sampling`) or the statistics: they change
the base classifier f a little (bf16/fp16 rounding can flip the argmax of near-ties), and the certificate is then
exactly as valid — for that slightly different f. That is why each is opt-in and recorded with the results
(``OUTFILE.meta.json`` of the data-set commands, ``Certificate.autocast``).

* ``autocast``: ``"bf16"`` or ``"fp16"`` (``torch.autocast``; fp16 on CUDA only in practice);
* ``channels_last``: model and batches in NHWC layout, which cuDNN's tensor-core kernels prefer;
* ``compile``: ``torch.compile`` — on CUDA in ``"reduce-overhead"`` mode (CUDA graphs: the fixed-shape batch is
  replayed without launch overhead); elsewhere the default mode. The first batches pay for compilation.

>>> fp = FastPath(channels_last=True)
>>> fp.record()
{'autocast': None, 'channels_last': True, 'compile': False}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from rs_core.models.device import Autocast, check_autocast, model_device


class ChannelsLast(nn.Module):
    """``model`` with its weights and every input batch in channels-last layout (same outputs up to rounding)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model.to(memory_format=torch.channels_last)
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x)


@dataclass(frozen=True)
class FastPath:
    """Which speed-ups to apply; ``FastPath()`` is the plain fp32 path."""

    autocast: Autocast = None
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        check_autocast(self.autocast)
        for name in ("channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: must be True or False, got {getattr(self, name)!r}")

    @property
    def plain(self) -> bool:
        return self == FastPath()

    def apply(self, model: nn.Module) -> nn.Module:
        """The model to sample with (autocast is applied around the forward pass by the samplers, not here)."""
        if self.channels_last:
            model = ChannelsLast(model)
        if self.compile:
            mode = "reduce-overhead" if model_device(model).type == "cuda" else None
            training = model.training
            model = torch.compile(model, mode=mode, dynamic=False)
            model.train(training)
        return model

    def record(self) -> dict[str, Any]:
        return asdict(self)


__all__ = ["ChannelsLast", "FastPath"]
