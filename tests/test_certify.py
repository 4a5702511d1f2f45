import json

import numpy as np
import pytest
import torch
from oracles import RecordingModel, devices, make_oracle
from scipy import stats

from rs_core import ABSTAIN, Certificate, certify, certify_many, predict, predict_result
from rs_core.smoothing.seeding import make_generator
from rs_core.smoothing.stats import clopper_pearson_lower


def exact_certify_law(p_a, sigma, n0, n, alpha, true_radius):
    """Exact law of CERTIFY on a two-class linear oracle whose top class (1) has probability p_a.

    Returns (P(false certificate), E[ratio], sd[ratio]) where a false certificate
    is a returned class other than 1, or class 1 with radius above the true radius
    (⟺ p_lower > p_a), and ratio = certified radius / true radius (0 unless class 1).
    """
    sel_1 = stats.binom.sf(n0 // 2, n0, p_a)  # argmax picks class 1 only on a strict majority
    k = np.arange(n + 1)
    p_low = clopper_pearson_lower(k, n, alpha)
    pmf_a, pmf_b = stats.binom.pmf(k, n, p_a), stats.binom.pmf(k, n, 1 - p_a)
    certified = p_low >= 0.5
    false = sel_1 * pmf_a[p_low > p_a].sum() + (1 - sel_1) * pmf_b[certified].sum()
    ratio = np.where(certified, sigma * stats.norm.ppf(np.clip(p_low, 0.5, None)) / true_radius, 0.0)
    mean = sel_1 * (pmf_a * ratio).sum()
    second = sel_1 * (pmf_a * ratio**2).sum()
    return false, mean, np.sqrt(second - mean**2)


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("p_a, sigma, n0, n, alpha", [(0.9, 0.5, 10, 200, 0.05), (0.6, 0.25, 4, 300, 0.1)])
def test_certify_on_linear_oracle_matches_exact_law(device, p_a, sigma, n0, n, alpha):
    model, x = make_oracle(p_a, sigma)
    true_radius = model.true_radius(x)
    assert true_radius == pytest.approx(sigma * stats.norm.ppf(p_a), rel=1e-9)  # Theorem 1 is tight here
    repeats = 4000
    certs = certify_many(model.to(device), x.expand(repeats, -1, -1, -1), sigma, n0, n, alpha,
                         batch_size=50_000, seed=0)
    false = sum(c.prediction not in (ABSTAIN, 1) or (c.prediction == 1 and c.radius > true_radius) for c in certs)
    q, mean, sd = exact_certify_law(p_a, sigma, n0, n, alpha, true_radius)
    assert q <= alpha
    # The observed count must be consistent with the exact probability (two-sided exact test) …
    assert stats.binomtest(false, repeats, q).pvalue > 1e-4
    # … and the comparison has power: the law under a 10 % larger σ is rejected.
    q_wrong, mean_wrong, _ = exact_certify_law(stats.norm.cdf(stats.norm.ppf(p_a) / 1.1), sigma, n0, n, alpha,
                                               true_radius)
    ratios = np.array([c.radius / true_radius if c.prediction == 1 else 0.0 for c in certs])
    se = sd / np.sqrt(repeats)
    assert abs(ratios.mean() - mean) < 5 * se
    assert abs(ratios.mean() - mean_wrong) > 5 * se


def exact_predict_law(p_a: float, n: int, alpha: float) -> tuple[float, float]:
    """Exact law of PREDICT on a two-class linear oracle whose top class (1) has probability p_a, n odd (no ties).

    With K ~ Binomial(n, p_a) votes for class 1, PREDICT returns the class with more votes iff the two-sided
    binomial test of max(K, n − K) of n at ½ has p-value ≤ α. Returns (P(it returns the wrong class 0),
    P(it abstains)).
    """
    k = np.arange(n + 1)
    pvals = np.array([stats.binomtest(int(max(i, n - i)), n, 0.5).pvalue for i in k])
    pmf = stats.binom.pmf(k, n, p_a)
    return float(pmf[(k < n - k) & (pvals <= alpha)].sum()), float(pmf[pvals > alpha].sum())


def rejection_probability(repeats: int, q: float, q_true: float, level: float = 1e-4) -> float:
    """P(the two-sided exact binomial test against q rejects at ``level``) for a count ~ Binomial(repeats, q_true)."""
    counts = np.arange(repeats + 1)
    reject = np.array([stats.binomtest(int(c), repeats, q).pvalue <= level for c in counts])
    return float(stats.binom.pmf(counts, repeats, q_true)[reject].sum())


def test_predict_on_linear_oracle_follows_its_exact_law_at_alpha_and_not_at_2alpha():
    # n = 39 puts the critical counts where α and 2α part: at α = 0.1 PREDICT answers only when the top class has
    # ≥ 26 of the 39 votes (two-sided p-value 0.053; 25 gives 0.108), at 2α from 24 on (p-value 0.1996). At
    # p_A = 0.51 the law at α is P(wrong) = 0.0198, P(abstain) = 0.945; at 2α: 0.0796, 0.797. With 500 repeats,
    # each count's exact test at 1e-4 accepts the law at α with probability ≥ 1 − 1e-4 and rejects the 2α law with
    # probability 0.9963 (wrong answers) and 1 − 2e-10 (abstentions): computed and asserted below.
    p_a, sigma, n, alpha, repeats = 0.51, 0.5, 39, 0.1, 500
    model, x = make_oracle(p_a, sigma)
    outcomes = [predict(model, x, sigma, n, alpha, batch_size=100, seed=s) for s in range(repeats)]
    assert set(outcomes) <= {0, 1, ABSTAIN}
    wrong, abstained = outcomes.count(0), outcomes.count(ABSTAIN)
    exact_wrong, exact_abstain = exact_predict_law(p_a, n, alpha)
    wrong_2a, abstain_2a = exact_predict_law(p_a, n, 2 * alpha)
    assert exact_wrong <= alpha  # Hung & Fithian's guarantee, here exactly
    assert rejection_probability(repeats, exact_wrong, wrong_2a) >= 0.99
    assert rejection_probability(repeats, exact_abstain, abstain_2a) >= 0.99
    assert stats.binomtest(wrong, repeats, exact_wrong).pvalue > 1e-4, (wrong, exact_wrong, wrong_2a)
    assert stats.binomtest(abstained, repeats, exact_abstain).pvalue > 1e-4, (abstained, exact_abstain, abstain_2a)


def test_certificate_contract_and_json_round_trip():
    model, x = make_oracle(0.95, 0.5)
    cert = certify(model, x, sigma=0.5, n0=100, n=5000, alpha=0.001, batch_size=1000, seed=0)
    assert isinstance(cert, Certificate)
    assert cert.prediction == 1 and isinstance(cert.prediction, int)
    assert cert.radius > 0 and cert.p_lower > 0.5
    assert cert.radius == pytest.approx(0.5 * stats.norm.ppf(cert.p_lower))
    assert cert.p_lower == pytest.approx(clopper_pearson_lower(int(cert.counts[1]), 5000, 0.001))
    assert cert.counts.dtype == np.int64 and cert.counts.sum() == 5000 and cert.counts_selection.sum() == 100
    assert (cert.sigma, cert.alpha, cert.n0, cert.n, cert.seed, cert.device) == (0.5, 0.001, 100, 5000, 0, "cpu")
    assert cert.elapsed_s > 0 and cert.bound == "clopper-pearson"
    data = json.loads(cert.to_json())
    back = Certificate.from_dict(data)
    assert back.prediction == cert.prediction and back.radius == cert.radius
    np.testing.assert_array_equal(back.counts, cert.counts)
    with pytest.raises(ValueError, match="^certificate:"):
        Certificate.from_dict({**data, "evil": 1})


def test_certify_is_reproducible_and_certify_many_agrees_for_one_input():
    model, x = make_oracle(0.8, 0.25)
    a = certify(model, x, 0.25, 50, 2000, 0.01, 300, seed=4)
    b = certify(model, x, 0.25, 50, 2000, 0.01, 300, seed=4)
    c = certify_many(model, x[None], 0.25, 50, 2000, 0.01, 300, seed=4)[0]
    assert a.radius == b.radius == c.radius
    np.testing.assert_array_equal(a.counts, c.counts)


def test_selection_and_estimation_samples_are_disjoint():
    m = RecordingModel().eval()
    certify(m, torch.zeros(1, 2, 2), 1.0, n0=30, n=70, alpha=0.01, batch_size=1000, seed=0)
    sel, est = m.seen[1], m.seen[2]
    assert sel.shape[0] == 30 and est.shape[0] == 70
    assert not np.intersect1d(sel.flatten().numpy(), est.flatten().numpy()).size


def test_abstains_with_zero_radius_on_a_coin_flip():
    model, x = make_oracle(0.5, 0.5)
    cert = certify(model, x, 0.5, 100, 2000, 0.001, 1000, seed=0)
    assert cert.prediction == ABSTAIN and cert.radius == 0.0 and cert.p_lower < 0.5
    assert predict(model, x, 0.5, 2000, 0.001, 1000, seed=0) == ABSTAIN


def test_radius_stays_finite_and_accurate_when_all_samples_agree():
    model, x = make_oracle(1 - 1e-12, 0.5)
    cert = certify(model, x, 0.5, 100, 100_000, 0.001, 50_000, seed=0)
    assert cert.counts[1] == 100_000
    # All agree: p_lower = α^{1/n}; radius = σ Φ⁻¹(α^{1/n}) = 0.5 × 3.8115.
    assert cert.radius == pytest.approx(0.5 * 3.8114565633899518, rel=1e-9)


def test_predict_result_reports_votes_and_p_value():
    model, x = make_oracle(0.9, 0.5)
    res = predict_result(model, x, 0.5, 500, 0.001, 500, seed=1)
    assert res.prediction == 1 and res.counts.sum() == 500
    assert res.p_value == pytest.approx(stats.binomtest(int(res.counts[1]), 500, 0.5).pvalue)


@pytest.mark.parametrize("kwargs, name", [
    (dict(sigma=0), "sigma"), (dict(n0=0), "n0"), (dict(n=0), "n"), (dict(alpha=0.0), "alpha"),
    (dict(alpha=1.0), "alpha"), (dict(alpha=-0.1), "alpha"), (dict(batch_size=0), "batch_size"),
    (dict(x=torch.rand(2, 1, 4, 4)), "x"), (dict(x=torch.full((1, 4, 4), float("inf"))), "x"),
])
def test_certify_invalid_parameters(kwargs, name):
    model, x = make_oracle(0.9, 0.5)
    args = dict(model=model, x=x, sigma=0.5, n0=10, n=100, alpha=0.01, batch_size=100)
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"^{name}:"):
        certify(**args)


def test_options_are_keywords_passed_through_and_an_unknown_one_is_a_type_error():
    model, x = make_oracle(0.9, 0.5)
    a = certify(model, x, 0.5, 10, 100, 0.01, 100, generator=make_generator(3), autocast=None)
    b = certify(model, x, 0.5, 10, 100, 0.01, 100, seed=3)
    assert a.autocast is None
    np.testing.assert_array_equal(a.counts, b.counts)
    for fn in (certify, certify_many, predict, predict_result):
        with pytest.raises(TypeError, match="'sed'"):
            fn("not a model", x, 0.5, sed=0)  # refused before the model is even looked at
    with pytest.raises(TypeError):
        certify(model, x, 0.5, 10, 100, 0.01, 100, 0)  # the options are keyword-only
