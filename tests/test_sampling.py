import threading

import numpy as np
import pytest
import torch
from oracles import RecordingModel, devices, make_oracle
from torch import nn

from rs_core.smoothing.sampling import (
    NoiseSampler,
    NoiseStream,
    iter_counts,
    noise_block,
    sample_counts,
    sample_counts_many,
)
from rs_core.smoothing.seeding import make_generator


def test_counts_are_int64_and_sum_to_num_with_partial_last_batch(tiny_cnn):
    x = torch.rand(1, 8, 8)
    counts = sample_counts(tiny_cnn, x, sigma=0.5, num=1234, batch_size=100, seed=0)
    assert counts.dtype == np.int64 and counts.shape == (5,)
    assert counts.sum() == 1234


def test_seeded_runs_are_bit_reproducible_and_seeds_differ(tiny_cnn):
    x = torch.rand(1, 8, 8)
    a = sample_counts(tiny_cnn, x, 0.5, 3000, 256, seed=7)
    b = sample_counts(tiny_cnn, x, 0.5, 3000, 256, seed=7)
    c = sample_counts(tiny_cnn, x, 0.5, 3000, 256, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_global_rng_is_neither_used_nor_disturbed(tiny_cnn):
    x = torch.rand(1, 8, 8)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = sample_counts(tiny_cnn, x, 0.5, 500, 100, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)
    b = sample_counts(tiny_cnn, x, 0.5, 500, 100, seed=1)
    np.testing.assert_array_equal(a, b)


def test_unseeded_run_records_a_seed_that_reproduces_it(tiny_cnn):
    x = torch.rand(1, 8, 8)
    sampler = NoiseSampler(tiny_cnn, x, 0.5, 100)
    counts = sampler.sample(700).numpy()[0]
    again = sample_counts(tiny_cnn, x, 0.5, 700, 100, seed=sampler.seed)
    np.testing.assert_array_equal(counts, again)


def test_generator_argument(tiny_cnn):
    x = torch.rand(1, 8, 8)
    np.testing.assert_array_equal(sample_counts(tiny_cnn, x, 0.5, 300, 64, generator=make_generator(5)),
                                  sample_counts(tiny_cnn, x, 0.5, 300, 64, seed=5))
    # Any generator of the user's is used as it is (and its initial seed recorded).
    sampler = NoiseSampler(tiny_cnn, x, 0.5, 64, generator=torch.Generator().manual_seed(5))
    assert sampler.seed == 5 and sampler.sample(10).sum() == 10


def test_stream_yields_cumulative_counts_ending_at_the_one_shot_result(tiny_cnn):
    x = torch.rand(1, 8, 8)
    snaps = list(iter_counts(tiny_cnn, x, 0.5, 1050, 200, seed=3))
    assert [int(s.sum()) for s in snaps] == [200, 400, 600, 800, 1000, 1050]
    assert all(np.all(b >= a) for a, b in zip(snaps, snaps[1:]))
    np.testing.assert_array_equal(snaps[-1], sample_counts(tiny_cnn, x, 0.5, 1050, 200, seed=3))


def test_noise_is_isotropic_gaussian_with_sd_sigma_around_x():
    model = RecordingModel().eval()
    x = torch.rand(3, 8, 8)
    NoiseSampler(model, x, 0.37, 500, seed=0).sample(2000)
    eps = torch.cat(model.seen[1:]) - x  # seen[0] is the clean probe
    assert eps.shape == (2000, 3, 8, 8)
    flat = eps.flatten().double()
    assert abs(float(flat.mean())) < 0.002  # 384k draws: sd of the mean ≈ 0.0006
    assert float(flat.std()) == pytest.approx(0.37, rel=0.005)
    per_pixel_sd = eps.flatten(1).std(0)
    assert float(per_pixel_sd.min()) > 0.3 and float(per_pixel_sd.max()) < 0.44
    corr = np.corrcoef(eps.flatten(1)[:, :2].T.numpy())[0, 1]
    assert abs(corr) < 0.1


class VotesFromNoise(RecordingModel):
    """Keeps every input batch and votes for the largest of its first three pixels: votes that follow the noise."""

    def forward(self, x):
        super().forward(x)
        return x.flatten(1)[:, :3]


@pytest.mark.parametrize("shape", [(1, 2, 2), (3, 5, 5), (1, 28, 28), (3, 7, 9)])
@pytest.mark.parametrize("device", devices())
def test_noise_and_votes_do_not_depend_on_the_batch_size_even_when_it_changes_midway(shape, device):
    """Batch sizes 1, 7, 64 and 1,000, changed between calls: the same noise for every sample, so the same votes.
    (4 and 75 elements per sample: torch's own randn is not split-invariant there; 784: it is, on CPU.)"""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    seen, votes = [], []
    for batch in (1, 7, 64, 1000):
        model = VotesFromNoise().to(device).eval()
        sampler = NoiseSampler(model, x.to(device), 0.5, batch, seed=5)
        counts = [sampler.sample(130), sampler.sample(77)]
        sampler.batch_size = 33 if batch != 33 else 5  # as a time-sized run may do between two calls
        counts.append(sampler.sample(50))
        seen.append(torch.cat(model.seen[1:]).cpu())  # [0] is the probe of the clean input
        votes.append(torch.stack(counts).cpu())
    assert seen[0].shape == (257, *shape)
    assert all(torch.equal(seen[0], s) for s in seen[1:]) and all(torch.equal(votes[0], v) for v in votes[1:])


def test_a_noise_stream_is_split_invariant_across_block_edges():
    shape = (3, 7, 9)
    block = noise_block(shape)  # 16 samples of 189 elements on the CPU
    whole = torch.empty(3 * block + 5, *shape)
    NoiseStream(torch.Generator().manual_seed(0), shape, torch.float32).fill(whole)
    parts = torch.empty_like(whole)
    stream = NoiseStream(torch.Generator().manual_seed(0), shape, torch.float32)
    cuts = [0, 1, block - 1, block + 2, 3 * block, 3 * block + 5]
    for a, b in zip(cuts, cuts[1:], strict=False):
        stream.fill(parts[a:b])
    assert torch.equal(whole, parts)
    assert whole.std().item() == pytest.approx(1.0, abs=0.05)


class ClassOfInput(nn.Module):
    """Class = round(mean pixel × 10): a deterministic base classifier for small σ."""

    def forward(self, x):
        idx = (x.flatten(1).mean(1) * 10).round().long().clamp(0, 9)
        return nn.functional.one_hot(idx, 10).float()


def test_many_inputs_packed_into_shared_batches_keep_their_rows():
    xs = torch.stack([torch.full((1, 4, 4), c / 10) for c in [3, 7, 1, 9, 0]])
    counts = sample_counts_many(ClassOfInput().eval(), xs, sigma=0.001, num=30, batch_size=64, seed=0)
    assert counts.shape == (5, 10)
    for row, c in zip(counts, [3, 7, 1, 9, 0]):
        assert row[c] == 30 and row.sum() == 30


def test_packing_gives_each_input_its_own_noise():
    model = RecordingModel().eval()
    xs = torch.zeros(4, 1, 2, 2)
    NoiseSampler(model, xs, 1.0, 10, seed=0).sample(5)
    batch = torch.cat(model.seen[1:])
    assert batch.shape[0] == 20 and torch.unique(batch.flatten(1), dim=0).shape[0] == 20


class OomAbove(nn.Module):
    def __init__(self, limit):
        super().__init__()
        self.limit, self.calls = limit, []
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        self.calls.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.lin(x.flatten(1))


def test_out_of_memory_halves_the_batch_and_loses_no_votes():
    model = OomAbove(limit=300).eval()
    sampler = NoiseSampler(model, torch.rand(1, 2, 2), 0.5, batch_size=1000, seed=0)
    counts = sampler.sample(2500)
    assert int(counts.sum()) == 2500
    assert sampler.batch_size == 250
    assert model.calls[1:4] == [1000, 500, 250]


def test_other_errors_propagate():
    class Broken(nn.Module):
        def forward(self, x):
            if x.shape[0] > 1:
                raise RuntimeError("boom")
            return torch.zeros(1, 2)

    with pytest.raises(RuntimeError, match="boom"):
        sample_counts(Broken().eval(), torch.rand(1, 2, 2), 0.5, 10, 10, seed=0)


def test_concurrent_threads_get_the_results_of_sequential_runs(tiny_cnn):
    x = torch.rand(1, 8, 8)
    expected = {s: sample_counts(tiny_cnn, x, 0.5, 2000, 128, seed=s) for s in range(6)}
    got = {}

    def work(s):
        got[s] = sample_counts(tiny_cnn, x, 0.5, 2000, 128, seed=s)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in range(6):
        np.testing.assert_array_equal(got[s], expected[s])


@pytest.mark.parametrize("device", devices())
def test_linear_oracle_vote_frequency_matches_exact_pa(device):
    model, x = make_oracle(p_a=0.8, sigma=0.5)
    model = model.to(device)
    n = 200_000
    counts = sample_counts(model, x, 0.5, n, 10_000, seed=0)
    # Binomial(n, 0.8): sd of the frequency ≈ 0.0009; 5 sd.
    assert counts[1] / n == pytest.approx(0.8, abs=0.0045)


@pytest.mark.parametrize("kwargs, name", [
    (dict(sigma=0.0), "sigma"), (dict(sigma=-1.0), "sigma"), (dict(sigma=float("inf")), "sigma"),
    (dict(sigma=float("nan")), "sigma"), (dict(num=0), "num"), (dict(num=2.5), "num"),
    (dict(batch_size=0), "batch_size"), (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"),
    (dict(x=torch.rand(8, 8)), "x"), (dict(x=torch.full((1, 8, 8), float("nan"))), "x"),
    (dict(x=torch.zeros(1, 8, 8, dtype=torch.uint8)), "x"), (dict(x=[[1.0]]), "x"),
    (dict(autocast="fp8"), "autocast"), (dict(model="not a model"), "model"),
])
def test_invalid_parameters_name_the_parameter(tiny_cnn, kwargs, name):
    args = dict(model=tiny_cnn, x=torch.rand(1, 8, 8), sigma=0.5, num=10, batch_size=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{name}:"):
        sample_counts(**args)


@pytest.mark.parametrize("model", [
    nn.Sequential(nn.Flatten(), nn.Linear(64, 1)),   # K = 1
    nn.Sequential(nn.Linear(8, 3)),                  # output [B, 1, 8, 3]
    nn.Flatten(0),                                   # 1-D output
])
def test_model_output_not_b_by_k_is_refused(model):
    with pytest.raises(ValueError, match="^model:"):
        sample_counts(model.eval(), torch.rand(1, 8, 8), 0.5, 10, 10)


def test_model_in_training_mode_is_refused(tiny_cnn):
    with pytest.raises(ValueError, match="^model:.*eval"):
        sample_counts(tiny_cnn.train(), torch.rand(1, 8, 8), 0.5, 10, 10)


def test_input_the_model_cannot_take_is_refused(tiny_cnn):
    with pytest.raises(ValueError, match="^x:"):
        sample_counts(tiny_cnn, torch.rand(3, 8, 8), 0.5, 10, 10)


class TypedRecorder(RecordingModel):
    """A RecordingModel whose parameters (one) are of ``dtype``: the sampler casts its input to it."""

    def __init__(self, dtype):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, dtype=dtype), requires_grad=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_noise_is_drawn_and_added_in_float32_and_cast_after_adding(dtype):
    x = torch.rand(1, 6, 6)
    ref, low = TypedRecorder(torch.float32).eval(), TypedRecorder(dtype).eval()
    NoiseSampler(ref, x, 0.25, 500, seed=3).sample(500)
    NoiseSampler(low, x, 0.25, 500, seed=3).sample(500)
    f32, seen = ref.seen[1], low.seen[1]  # [0] is the clean probe
    assert f32.dtype == torch.float32 and seen.dtype == dtype
    # Bit for bit the float32 noisy input, rounded once: not x and ε rounded separately.
    assert torch.equal(seen, f32.to(dtype))
    eps_low = (x.to(dtype) + (0.25 * torch.randn(f32.shape, generator=make_generator(3)).to(dtype))).to(dtype)
    assert not torch.equal(seen, eps_low)
    # The noise itself takes many more values than a low-precision draw could (bf16 has 8 bits of mantissa).
    assert (f32 - x).unique().numel() > 17_000


def test_a_float64_model_gets_float64_noise():
    x = torch.rand(1, 6, 6)
    m = TypedRecorder(torch.float64).eval()
    NoiseSampler(m, x, 0.25, 100, seed=0).sample(100)
    seen = m.seen[1]
    assert seen.dtype == torch.float64
    assert not torch.equal(seen, seen.float().double())  # values no float32 could hold
