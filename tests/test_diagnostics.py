import numpy as np

from rs_core.smoothing.diagnostics import noise_robustness_warning


def test_a_robust_model_gets_no_warning():
    assert noise_robustness_warning(2, np.array([1, 2, 950, 47]), 0.5) is None


def test_votes_that_leave_the_clean_class_are_flagged_and_point_to_noise_training_or_a_denoiser():
    text = noise_robustness_warning(0, np.array([30, 700, 270]), 0.25)
    assert "agree with its prediction on the clean input only 3%" in text
    assert "trained with Gaussian noise" in text and "denoiser" in text
    trained = noise_robustness_warning(0, np.array([30, 700, 270]), 0.25, trained_sigma=0.25)
    assert "trained with noise (σ = 0.25)" in trained


def test_near_uniform_votes_over_many_classes_are_flagged():
    counts = np.full(1000, 10)
    counts[5] = 12
    assert "spread almost evenly" in noise_robustness_warning(5, counts, 0.5)


def test_too_few_votes_say_nothing():
    assert noise_robustness_warning(0, np.array([0, 5, 5]), 0.5) is None
