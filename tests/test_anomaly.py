import numpy as np
import pytest
import torch
from scipy.special import entr
from scipy.stats import bootstrap, mannwhitneyu, multivariate_normal
from sklearn.metrics import average_precision_score, roc_auc_score

from latent_atlas.analysis.anomaly import (
    LatentDensity,
    _bootstrap_counts,
    _ranking_metrics,
    anomaly_scores,
    detection_metrics,
    detection_table,
    nll_floor,
)
from latent_atlas.analysis.holes import log_aggregate_posterior
from latent_atlas.errors import AtlasError
from latent_atlas.evaluation import elbo_parts, frobenius_errors
from latent_atlas.models.inference import encode, reconstruct

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_vectorised_metrics_equal_sklearn_with_case_weights():
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=200), 1)  # many ties
    is_anomaly = rng.random(200) < 0.3
    weights = np.vstack([np.ones(200), _bootstrap_counts(200, 4, rng)])  # (5, 200)
    auroc, auprc = _ranking_metrics(scores, is_anomaly, weights)
    for row, w in enumerate(weights):
        assert auroc[row] == pytest.approx(roc_auc_score(is_anomaly, scores, sample_weight=w), abs=1e-12)
        assert auprc[row] == pytest.approx(average_precision_score(is_anomaly, scores, sample_weight=w), abs=1e-12)


def test_bootstrap_counts_draw_n_cases_per_resample():
    counts = _bootstrap_counts(7, 500, np.random.default_rng(0))
    assert counts.shape == (500, 7)
    assert (counts.sum(axis=1) == 7).all()
    assert counts.mean() == pytest.approx(1.0, abs=0.05)


def test_separated_scores_give_one_and_identical_scores_give_half():
    separated = detection_metrics(np.arange(50.0), np.arange(100.0, 130.0), n_bootstrap=200)
    assert separated["auroc"] == pytest.approx(1.0) and separated["auprc"] == pytest.approx(1.0)
    assert separated["auroc_ci"] == pytest.approx([1.0, 1.0])
    assert separated["auprc_chance"] == pytest.approx(30 / 80)
    scores = np.random.default_rng(0).normal(size=40)
    same = detection_metrics(scores, scores, n_bootstrap=0)
    assert same["auroc"] == pytest.approx(0.5, abs=1e-12)
    assert "auroc_ci" not in same


def test_same_distribution_gives_auroc_near_half_and_auprc_near_chance():
    rng = np.random.default_rng(1)
    result = detection_metrics(rng.normal(size=3000), rng.normal(size=1000), n_bootstrap=300)
    assert result["auroc"] == pytest.approx(0.5, abs=0.03)
    assert result["auroc_ci"][0] < 0.5 < result["auroc_ci"][1]
    assert result["auprc"] == pytest.approx(0.25, abs=0.03)
    assert result["auprc_ci"][0] < result["auprc"] < result["auprc_ci"][1]


def test_bootstrap_interval_agrees_with_scipy_stratified_percentile_bootstrap():
    rng = np.random.default_rng(2)
    normal, anomalous = rng.normal(size=60), rng.normal(0.8, 1.0, size=40)

    def auroc(a, b, axis=-1):  # the Mann-Whitney U of the anomalies over the normal scores, normalised
        return mannwhitneyu(b, a, axis=axis).statistic / (a.shape[axis] * b.shape[axis])

    assert auroc(normal, anomalous) == pytest.approx(roc_auc_score(np.r_[np.zeros(60), np.ones(40)],
                                                                   np.r_[normal, anomalous]))
    reference = bootstrap((normal, anomalous), auroc, n_resamples=4000, method="percentile",
                          random_state=np.random.default_rng(5)).confidence_interval
    ours = detection_metrics(normal, anomalous, n_bootstrap=4000, seed=7)["auroc_ci"]
    assert ours == pytest.approx([reference.low, reference.high], abs=0.02)


def test_detection_metrics_reject_bad_scores():
    with pytest.raises(AtlasError, match="non-finite"):
        detection_metrics(np.array([0.0, np.nan]), np.array([1.0]))
    with pytest.raises(AtlasError, match="non-empty"):
        detection_metrics(np.zeros(0), np.ones(3))


def test_detection_table_scores_each_kind_on_shared_scores():
    rng = np.random.default_rng(0)
    normal = {"a": rng.normal(size=30), "b": rng.normal(size=30)}
    anomalies = {"far": {"a": rng.normal(10, 1, size=20)},
                 "mixed": {"a": rng.normal(size=20), "b": rng.normal(size=20)}}
    table = detection_table(normal, anomalies, n_bootstrap=50)
    assert set(table) == {"far", "mixed"} and set(table["far"]) == {"a"} and set(table["mixed"]) == {"a", "b"}
    assert table["far"]["a"]["auroc"] == pytest.approx(1.0)
    with pytest.raises(AtlasError, match="no score in common"):
        detection_table(normal, {"other": {"c": np.ones(3)}})


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_blatant_anomalies_get_auroc_near_one_on_a_trained_model(models, tiny_dataset, kind):
    model, images = models[kind], tiny_dataset.images
    rng = np.random.default_rng(0)
    anomalies = {"uniform_noise": rng.uniform(size=images.shape).astype(np.float32),
                 "all_ones": np.ones_like(images[:10])}
    normal_scores = anomaly_scores(model, images)
    expected = {"reconstruction_error", "reconstruction_nll", "reconstruction_nll_excess"}
    expected |= {"negative_elbo", "negative_elbo_excess"} if kind == "vae" else set()
    assert set(normal_scores) == expected
    table = detection_table(normal_scores, {name: anomaly_scores(model, x) for name, x in anomalies.items()},
                            n_bootstrap=100)
    for name in anomalies:
        assert table[name]["reconstruction_error"]["auroc"] > 0.99
        assert table[name]["reconstruction_error"]["auprc"] > 0.95
    rescored = anomaly_scores(model, images)["reconstruction_error"]
    same = detection_metrics(normal_scores["reconstruction_error"], rescored)
    assert same["auroc"] == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_scores_agree_with_the_evaluation_module(models, tiny_dataset, kind):
    model, images = models[kind], tiny_dataset.images
    scores = anomaly_scores(model, images, n_samples=3, seed=4)
    np.testing.assert_allclose(scores["reconstruction_error"], frobenius_errors(images, reconstruct(model, images)),
                               rtol=1e-5)
    if kind == "ae":
        assert scores["reconstruction_nll"].mean() == pytest.approx(elbo_parts(model, images)["reconstruction_nll"],
                                                                    rel=1e-5)
    rebatched = anomaly_scores(model, images, n_samples=3, seed=4, batch_size=5)
    for name in scores:
        np.testing.assert_allclose(rebatched[name], scores[name], rtol=1e-5)
    again = anomaly_scores(model, images, n_samples=3, seed=4)
    assert all(np.array_equal(again[name], scores[name]) for name in scores)


def test_negative_elbo_is_the_monte_carlo_elbo_of_the_model(models, tiny_dataset):
    model, images = models["vae"], tiny_dataset.images
    ours = anomaly_scores(model, images, n_samples=50, seed=0)["negative_elbo"].mean()
    per_seed = np.array([-elbo_parts(model, images, seed=s)["elbo"] for s in range(25)])
    standard_error = per_seed.std(ddof=1) / np.sqrt(len(per_seed))
    assert abs(ours - per_seed.mean()) < 4 * standard_error + 1e-3
    single = anomaly_scores(model, images, n_samples=1, seed=0)["negative_elbo"]
    assert not np.allclose(single, anomaly_scores(model, images, n_samples=1, seed=1)["negative_elbo"])


def test_nll_floor_is_the_binary_entropy_for_bernoulli_and_zero_for_gaussian(tiny_dataset):
    images = tiny_dataset.images[:5].astype(np.float64)
    x = torch.from_numpy(images).unsqueeze(1)
    entropy = (entr(images) + entr(1.0 - images)).sum(axis=(1, 2))
    np.testing.assert_allclose(nll_floor(x, "bernoulli").numpy(), entropy, rtol=1e-6, atol=1e-3)
    assert nll_floor(x, "gaussian").max() < 1e-10


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_excess_scores_are_the_kl_to_the_reconstruction(models, tiny_dataset, kind):
    model, images = models[kind], tiny_dataset.images
    scores = anomaly_scores(model, images)
    floor = (entr(images.astype(np.float64)) + entr(1.0 - images.astype(np.float64))).sum(axis=(1, 2))
    np.testing.assert_allclose(scores["reconstruction_nll_excess"], scores["reconstruction_nll"] - floor, atol=0.05)
    assert (scores["reconstruction_nll_excess"] > -1e-3 * scores["reconstruction_nll"]).all()
    if kind == "vae":
        np.testing.assert_allclose(scores["negative_elbo"] - scores["negative_elbo_excess"], floor, atol=0.05)


def test_one_component_mixture_is_the_fitted_gaussian():
    rng = np.random.default_rng(0)
    codes = rng.multivariate_normal([1.0, -2.0, 0.5], [[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]], size=500)
    density = LatentDensity("gmm", n_components=1).fit(codes)
    points = rng.normal(size=(20, 3))
    covariance = np.cov(codes.T, bias=True) + density.mixture_.reg_covar * np.eye(3)  # the mixture's regulariser
    reference = multivariate_normal(codes.mean(axis=0), covariance).logpdf(points)
    np.testing.assert_allclose(density.score_samples(points), reference, rtol=1e-6)


def test_aggregate_density_is_the_aggregate_posterior_of_up_to_max_codes():
    rng = np.random.default_rng(1)
    means, logvar, points = rng.normal(size=(50, 2)), rng.normal(-2, 0.3, size=(50, 2)), rng.normal(size=(9, 2))
    full = LatentDensity("aggregate").fit(means, logvar)  # every code by default
    np.testing.assert_allclose(full.score_samples(points), log_aggregate_posterior(points, means, logvar))
    assert len(LatentDensity("aggregate", max_codes=20).fit(means, logvar).means_) == 20
    with pytest.raises(AtlasError, match="log-variances"):
        LatentDensity("aggregate").fit(means)
    with pytest.raises(AtlasError, match="unknown latent density"):
        LatentDensity("kde")
    with pytest.raises(AtlasError, match="dimensions"):
        full.score_samples(np.zeros((2, 3)))


def test_latent_density_score_is_minus_log_density_at_the_posterior_mean(models, tiny_dataset):
    model, images = models["vae"], tiny_dataset.images
    means, logvar = encode(model, images)
    density = LatentDensity("aggregate").fit(means, logvar)
    scores = anomaly_scores(model, images[:5], density=density)
    np.testing.assert_allclose(scores["latent_density"], -density.score_samples(means[:5]), rtol=1e-6)
    far = anomaly_scores(model, images[:5], density=LatentDensity("gmm", n_components=2).fit(means + 100.0))
    assert (far["latent_density"] > scores["latent_density"]).all()


def test_anomaly_scores_reject_images_of_the_wrong_size(models):
    with pytest.raises(AtlasError, match="shape"):
        anomaly_scores(models["ae"], np.zeros((2, 5, 5), dtype=np.float32))
