import numpy as np
import pytest

from latent_atlas.analysis.clustering import (
    agreement,
    cluster_labels,
    clustering_comparison,
    clustering_scores,
    factor_labels,
    quantile_bins,
)
from latent_atlas.errors import AtlasError


def blobs(n_per: int = 60, spread: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three round clusters 10 apart in 3-D and their labels."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 5.0]])
    labels = np.repeat(np.arange(3), n_per)
    return centres[labels] + spread * rng.normal(size=(len(labels), 3)), labels


def test_quantile_bins_cut_at_the_quantiles():
    labels = quantile_bins(np.arange(100.0)[::-1], n_bins=4)
    np.testing.assert_array_equal(np.bincount(labels), [25, 25, 25, 25])
    assert labels[0] == 3 and labels[-1] == 0
    grid = np.repeat([0.1, 0.2, 0.3], [10, 10, 80])  # the top value fills three quartiles: two bins remain
    np.testing.assert_array_equal(np.bincount(quantile_bins(grid, 4)), [20, 80])
    with pytest.raises(AtlasError, match="n_bins"):
        quantile_bins(np.arange(5.0), 1)


@pytest.mark.parametrize("method", ["kmeans", "gmm"])
def test_separated_clusters_are_found(method):
    features, labels = blobs()
    predicted = cluster_labels(features, 3, method)
    assert agreement(labels, predicted) == pytest.approx({"ari": 1.0, "nmi": 1.0})


def test_random_labels_score_near_zero_ari():
    features, labels = blobs()
    random = np.random.default_rng(1).integers(0, 3, size=len(labels))
    scores = clustering_scores(features, {"true": labels, "random": random})
    for method in ("kmeans", "gmm"):
        assert scores["true"][method]["ari"] == pytest.approx(1.0)
        assert abs(scores["random"][method]["ari"]) < 0.05
        assert scores["random"][method]["nmi"] < 0.05
        assert scores["random"][method]["n_clusters"] == 3


def test_scaling_decides_what_kmeans_sees():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 100)
    informative = 0.1 * labels + 0.01 * rng.normal(size=200)  # well separated, but tiny units
    features = np.column_stack([informative, 100.0 * rng.normal(size=200)])  # a huge uninformative axis
    assert clustering_scores(features, {"y": labels}, ("kmeans",), scale=True)["y"]["kmeans"]["ari"] > 0.95
    assert clustering_scores(features, {"y": labels}, ("kmeans",), scale=False)["y"]["kmeans"]["ari"] < 0.2


def test_clustering_scores_reject_bad_labels():
    features, labels = blobs(n_per=5)
    with pytest.raises(AtlasError, match="entries"):
        clustering_scores(features, {"short": labels[:-1]})
    with pytest.raises(AtlasError, match="classes"):
        clustering_scores(features, {"one": np.zeros(len(labels))})
    with pytest.raises(AtlasError, match="unknown clustering method"):
        cluster_labels(features, 3, "dbscan")


def test_factor_labels_use_df_values_and_factor_bins(tiny_t_dataset):
    labels = factor_labels(tiny_t_dataset.factors, tiny_t_dataset.factor_names, n_bins=3)
    assert set(labels) == {"df", "var_x_bins", "var_y_bins", "rho_bins"}
    df = tiny_t_dataset.factors[:, 3]
    np.testing.assert_array_equal(labels["df"], (df == df.max()).astype(int))
    np.testing.assert_array_equal(labels["var_x_bins"], np.unique(tiny_t_dataset.factors[:, 0], return_inverse=True)[1])
    with pytest.raises(AtlasError, match="not among"):
        factor_labels(tiny_t_dataset.factors[:, :3], ("var_x", "var_y", "df"))


def test_comparison_on_factor_codes_equals_the_factor_features(tiny_t_dataset):
    factors, names = tiny_t_dataset.factors, tiny_t_dataset.factor_names
    result = clustering_comparison(factors[:, :3], factors, names, tiny_t_dataset.images, n_bins=3, max_points=None)
    assert result["n_points"] == len(factors)
    scores = result["scores"]
    assert set(scores) == {"codes", "factors", "pixels"}
    assert scores["codes"] == scores["factors"]
    assert set(scores["pixels"]) == {"df", "var_x_bins", "var_y_bins", "rho_bins"}
    assert all(0.0 <= s["nmi"] <= 1.0 for by_method in scores["pixels"].values() for s in by_method.values())
    without_codes = clustering_comparison(None, factors, names, tiny_t_dataset.images, n_bins=3, max_points=20)
    assert set(without_codes["scores"]) == {"factors", "pixels"} and without_codes["n_points"] == 20
    again = clustering_comparison(None, factors, names, tiny_t_dataset.images, n_bins=3, max_points=20)
    assert again == without_codes
