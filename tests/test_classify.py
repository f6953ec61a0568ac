import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score

from latent_atlas.analysis.classify import (
    KnnResult,
    bootstrap_intervals,
    covariance_bayes_accuracy,
    df_classification,
    heavy_tail_labels,
    knn_classifier,
    missing_class,
)
from latent_atlas.config import FactorRange
from latent_atlas.data import make_dataset
from latent_atlas.data.factors import degrees_of_freedom
from latent_atlas.errors import AtlasError

from .conftest import tiny_data_config


def blobs(n: int, separation: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 2, size=n)
    X = rng.normal(size=(n, 3)) + separation * y[:, None]
    return X, y


def test_knn_separates_separable_classes_perfectly():
    rng = np.random.default_rng(0)
    (X, y), (tX, ty) = blobs(200, 20.0, rng), blobs(100, 20.0, rng)
    result = knn_classifier(X, y, tX, ty, n_bootstrap=200)
    assert result.accuracy == 1.0 and result.f1 == 1.0
    assert result.accuracy_ci == (1.0, 1.0)
    assert result.confusion == confusion_matrix(ty, ty).tolist()
    assert set(result.cv_scores) == {1, 3, 5, 9, 15, 25} and all(s == 1.0 for s in result.cv_scores.values())
    assert result.k == 1  # ties go to the smallest k
    assert (result.n_train, result.n_test, result.features) == (200, 100, "codes")


def test_knn_on_random_labels_is_at_chance_and_says_so():
    rng = np.random.default_rng(1)
    X, tX = rng.normal(size=(300, 3)), rng.normal(size=(400, 3))
    y, ty = rng.integers(0, 2, 300), rng.integers(0, 2, 400)
    result = knn_classifier(X, y, tX, ty, n_bootstrap=500, seed=3)
    assert abs(result.accuracy - 0.5) < 0.1
    assert result.accuracy_ci[0] < 0.5 < result.accuracy_ci[1]
    assert result.k == max(result.cv_scores, key=lambda k: (result.cv_scores[k], -k))


def test_knn_metrics_match_sklearn_and_serialise():
    rng = np.random.default_rng(2)
    (X, y), (tX, ty) = blobs(150, 1.5, rng), blobs(120, 1.5, rng)
    result = knn_classifier(X, y, tX, ty, k_grid=(3, 7), folds=3, n_bootstrap=100, features="pixels", scale=False)
    from sklearn.neighbors import KNeighborsClassifier

    predicted = KNeighborsClassifier(result.k).fit(X, y).predict(tX)
    assert result.accuracy == pytest.approx((predicted == ty).mean())
    assert result.f1 == pytest.approx(f1_score(ty, predicted))
    assert result.confusion == confusion_matrix(ty, predicted, labels=[0, 1]).tolist()
    document = result.to_dict()
    assert document["cv_scores"].keys() == {"3", "7"} and document["features"] == "pixels"
    assert isinstance(document["accuracy_ci"], list)
    import json

    json.dumps(document, allow_nan=False)


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(4)

    def width(n):
        truth = rng.integers(0, 2, n).astype(bool)
        guess = np.where(rng.uniform(size=n) < 0.8, truth, ~truth)
        intervals = bootstrap_intervals(truth, guess, 500, rng=np.random.default_rng(0))
        accuracy, f1 = (truth == guess).mean(), f1_score(truth, guess)
        assert intervals["accuracy"][0] <= accuracy <= intervals["accuracy"][1]
        assert intervals["f1"][0] <= f1 <= intervals["f1"][1]
        return intervals["accuracy"][1] - intervals["accuracy"][0]

    assert width(2000) < 0.5 * width(100)


def test_bootstrap_f1_counts_match_sklearn_on_each_resample():
    from latent_atlas.analysis.classify import _f1_from_counts

    rng = np.random.default_rng(5)
    for _ in range(20):
        truth, guess = rng.integers(0, 2, 30).astype(bool), rng.integers(0, 2, 30).astype(bool)
        ours = _f1_from_counts((truth & guess).sum(), (~truth & guess).sum(), (truth & ~guess).sum())
        assert ours == pytest.approx(f1_score(truth, guess, zero_division=0.0))


def test_knn_refuses_bad_labels():
    X = np.zeros((10, 2))
    with pytest.raises(AtlasError, match="binary"):
        knn_classifier(X, np.arange(10) % 3, X, np.arange(10) % 3)
    with pytest.raises(AtlasError, match="too few"):
        knn_classifier(X, np.r_[np.zeros(9), 1], X, np.zeros(10))


def test_covariance_bayes_accuracy_matches_the_data_rule_by_simulation():
    rng = np.random.default_rng(0)
    var_x, var_y = rng.uniform(0.1, 4.9, 4000), rng.uniform(0.1, 4.9, 4000)
    formula = covariance_bayes_accuracy(var_x, var_y, threshold=20.0, noise_max=10.0)
    config = tiny_data_config(kind="student_t")  # default rule: threshold 20, noise U(0, 10), df 2 / 200
    s = var_x + var_y
    bayes_heavy = s**2 - 20.0 > 5.0  # P(heavy | s) > 1/2
    hits = [(degrees_of_freedom(var_x, var_y, config, rng) == 2.0) == bayes_heavy for _ in range(50)]
    assert formula == pytest.approx(np.mean(hits), abs=0.003)
    assert 0.5 < formula < 1.0
    assert covariance_bayes_accuracy(var_x, var_y, threshold=20.0, noise_max=0.0) == 1.0


@pytest.fixture(scope="module")
def t_dataset():
    # Heavy tails exactly where var_x + var_y > 2: 5 of the 9 variance pairs.
    values = FactorRange(values=(0.3, 1.0, 2.5))
    config = tiny_data_config(kind="student_t", var_x=values, var_y=values, df_threshold=4.0, df_noise_max=0.0,
                              test_fraction=0.3)
    return make_dataset(config)


def test_df_classification_runs_the_three_feature_sets(t_dataset):
    labels = heavy_tail_labels(t_dataset.factors, t_dataset.factor_names)
    s = t_dataset.factor("var_x") + t_dataset.factor("var_y")
    np.testing.assert_array_equal(labels, (s > 2.0).astype(int))
    codes = np.column_stack([s, np.random.default_rng(0).normal(size=len(s))])  # a code that keeps the signal
    results = df_classification(codes, t_dataset.factors, t_dataset.factor_names, t_dataset.images,
                                t_dataset.train_idx, t_dataset.test_idx, n_bootstrap=50)
    assert set(results) == {"codes", "factors", "pixels"}
    for name, result in results.items():
        assert isinstance(result, KnnResult) and result.features == name
        assert (result.n_train, result.n_test) == (len(t_dataset.train_idx), len(t_dataset.test_idx))
        assert sum(map(sum, result.confusion)) == len(t_dataset.test_idx)
    assert results["factors"].accuracy == 1.0  # the rule is a deterministic function of the factors here


def test_heavy_tail_labels_follow_the_configured_df():
    factors = np.array([[1.0, 1.0, 0.0, 200.0], [1.0, 1.0, 0.0, 200.0]])
    names = ("var_x", "var_y", "rho", "df")
    np.testing.assert_array_equal(heavy_tail_labels(factors, names, heavy_df=2.0), [0, 0])  # no heavy tails at all
    assert missing_class(np.array([0, 0, 1]), np.array([0, 1]), np.array([2])) is not None
    assert missing_class(np.array([0, 1, 0, 1]), np.array([0, 1]), np.array([2, 3])) is None


def test_df_classification_without_codes_runs_the_baselines(t_dataset):
    results = df_classification(None, t_dataset.factors, t_dataset.factor_names, t_dataset.images,
                                t_dataset.train_idx, t_dataset.test_idx, n_bootstrap=20)
    assert set(results) == {"factors", "pixels"}


def test_df_classification_needs_df(tiny_dataset):
    with pytest.raises(AtlasError, match="student_t"):
        heavy_tail_labels(tiny_dataset.factors, tiny_dataset.factor_names)
