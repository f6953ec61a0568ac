import numpy as np
import pytest
from scipy.stats import spearmanr

from latent_atlas.analysis.disentanglement import (
    discretize_factors,
    factor_correlations,
    histogram_discretize,
    mutual_information_gap,
    sap_score,
)
from latent_atlas.errors import AtlasError

NAMES = ("a", "b", "c")


@pytest.fixture(scope="module")
def grid_factors() -> np.ndarray:
    """Every combination of 5 x 6 x 7 levels, twice: independent, discrete factors."""
    levels = [np.arange(1.0, n + 1) for n in (5, 6, 7)]
    table = np.stack([m.ravel() for m in np.meshgrid(*levels, indexing="ij")], axis=1)
    return np.concatenate([table, table])


def monotone_codes(factors: np.ndarray) -> np.ndarray:
    """Each factor through its own increasing map, axes permuted: a perfectly disentangled code."""
    return np.column_stack([np.cbrt(factors[:, 2]), 3.0 * factors[:, 0] - 1.0, np.log(factors[:, 1])])


def test_mig_of_factor_codes_is_one(grid_factors):
    result = mutual_information_gap(monotone_codes(grid_factors), grid_factors, factor_names=NAMES)
    assert result["mig"] == pytest.approx(1.0, abs=1e-9)
    assert result["best_latent"] == {"a": 1, "b": 2, "c": 0}
    assert result["factor_entropy"]["c"] == pytest.approx(np.log(7))


def test_mig_of_random_codes_is_near_zero(grid_factors):
    factors = np.repeat(grid_factors, 20, axis=0)
    codes = np.random.default_rng(0).normal(size=(len(factors), 3))
    assert mutual_information_gap(codes, factors)["mig"] < 0.02


def test_mig_of_duplicated_and_mixed_codes_lies_between(grid_factors):
    codes = monotone_codes(grid_factors)
    duplicated = np.column_stack([codes, codes[:, 1]])  # factor a on two axes: its gap is 0
    result = mutual_information_gap(duplicated, grid_factors, factor_names=NAMES)
    assert result["gaps"]["a"] == pytest.approx(0.0, abs=1e-12)
    assert result["mig"] == pytest.approx(2 / 3, abs=1e-9)
    a, b = grid_factors[:, 0] / 5, grid_factors[:, 1] / 6
    even = np.column_stack([a + b, a - b, grid_factors[:, 2]])  # a and b rotated 45 degrees into each other
    assert mutual_information_gap(even, grid_factors)["mig"] == pytest.approx(1 / 3, abs=0.02)
    rng = np.random.default_rng(0)
    noisy = [mutual_information_gap(grid_factors + rng.normal(scale=s, size=grid_factors.shape), grid_factors)["mig"]
             for s in (0.2, 0.6)]
    assert 1.0 > noisy[0] > noisy[1] > 0.1


def test_mig_bins_continuous_factors():
    rng = np.random.default_rng(1)
    factors = rng.uniform(size=(4000, 2))
    assert np.unique(discretize_factors(factors, 20)[:, 0]).tolist() == list(range(1, 21))
    assert mutual_information_gap(factors ** 3, factors)["mig"] > 0.5
    assert mutual_information_gap(rng.normal(size=(4000, 2)), factors)["mig"] < 0.05


def test_histogram_discretize_uses_equal_width_bins():
    values = np.array([[0.0], [0.24], [0.26], [0.74], [1.0]])
    np.testing.assert_array_equal(histogram_discretize(values, 4)[:, 0], [1, 1, 2, 3, 4])
    with pytest.raises(AtlasError, match="two latent axes"):
        mutual_information_gap(values, values)


def test_factor_correlations_known_answers_and_spearman(grid_factors):
    table = factor_correlations(monotone_codes(grid_factors), grid_factors, NAMES)
    expected = np.zeros((3, 3))
    expected[[1, 2, 0], [0, 1, 2]] = 1.0
    np.testing.assert_allclose(table["abs_spearman"], expected, atol=1e-12)
    assert table["latent_names"] == ["z0", "z1", "z2"] and table["best_latent"] == {"a": 1, "b": 2, "c": 0}
    rng = np.random.default_rng(2)
    codes, factors = rng.normal(size=(80, 2)), rng.normal(size=(80, 3))
    codes[:, 1] += factors[:, 0]
    reference = np.abs(spearmanr(codes, factors).statistic[:2, 2:])
    np.testing.assert_allclose(factor_correlations(codes, factors, NAMES)["abs_spearman"], reference)


def test_factor_correlations_treat_a_constant_axis_as_uncorrelated(grid_factors):
    codes = np.column_stack([monotone_codes(grid_factors), np.ones(len(grid_factors))])
    table = factor_correlations(codes, grid_factors, NAMES)
    assert table["abs_spearman"][3] == [0.0, 0.0, 0.0]
    with pytest.raises(AtlasError, match="factor names"):
        factor_correlations(codes, grid_factors, ("a",))


def test_sap_known_answers(grid_factors):
    assert sap_score(grid_factors * 2 + 1, grid_factors)["sap"] == pytest.approx(1.0)
    rng = np.random.default_rng(3)
    factors = np.repeat(grid_factors, 10, axis=0)
    assert sap_score(rng.normal(size=(len(factors), 3)), factors)["sap"] < 0.02
    duplicated = sap_score(np.column_stack([grid_factors, grid_factors[:, 0]]), grid_factors, NAMES)
    assert duplicated["gaps"]["a"] == pytest.approx(0.0) and duplicated["sap"] == pytest.approx(2 / 3)
