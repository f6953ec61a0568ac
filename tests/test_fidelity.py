import json

import numpy as np
import pytest
from scipy.stats import energy_distance as scipy_energy_distance

from latent_atlas.analysis.fidelity import FactorFidelity, FactorSpace, energy_distance, factor_fidelity
from latent_atlas.errors import AtlasError

FAST = dict(max_points=300, n_null=20, n_null_auc=3, max_iter=30)


def grid_factors() -> np.ndarray:
    """A 12 x 12 x 9 grid like the seed's (variances 0.1 ... 4.5, rho -0.8 ... 0.8): 1,296 rows."""
    variances, rhos = np.linspace(0.1, 4.5, 12), np.linspace(-0.8, 0.8, 9)
    return np.stack(np.meshgrid(variances, variances, rhos, indexing="ij"), axis=-1).reshape(-1, 3)


def random_factors(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.column_stack([rng.uniform(0.1, 4.5, n), rng.uniform(0.1, 4.5, n), rng.uniform(-0.8, 0.8, n)])


def test_energy_distance_matches_scipy_in_one_dimension_and_a_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=70), rng.normal(0.5, 2.0, size=90)
    assert energy_distance(a[:, None], b[:, None]) == pytest.approx(scipy_energy_distance(a, b), rel=1e-12)
    # Two point masses at distance d: sqrt(2 d).
    assert energy_distance(np.zeros((3, 2)), np.tile([3.0, 4.0], (5, 1))) == pytest.approx(np.sqrt(10.0))
    points = rng.normal(size=(40, 3))
    assert energy_distance(points, points) == 0.0
    assert energy_distance(points + 5, points[::-1] + 5) == 0.0
    with pytest.raises(AtlasError, match="energy distance"):
        energy_distance(points, points[:, :2])


def test_factor_space_standardises_log_variances_and_fisher_z():
    data = grid_factors()
    space = FactorSpace().fit(data)
    unscaled = np.column_stack([np.log(data[:, 0]), np.log(data[:, 1]), np.arctanh(data[:, 2])])
    expected = (unscaled - unscaled.mean(axis=0)) / unscaled.std(axis=0)
    np.testing.assert_allclose(space.transform(data), expected, atol=1e-12)
    np.testing.assert_allclose(space.inverse_transform(space.transform(data)), data, atol=1e-12)
    assert space.names_ == ("var_x", "var_y", "rho")
    with pytest.raises(AtlasError, match="rho must lie in"):
        space.transform([[1.0, 1.0, 1.0]])
    with pytest.raises(AtlasError, match="var_y must be positive"):
        space.transform([[1.0, -0.1, 0.0]])
    with pytest.raises(AtlasError, match="non-finite"):
        space.transform([[np.nan, 1.0, 0.0]])
    with pytest.raises(AtlasError, match=r"\(n, 3\)"):
        space.transform(np.ones((4, 4)))


def test_factor_space_clips_df_to_the_data_range_and_leaves_it_on_its_two_levels():
    rng = np.random.default_rng(0)
    data = np.column_stack([random_factors(200, rng), np.where(rng.random(200) < 0.3, 2.0, 200.0)])
    space = FactorSpace().fit(data)
    assert space.names_[3] == "df" and space.levels_[3] is None
    light, lighter = space.transform([[1.0, 1.0, 0.0, 200.0], [1.0, 1.0, 0.0, 1e4]])
    np.testing.assert_array_equal(light, lighter)
    np.testing.assert_allclose(space.data_points(data, rng)[:, 3], space.transform(data)[:, 3])


def test_dequantisation_spreads_each_grid_value_over_its_own_cell():
    data = grid_factors()
    space = FactorSpace().fit(data)
    assert all(levels is not None for levels in space.levels_)
    points = space.data_points(data, np.random.default_rng(0))  # (N, 3)
    exact = space.transform(data)
    for j, levels in enumerate(space.levels_):
        scaled_levels = (levels - space.center_[j]) / space.scale_[j]
        nearest = np.abs(points[:, j, None] - scaled_levels[None]).argmin(axis=1)
        np.testing.assert_array_equal(scaled_levels[nearest], exact[:, j])  # still in its own cell
    assert np.abs(points - exact).mean() > 0.05
    assert FactorSpace(dequantize=False).fit(data).levels_ == [None, None, None]
    assert FactorSpace().fit(random_factors(500, np.random.default_rng(1))).levels_ == [None, None, None]


def test_a_sample_of_the_data_distribution_scores_within_the_null():
    rng = np.random.default_rng(0)
    data, sample = random_factors(1200, rng), random_factors(500, rng)
    result = factor_fidelity(sample, data, np.random.default_rng(1), **FAST)
    assert result.n_sample == 300 and result.n_reference == 300
    assert result.energy < result.energy_null.mean + 3 * result.energy_null.std
    assert abs(result.auc - 0.5) < 0.08 and result.auc_p_value > 0.01
    assert len(result.energy_null.values) == 20 and len(result.auc_null.values) == 3
    assert abs(result.auc_null.mean - 0.5) < 0.06
    assert json.loads(json.dumps(result.to_dict()))["factor_names"] == ["var_x", "var_y", "rho"]


def test_grid_data_is_compared_with_its_dequantised_distribution():
    data = grid_factors()
    fidelity = FactorFidelity(**FAST).fit(data, 300, np.random.default_rng(0))
    space = fidelity.space_
    continuous = space.inverse_transform(space.data_points(data, np.random.default_rng(5)))  # a perfect sampler
    result = fidelity.score(continuous, np.random.default_rng(1))
    assert result.energy <= result.energy_null.max
    assert result.auc < result.auc_null.max + 0.06
    assert result.space["dequantized"] == ["var_x", "var_y", "rho"]
    # Without dequantisation the classifier tells the same continuous sample from the grid by its gaps alone.
    raw = factor_fidelity(continuous, data, np.random.default_rng(1), dequantize=False, **FAST)
    assert raw.auc > 0.8 and raw.auc > raw.auc_null.max + 0.2


def test_shifted_or_narrowed_samples_score_clearly_worse_than_the_null():
    rng = np.random.default_rng(0)
    data = random_factors(1200, rng)
    fidelity = FactorFidelity(**FAST).fit(data, 400, np.random.default_rng(1))
    shifted = random_factors(400, rng) * [2.0, 1.0, 1.0]
    narrowed = random_factors(400, rng) * [1.0, 1.0, 0.5]
    for sample in (shifted, narrowed):
        result = fidelity.score(sample, np.random.default_rng(2))
        assert result.energy > 1.5 * result.energy_null.max
        assert result.energy_p_value == pytest.approx(1 / 21)
        assert result.auc > result.auc_null.max + 0.05 and result.auc_p_value < 1e-4


def test_fidelity_is_reproducible_and_checks_its_input():
    rng = np.random.default_rng(0)
    data, sample = random_factors(300, rng), random_factors(100, rng)
    first = factor_fidelity(sample, data, np.random.default_rng(3), **FAST)
    assert first == factor_fidelity(sample, data, np.random.default_rng(3), **FAST)
    assert first != factor_fidelity(sample, data, np.random.default_rng(4), **FAST)
    fidelity = FactorFidelity(**FAST).fit(data, 100, np.random.default_rng(0))
    with pytest.raises(AtlasError, match="samples of 100 rows"):
        fidelity.score(sample[:50], np.random.default_rng(0))
    with pytest.raises(AtlasError, match="factor_names"):
        factor_fidelity(sample[:, :2], data[:, :2], np.random.default_rng(0))
    with pytest.raises(AtlasError, match="unknown factors"):
        factor_fidelity(sample, data, np.random.default_rng(0), factor_names=("a", "b", "c"))
    with pytest.raises(AtlasError, match="fitted"):
        FactorFidelity().score(sample, np.random.default_rng(0))
