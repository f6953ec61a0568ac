import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score

from latent_atlas.analysis.classify import (
    KnnResult,
    ambiguous_band,
    band_summary,
    bayes_accuracy,
    bootstrap_intervals,
    covariance_bayes_accuracy,
    df_classification,
    heavy_probability,
    heavy_tail_labels,
    knn_classifier,
    missing_class,
    subset_scores,
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
    small = s[t_dataset.test_idx] < 2.0
    results = df_classification(codes, t_dataset.factors, t_dataset.factor_names, t_dataset.images,
                                t_dataset.train_idx, t_dataset.test_idx, n_bootstrap=50,
                                test_subsets={"small": small})
    assert set(results) == {"codes", "factors", "pixels"}
    for name, result in results.items():
        assert isinstance(result, KnnResult) and result.features == name
        assert result.subsets["small"]["n"] == small.sum()
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


# -- the ambiguous band ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rule_gives", ["heavy", "light"])
def test_heavy_probability_matches_the_rule_by_simulation_under_both_readings(rule_gives):
    rng = np.random.default_rng(10)
    var_x, var_y = rng.uniform(0.1, 4.9, 3000), rng.uniform(0.1, 4.9, 3000)
    config = tiny_data_config(kind="student_t", df_rule_gives=rule_gives)  # s^2 - l > 20, l ~ U(0, 10)
    simulated = np.mean([degrees_of_freedom(var_x, var_y, config, rng) == config.df_heavy for _ in range(400)], axis=0)
    p_heavy = heavy_probability(var_x, var_y, 20.0, 10.0, rule_gives)
    assert np.abs(p_heavy - simulated).max() < 0.1  # 400 draws per image: binomial sd at most 0.025
    assert np.abs(p_heavy - simulated).mean() < 0.01
    s = var_x + var_y
    np.testing.assert_array_equal(ambiguous_band(p_heavy), (s**2 > 20) & (s**2 < 30))
    if rule_gives == "heavy":
        assert np.all(p_heavy[s > np.sqrt(30)] == 1.0) and np.all(p_heavy[s < np.sqrt(20)] == 0.0)
    else:
        assert np.all(p_heavy[s > np.sqrt(30)] == 0.0) and np.all(p_heavy[s < np.sqrt(20)] == 1.0)


def test_band_ceiling_is_the_same_under_both_readings_and_below_the_overall_one():
    rng = np.random.default_rng(11)
    var_x, var_y = rng.uniform(0.1, 4.9, 5000), rng.uniform(0.1, 4.9, 5000)
    large, small = (band_summary(var_x, var_y, 20.0, 10.0, side) for side in ("heavy", "light"))
    assert large["bayes_ceiling_band"] == pytest.approx(small["bayes_ceiling_band"])
    assert large["bayes_ceiling"] == pytest.approx(covariance_bayes_accuracy(var_x, var_y))
    assert large["bayes_ceiling"] == pytest.approx(covariance_bayes_accuracy(var_x, var_y, rule_gives="light"))
    assert large["n_band"] == small["n_band"] > 0 and large["band_fraction"] == pytest.approx(large["n_band"] / 5000)
    assert large["expected_heavy_fraction_band"] == pytest.approx(1.0 - small["expected_heavy_fraction_band"])
    assert (large["s_low"], large["s_high"]) == pytest.approx((np.sqrt(20), np.sqrt(30)))
    # On the band P(heavy) = (s^2 - 20) / 10 runs over (0, 1); outside it the covariance decides df exactly.
    assert 0.5 < large["bayes_ceiling_band"] < 0.8 < large["bayes_ceiling"] < 1.0
    s = var_x + var_y
    band = (s**2 > 20) & (s**2 < 30)
    p = (s[band] ** 2 - 20) / 10
    assert large["bayes_ceiling_band"] == pytest.approx(np.maximum(p, 1 - p).mean())
    overall = (np.maximum(p, 1 - p).sum() + (~band).sum()) / 5000
    assert large["bayes_ceiling"] == pytest.approx(overall)
    assert bayes_accuracy(np.array([])) is None
    with pytest.raises(AtlasError, match="rule_gives"):
        heavy_probability(var_x, var_y, rule_gives="left")


def test_subset_scores_match_sklearn_on_the_subset():
    rng = np.random.default_rng(12)
    truth, guess = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    mask = rng.uniform(size=300) < 0.3
    scores = subset_scores(truth, guess, mask, n_bootstrap=200)
    assert scores["n"] == mask.sum() and scores["n_heavy"] == truth[mask].sum()
    assert scores["accuracy"] == pytest.approx((truth[mask] == guess[mask]).mean())
    assert scores["f1"] == pytest.approx(f1_score(truth[mask], guess[mask]))
    assert scores["confusion"] == confusion_matrix(truth[mask], guess[mask], labels=[0, 1]).tolist()
    assert scores["accuracy_ci"][0] <= scores["accuracy"] <= scores["accuracy_ci"][1]
    assert subset_scores(truth, guess, np.zeros(300, dtype=bool))["accuracy"] is None
    with pytest.raises(AtlasError, match="aligned"):
        subset_scores(truth, guess, mask[:10])


def test_knn_scores_the_ambiguous_band_beside_the_whole_test_split():
    rng = np.random.default_rng(13)
    (X, y), (tX, ty) = blobs(200, 1.5, rng), blobs(150, 1.5, rng)
    band = np.abs(tX[:, 0] - 0.75) < 0.75  # the test points between the two blobs: the hard ones
    result = knn_classifier(X, y, tX, ty, k_grid=(5,), folds=3, n_bootstrap=100, scale=False,
                            test_subsets={"ambiguous_band": band})
    from sklearn.neighbors import KNeighborsClassifier

    predicted = KNeighborsClassifier(5).fit(X, y).predict(tX)
    on_band = result.subsets["ambiguous_band"]
    assert on_band == subset_scores(ty, predicted, band, n_bootstrap=100)
    assert on_band["n"] == band.sum() and on_band["accuracy"] < result.accuracy
    document = result.to_dict()
    assert document["subsets"]["ambiguous_band"]["n"] == band.sum()
    import json

    json.dumps(document, allow_nan=False)
