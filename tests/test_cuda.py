"""CUDA code paths. Skipped (with the reason shown) where no CUDA device is present."""

import numpy as np
import pytest
import torch
from oracles import make_oracle

from rs_core import CertifyStream, certify, sample_counts
from rs_core.models.architectures import cifar_resnet20
from rs_core.smoothing.sampling import NoiseSampler

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; none found")]


def test_sampling_on_cuda_makes_no_host_sync_until_counts_are_read():
    model = cifar_resnet20().cuda().eval()
    sampler = NoiseSampler(model, torch.rand(3, 32, 32), 0.25, 512, seed=0)
    sampler.sample(600)  # warm-up outside the check (cuDNN may sync while choosing kernels)
    torch.cuda.set_sync_debug_mode("error")
    try:
        counts = sampler.sample(2048 + 17)  # several batches and a partial one
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert counts.device.type == "cuda" and int(counts.sum()) == 2065


def test_noise_and_counts_live_on_the_model_device_and_are_reproducible():
    model = cifar_resnet20().cuda().eval()
    x = torch.rand(3, 32, 32)  # on the CPU: moved to the model's device
    a = sample_counts(model, x, 0.25, 3000, 1000, seed=11)
    b = sample_counts(model, x, 0.25, 3000, 1000, seed=11)
    np.testing.assert_array_equal(a, b)
    sampler = NoiseSampler(model, x, 0.25, 100, seed=0)
    assert sampler.generator.device.type == "cuda" and sampler.inputs.device.type == "cuda"


def test_cpu_generator_for_a_cuda_model_is_refused():
    with pytest.raises(ValueError, match="^generator:"):
        NoiseSampler(cifar_resnet20().cuda().eval(), torch.rand(3, 32, 32), 0.25, generator=torch.Generator())


@pytest.mark.parametrize("autocast", ["bf16", "fp16"])
def test_autocast_is_recorded_and_agrees_with_full_precision(autocast):
    oracle, x = make_oracle(0.9, 0.5)
    # The same linear oracle as a float32 nn.Linear, so that autocast changes its matmul.
    linear = torch.nn.Linear(x.numel(), 2)
    with torch.no_grad():
        linear.weight.copy_(torch.stack([torch.zeros_like(oracle.w), oracle.w]).float())
        linear.bias.copy_(torch.tensor([0.0, oracle.b]))
    model = torch.nn.Sequential(torch.nn.Flatten(), linear).cuda().eval()
    full = certify(model, x, 0.5, 100, 20_000, 0.001, 5000, seed=0)
    low = certify(model, x, 0.5, 100, 20_000, 0.001, 5000, seed=0, autocast=autocast)
    assert low.autocast == autocast and full.autocast is None and low.device.startswith("cuda")
    assert low.prediction == full.prediction == 1
    assert abs(low.counts[1] - full.counts[1]) < 200  # low precision flips only near-boundary votes


def test_stream_on_cuda():
    model, x = make_oracle(0.95, 0.5)
    stream = CertifyStream(model.cuda(), x, 0.5, 100, 20_000, 0.001, 4000, seed=0)
    cert = stream.run()
    assert cert.prediction == 1 and cert.n == 20_000 and cert.device.startswith("cuda")


def test_real_out_of_memory_halves_the_batch_and_loses_no_votes():
    # A batch whose first activation (16×32×32 float32 = 64 KiB a sample) needs
    # about 1.5× the card's memory, while its noise (12 KiB a sample) still fits.
    total = torch.cuda.get_device_properties(0).total_memory
    batch = int(1.5 * total / (64 * 1024))
    model = cifar_resnet20().cuda().eval()
    sampler = NoiseSampler(model, torch.rand(3, 32, 32), 0.25, batch, seed=0)
    counts = sampler.sample(batch)
    assert int(counts.sum()) == batch
    assert sampler.batch_size < batch
    del sampler
    torch.cuda.empty_cache()
