import json

import numpy as np
import pytest
import torch
from scipy.integrate import quad
from scipy.stats import bootstrap, chi, f, kstest, norm
from sklearn.metrics import roc_auc_score

from latent_atlas.analysis.generation import (
    active_units,
    aggregate_kl,
    aggregate_posterior_draws,
    classifier_two_sample_test,
    collapsed_units,
    delong_interval,
    kl_per_unit,
    norm_profile,
)
from latent_atlas.errors import AtlasError


def test_active_units_counts_units_whose_mean_varies_more_than_the_threshold():
    rng = np.random.default_rng(0)
    scales = np.array([1.0, np.sqrt(0.005), np.sqrt(0.02), 0.0])  # variances 1, 0.005, 0.02, 0
    mean = rng.standard_normal((20_000, 4)) * scales
    result = active_units(mean)
    assert result.count == 2
    np.testing.assert_array_equal(result.mask, [True, False, True, False])
    np.testing.assert_allclose(result.variances, mean.var(axis=0))
    np.testing.assert_allclose(result.variances, scales**2, rtol=0.05)
    assert active_units(mean, threshold=0.001).count == 3
    assert json.loads(json.dumps(result.to_dict()))["mask"] == [True, False, True, False]


def test_kl_per_unit_matches_torch_and_finds_collapsed_units():
    rng = np.random.default_rng(1)
    mean = np.column_stack([rng.normal(0, 1.5, 300), np.zeros(300), rng.normal(0.3, 0.3, 300)])
    logvar = np.column_stack([rng.normal(-3, 0.5, 300), np.zeros(300), rng.normal(-0.5, 0.2, 300)])
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(torch.tensor(mean), torch.tensor(np.exp(0.5 * logvar))),
        torch.distributions.Normal(0.0, 1.0),
    ).mean(dim=0)
    kl = kl_per_unit(mean, logvar)
    np.testing.assert_allclose(kl, reference.numpy(), rtol=1e-10)
    assert kl[1] == 0.0
    np.testing.assert_array_equal(collapsed_units(mean, logvar), [False, True, False])
    assert active_units(mean).count == 2


def test_aggregate_posterior_draws_pick_components_and_add_their_noise():
    mean = np.array([[10.0, 0.0], [-10.0, 0.0]])
    logvar = np.log(np.array([[0.25, 4.0], [0.25, 4.0]]))
    draws = aggregate_posterior_draws(mean, logvar, 20_000, np.random.default_rng(0))
    right = draws[:, 0] > 0
    assert abs(right.mean() - 0.5) < 0.02
    np.testing.assert_allclose(draws[right].std(axis=0), [0.5, 2.0], rtol=0.05)
    codes = aggregate_posterior_draws(mean, None, 50, np.random.default_rng(0))
    assert {tuple(row) for row in codes} <= {(10.0, 0.0), (-10.0, 0.0)}


def test_aggregate_kl_of_a_mixture_equal_to_the_prior_is_near_zero():
    rng = np.random.default_rng(0)
    # mu_i ~ N(0, (1 - s^2) I) with sigma = s: the mixture's expectation is N(0, I).
    s = 0.5
    mean = rng.normal(size=(1500, 2)) * np.sqrt(1 - s**2)
    result = aggregate_kl(mean, np.full_like(mean, 2 * np.log(s)), 2000, np.random.default_rng(1))
    assert abs(result.kl_q_p) < 4 * result.kl_q_p_se + 1e-3
    assert abs(result.kl_p_q) < 4 * result.kl_p_q_se + 1e-3
    assert 0 < result.kl_q_p_se < 0.01 and 0 < result.kl_p_q_se < 0.01
    exact = aggregate_kl(np.zeros((10, 3)), np.zeros((10, 3)), 100, np.random.default_rng(0))
    assert exact.kl_q_p == pytest.approx(0.0, abs=1e-12) and exact.kl_p_q == pytest.approx(0.0, abs=1e-12)


def test_aggregate_kl_of_a_shifted_gaussian_is_half_the_squared_shift_both_ways():
    shift = np.array([1.0, -0.5, 0.0, 2.0])
    mean = np.tile(shift, (50, 1))  # q = N(m, I)
    result = aggregate_kl(mean, np.zeros_like(mean), 3000, np.random.default_rng(2))
    expected = 0.5 * shift @ shift  # 2.625 nats
    assert abs(result.kl_q_p - expected) < 4 * result.kl_q_p_se
    assert abs(result.kl_p_q - expected) < 4 * result.kl_p_q_se
    # The per-draw log ratio m.z -/+ |m|^2 / 2 has standard deviation |m|.
    np.testing.assert_allclose([result.kl_q_p_se, result.kl_p_q_se], np.linalg.norm(shift) / np.sqrt(3000), rtol=0.1)


def test_aggregate_kl_matches_quadrature_in_one_dimension():
    mean = np.array([[-1.5], [0.2], [2.0]])
    sigma = np.array([[0.3], [0.8], [0.5]])

    def q(z):
        return norm.pdf(z, mean[:, 0], sigma[:, 0]).mean()

    kl_q_p = quad(lambda z: q(z) * (np.log(q(z)) - norm.logpdf(z)), -12, 12, limit=200)[0]
    kl_p_q = quad(lambda z: norm.pdf(z) * (norm.logpdf(z) - np.log(q(z))), -12, 12, limit=200)[0]
    result = aggregate_kl(mean, 2 * np.log(sigma), 5000, np.random.default_rng(3))
    assert abs(result.kl_q_p - kl_q_p) < 4 * result.kl_q_p_se
    assert abs(result.kl_p_q - kl_p_q) < 4 * result.kl_p_q_se
    assert kl_q_p > 0.2 and kl_p_q > 0.2  # a clearly non-trivial case


def test_aggregate_kl_is_reproducible_and_rejects_bad_input():
    rng = np.random.default_rng(0)
    mean, logvar = rng.normal(size=(40, 3)), rng.normal(-1, 0.1, size=(40, 3))
    first = aggregate_kl(mean, logvar, 200, np.random.default_rng(5))
    assert first == aggregate_kl(mean, logvar, 200, np.random.default_rng(5))
    assert first != aggregate_kl(mean, logvar, 200, np.random.default_rng(6))
    with pytest.raises(AtlasError, match="logvar is required"):
        aggregate_kl(mean, None, 10)
    with pytest.raises(AtlasError, match="does not match"):
        aggregate_kl(mean, logvar[:, :2], 10)
    with pytest.raises(AtlasError, match="n_samples"):
        aggregate_kl(mean, logvar, 1)


def test_delong_interval_matches_roc_auc_and_a_bootstrap():
    rng = np.random.default_rng(0)
    positive, negative = rng.normal(0.8, 1, 200), rng.normal(0, 1, 250)
    positive[:20] = negative[:20]  # ties count half
    auc, low, high = delong_interval(positive, negative)
    labels = np.r_[np.ones(200), np.zeros(250)]
    assert auc == pytest.approx(roc_auc_score(labels, np.r_[positive, negative]), abs=1e-12)

    def statistic(p, n, axis=-1):
        return ((p[..., :, None] > n[..., None, :]) + 0.5 * (p[..., :, None] == n[..., None, :])).mean(axis=(-2, -1))

    reference = bootstrap((positive, negative), statistic, n_resamples=400, vectorized=True, method="percentile",
                          rng=np.random.default_rng(1))
    assert (high - low) / 2 / norm.ppf(0.975) == pytest.approx(reference.standard_error, rel=0.15)
    assert delong_interval(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == (1.0, 1.0, 1.0)


def test_two_sample_test_of_one_distribution_is_near_one_half():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1500, 5)), rng.standard_normal((1000, 5))
    result = classifier_two_sample_test(a, b, np.random.default_rng(1))
    assert abs(result.auc - 0.5) < 0.05
    assert result.low < result.auc < result.high and result.high - result.low < 0.12
    assert result.p_value > 0.01
    assert result.n_train + result.n_test == 2500
    assert result == classifier_two_sample_test(a, b, np.random.default_rng(1))


def test_two_sample_test_tells_a_narrow_ball_from_the_prior_shell():
    rng = np.random.default_rng(0)
    prior, narrow = rng.standard_normal((1000, 16)), 0.5 * rng.standard_normal((1000, 16))
    result = classifier_two_sample_test(prior, narrow, np.random.default_rng(1))
    assert result.auc > 0.95 and result.p_value < 1e-10
    # A 20 % narrower ball differs only in the norm. The best any classifier can do is the norm's own AUC,
    # P(|x|^2 > |y|^2) = P(F(16, 16) > 0.64); the norm feature brings the boosted trees close to it.
    slightly = 0.8 * rng.standard_normal((1000, 16))
    bayes = f.sf(0.64, 16, 16)  # 0.81
    with_norm = classifier_two_sample_test(prior, slightly, np.random.default_rng(1))
    without = classifier_two_sample_test(prior, slightly, np.random.default_rng(1), add_norm=False)
    assert bayes - 0.07 < with_norm.auc < bayes + 0.03
    assert with_norm.auc > without.auc
    assert without.features == "coordinates"


def test_two_sample_test_rejects_mismatched_samples():
    with pytest.raises(AtlasError, match="different dimensions"):
        classifier_two_sample_test(np.zeros((10, 2)), np.zeros((10, 3)), np.random.default_rng(0))
    with pytest.raises(AtlasError, match="finite"):
        classifier_two_sample_test(np.full((10, 2), np.nan), np.zeros((10, 2)), np.random.default_rng(0))


def test_norm_profile_puts_prior_norms_on_the_chi_distribution():
    dim = 16
    rng = np.random.default_rng(0)
    prior = rng.standard_normal((20_000, dim))
    assert kstest(np.linalg.norm(prior, axis=1), chi(df=dim).cdf).pvalue > 0.01
    codes = 0.3 * rng.standard_normal((500, dim))  # inside the shell
    profile = json.loads(json.dumps(norm_profile(prior, prior[:5000], codes, dim, bins=40)))
    edges, widths = np.array(profile["edges"]), np.diff(profile["edges"])
    assert len(edges) == 41 and edges[0] == 0.0
    for name in ("prior", "aggregate", "codes"):
        assert np.sum(np.array(profile[name]) * widths) == pytest.approx(1.0)
    assert np.sum(np.array(profile["chi_bin_density"]) * widths) == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(profile["prior"], profile["chi_bin_density"], atol=0.03)
    assert profile["median_prior"] == pytest.approx(profile["median_chi"], rel=0.01)
    assert profile["median_chi"] == pytest.approx(np.sqrt(dim - 0.5), rel=0.02)
    assert profile["median_codes"] < 0.4 * profile["median_chi"]


def test_norm_profile_with_explicit_edges_and_bad_input():
    ring = np.column_stack([np.cos(np.linspace(0, 6, 50)), np.sin(np.linspace(0, 6, 50))]) * 1.25
    profile = norm_profile(ring, ring, ring, 2, bins=np.array([0.0, 1.0, 1.5, 4.0]))
    assert profile["codes"] == [0.0, 2.0, 0.0]  # every norm is 1.25, in the bin of width 0.5
    assert profile["chi_density"][0] == pytest.approx(chi.pdf(0.5, df=2))
    with pytest.raises(AtlasError, match="expected dim = 3"):
        norm_profile(ring, ring, ring, 3)
    with pytest.raises(AtlasError, match="bins"):
        norm_profile(ring, ring, ring, 2, bins=np.array([1.0, 0.5]))
