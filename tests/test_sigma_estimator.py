"""σ-estimator labels: the cache is keyed by everything that determines a label."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rs_core.sigma_estimator import cached_expert_radii, label_key, module_fingerprint


def _linear(w: torch.Tensor, b: float) -> nn.Module:
    """Scores [0, w·x + b] for flattened x: class 1 when w·x + b > 0 (weights in the state dict)."""
    lin = nn.Linear(w.numel(), 2)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([torch.zeros_like(w), w]))
        lin.bias.copy_(torch.tensor([0.0, b]))
    return nn.Sequential(nn.Flatten(), lin).eval()


def _experts(shift: float = 0.0) -> dict[float, nn.Module]:
    g = torch.Generator().manual_seed(0)
    return {s: _linear(torch.randn(16, generator=g), 0.3 + shift) for s in (0.25, 0.5)}


def _data():
    g = torch.Generator().manual_seed(1)
    return torch.rand(6, 1, 4, 4, generator=g), torch.tensor([1, 0, 1, 1, 0, 1])


def test_the_label_key_changes_with_each_thing_that_determines_a_label():
    xs, ys = _data()
    base = dict(experts=_experts(), xs=xs, ys=ys, n=50, alpha=0.001, batch_size=100, seed=0)
    key = label_key(**base)
    assert label_key(**base) == key
    variants = [dict(experts=_experts(shift=0.1)), dict(experts={0.25: _experts()[0.25], 0.75: _experts()[0.5]}),
                dict(xs=xs.flip(0)), dict(ys=1 - ys), dict(n=51), dict(alpha=0.01), dict(batch_size=64),
                dict(seed=1), dict(seed=2**32)]
    keys = [label_key(**(base | v)) for v in variants]
    assert key not in keys and len(set(keys)) == len(keys)


def test_module_fingerprint_sees_weights_not_identity():
    a, b = _experts(), _experts()
    assert module_fingerprint(a[0.25]) == module_fingerprint(b[0.25]) != module_fingerprint(a[0.5])


def test_a_cache_of_other_experts_is_not_reused(tmp_path):
    xs, ys = _data()
    first = cached_expert_radii(tmp_path, _experts(), xs, ys, n=40, chunk=4, batch_size=100, progress=False)
    files = sorted(p.name for p in tmp_path.glob("radii_*.npy"))
    assert len(files) == 2  # two chunks
    again = cached_expert_radii(tmp_path, _experts(), xs, ys, n=40, chunk=4, batch_size=100, progress=False)
    np.testing.assert_array_equal(first, again)
    assert sorted(p.name for p in tmp_path.glob("radii_*.npy")) == files  # reused
    other = cached_expert_radii(tmp_path, _experts(shift=5.0), xs, ys, n=40, chunk=4, batch_size=100,
                                progress=False)
    assert len(list(tmp_path.glob("radii_*.npy"))) == 4  # computed anew, not read from the first cache
    # A margin of +5 makes every input class 1: its labels differ from the first experts'.
    assert not np.array_equal(first, other)
