"""Seeds: every bit of every accepted seed reaches the noise; one derivation for every path."""

import numpy as np
import pytest
import torch
from oracles import devices
from scipy import stats

from rs_core import sample_counts
from rs_core.smoothing.seeding import (
    SEED_LIMIT,
    SeedPath,
    cpu_state_layout_ok,
    derive_seed,
    example_seed,
    fresh_seed,
    make_generator,
    predict_seed,
)


def _draw(seed, device="cpu", k=8):
    return torch.randn(k, generator=make_generator(seed, device), device=device).cpu()


def test_this_torch_has_the_cpu_state_layout_we_write():
    assert cpu_state_layout_ok()


@pytest.mark.parametrize("device", devices())
def test_every_bit_of_the_seed_changes_the_noise(device):
    base = _draw(0, device)
    draws = [_draw(1 << bit, device) for bit in range(64)]
    assert all(not torch.equal(base, d) for d in draws)
    # all 65 draws distinct from one another
    assert len({tuple(d.tolist()) for d in [base, *draws]}) == 65


def test_seeds_that_share_their_low_32_bits_give_different_votes(tiny_cnn):
    x = torch.rand(1, 8, 8)
    a = sample_counts(tiny_cnn, x, 0.5, 2000, 250, seed=7)
    b = sample_counts(tiny_cnn, x, 0.5, 2000, 250, seed=7 + 2**32)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, sample_counts(tiny_cnn, x, 0.5, 2000, 250, seed=7))


def test_seeded_generator_reproduces_and_reports_the_seed():
    g = make_generator(2**64 - 1)
    assert g.initial_seed() == 2**64 - 1
    assert torch.equal(torch.randn(100, generator=g), _draw(2**64 - 1, k=100))


def test_noise_from_a_derived_state_is_standard_normal():
    z = _draw(123456789, k=200_000).double().numpy()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 5 / np.sqrt(z.size) and abs(z.var() - 1) < 5 * np.sqrt(2 / z.size)


@pytest.mark.parametrize("seed", [-1, SEED_LIMIT, 1.5, "7", True])
def test_seeds_outside_the_range_are_refused(seed):
    with pytest.raises(ValueError, match="^seed:"):
        make_generator(seed)


def test_derived_seeds_depend_on_every_bit_and_on_the_path():
    children = {derive_seed(1 << bit, 2, 0) for bit in range(64)} | {derive_seed(0, 2, 0)}
    assert len(children) == 65 and all(0 <= c < SEED_LIMIT for c in children)
    assert derive_seed(5, 1) != derive_seed(5, 2) != derive_seed(5, 2, 1) != derive_seed(5, 2, 0)
    assert derive_seed(5, 2, 1) == derive_seed(5, 2, 1)


def test_fresh_seeds_are_in_range_and_differ():
    # OS randomness on purpose (that is what is tested); a false failure needs a collision among 100
    # draws of 63 bits: probability <= C(100, 2) / 2**63 ≈ 5e-16 per run.
    seeds = {fresh_seed() for _ in range(100)}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for s in seeds)


def test_example_i_keeps_seed_plus_i_and_overflow_is_refused():
    assert [example_seed(7, i) for i in range(4)] == [7, 8, 9, 10]
    assert example_seed(SEED_LIMIT - 5, 4) == SEED_LIMIT - 1 and example_seed(0, 0) == 0
    with pytest.raises(ValueError, match=r"^seed: example 5 uses seed \+ 5 = 18446744073709551616, outside"):
        example_seed(SEED_LIMIT - 5, 5)
    for index in (-1, 1.0, True, "2"):
        with pytest.raises(ValueError, match="^index:"):
            example_seed(0, index)
    with pytest.raises(ValueError, match="^seed:"):
        example_seed(-1, 0)


def test_named_paths_give_distinct_seeds_for_every_purpose():
    seed = 12345
    assert predict_seed(seed) == derive_seed(seed, SeedPath.PREDICT)
    named = {p: derive_seed(seed, p) for p in SeedPath}
    # PREDICT after CERTIFY: not CERTIFY's own seed, nor any example's, nor a training stream's.
    assert predict_seed(seed) not in {seed, seed + 1, example_seed(seed, 1)}
    # Every named path, the sweep's σ paths (i,), dual RS's stage paths (1 | 2, k): all different.
    stages = [derive_seed(seed, stage, k) for stage in (1, 2) for k in range(4)]
    sweep = [derive_seed(seed, i) for i in range(32)]
    experts = [derive_seed(seed, SeedPath.EXPERT_VOTES, j) for j in range(4)]
    rounds = [derive_seed(seed, SeedPath.ROUTE, k) for k in range(1, 4)]
    finetune = [derive_seed(seed, SeedPath.FINETUNE, k, j) for k in range(1, 4) for j in range(3)]
    every = [*named.values(), *stages, *sweep, *experts, *rounds, *finetune]
    assert len(set(every)) == len(every) and all(0 <= v < SEED_LIMIT for v in every)
    assert derive_seed(seed, SeedPath.FINETUNE, 1, 2) != derive_seed(seed, SeedPath.FINETUNE, 2, 1)
    # The values are fixed: a change of derivation must be deliberate (it changes every later run's noise and, for
    # the labels of dual RS, must bump rs_core.dual.estimator's label format).
    assert [int(p) for p in SeedPath] == [1001, 1002, 1003, 1004, 1101, 1102, 1103, 1201, 1202, 1203]
    assert named[SeedPath.PREDICT] == derive_seed(seed, 1001)


def test_training_streams_are_seeded_apart_and_reproducibly():
    from rs_core.training.loop import Streams

    a, b, other = Streams.seeded(3), Streams.seeded(3), Streams.seeded(4)
    draws = [torch.randn(8, generator=g) for g in (a.shuffle, a.noise, a.augment)]
    assert len({tuple(d.tolist()) for d in draws}) == 3  # three different streams
    assert torch.equal(draws[1], torch.randn(8, generator=b.noise))  # the same seed: the same noise
    assert not torch.equal(draws[1], torch.randn(8, generator=other.noise))
    assert a.shuffle.initial_seed() == derive_seed(3, SeedPath.TRAIN_SHUFFLE)
    assert a.noise.initial_seed() == derive_seed(3, SeedPath.TRAIN_NOISE)
    assert a.augment.initial_seed() == derive_seed(3, SeedPath.TRAIN_AUGMENT)
