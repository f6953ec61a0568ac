import numpy as np
import pytest
from scipy.spatial.distance import cdist

from latent_atlas.analysis.compare import (
    code_scale,
    density_summary,
    error_summary,
    nearest_neighbour_distances,
    worst_examples,
)
from latent_atlas.errors import AtlasError


def test_error_summary_matches_numpy():
    errors = np.random.default_rng(0).lognormal(size=501)
    summary = error_summary(errors)
    assert summary["mean"] == pytest.approx(errors.mean())
    assert summary["median"] == pytest.approx(np.median(errors))
    assert summary["p90"] == pytest.approx(np.percentile(errors, 90))
    assert summary["p99"] == pytest.approx(np.percentile(errors, 99))
    assert summary["max"] == pytest.approx(errors.max())
    assert summary["tail_ratio"] == pytest.approx(np.percentile(errors, 99) / np.median(errors))
    assert summary["n"] == 501


def test_error_summary_tail_ratio_separates_heavy_from_light_tails():
    rng = np.random.default_rng(0)
    light = rng.normal(1.0, 0.05, size=2000)
    heavy = np.concatenate([rng.normal(0.8, 0.05, size=1960), rng.uniform(3, 6, size=40)])
    assert error_summary(heavy)["mean"] < error_summary(light)["mean"] * 1.2
    assert error_summary(heavy)["tail_ratio"] > 2 * error_summary(light)["tail_ratio"]
    with pytest.raises(AtlasError):
        error_summary([])


def test_worst_examples_are_the_largest_first():
    errors = np.array([0.1, 5.0, 0.3, 5.0, 2.0, 0.0])
    np.testing.assert_array_equal(worst_examples(errors, k=3), [1, 3, 4])
    assert len(worst_examples(errors, k=10)) == 6


def test_nearest_neighbour_distances_on_a_grid_and_against_brute_force():
    axis = np.arange(5) * 0.3
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2)
    np.testing.assert_allclose(nearest_neighbour_distances(grid, standardise=False), 0.3)
    codes = np.random.default_rng(1).normal(size=(200, 3))
    pairwise = cdist(codes, codes)
    np.fill_diagonal(pairwise, np.inf)
    np.testing.assert_allclose(nearest_neighbour_distances(codes, standardise=False), pairwise.min(axis=1))
    rms = np.sqrt(((codes - codes.mean(axis=0)) ** 2).sum(axis=1).mean())
    assert code_scale(codes) == pytest.approx(rms)
    np.testing.assert_allclose(nearest_neighbour_distances(codes), pairwise.min(axis=1) / rms)


def test_standardised_distances_ignore_scale_and_shift_but_see_packing():
    codes = np.random.default_rng(2).normal(size=(300, 3))
    np.testing.assert_allclose(nearest_neighbour_distances(7.5 * codes + 3.0), nearest_neighbour_distances(codes))
    # Half the points: same spread, sparser packing, larger standardised spacing.
    assert density_summary(codes[:150])["median"] > density_summary(codes)["median"]


def test_density_summary_reports_the_scale():
    codes = np.random.default_rng(3).normal(size=(100, 2))
    summary = density_summary(codes)
    distances = nearest_neighbour_distances(codes)
    assert summary["median"] == pytest.approx(np.median(distances))
    assert summary["p99"] == pytest.approx(np.percentile(distances, 99))
    assert summary["scale"] == pytest.approx(code_scale(codes))
    assert summary["n"] == 100
    with pytest.raises(AtlasError):
        density_summary(codes[:1])
