import numpy as np
import pytest
from scipy.spatial import Delaunay
from scipy.stats import binomtest, multivariate_normal, norm

from latent_atlas.analysis.holes import (
    HullSampler,
    empty_region_points,
    empty_volume_fraction,
    log_aggregate_posterior,
    prior_hole_stats,
    prior_points,
    valid_fraction,
)
from latent_atlas.analysis.neighbours import code_spacing
from latent_atlas.errors import AtlasError


def grid_with_hole(dim: int, step: float, centre: float = 0.5, radius: float = 0.2) -> np.ndarray:
    axis = np.arange(0.0, 1.0 + 1e-9, step)
    points = np.stack([m.ravel() for m in np.meshgrid(*[axis] * dim, indexing="ij")], axis=1)
    return points[np.linalg.norm(points - centre, axis=1) > radius]


def test_empty_region_points_lie_inside_the_hull_and_in_the_known_hole():
    codes = grid_with_hole(2, 0.05)
    points = empty_region_points(codes, n_points=150, rng=np.random.default_rng(1))
    assert points.shape == (150, 2)
    assert ((points >= 0) & (points <= 1)).all()  # the grid's hull is the unit square
    threshold = np.quantile(code_spacing(codes), 0.99)
    nearest = np.min(np.linalg.norm(points[:, None] - codes[None], axis=2), axis=1)
    assert (nearest > threshold).all()
    # Away from the hole no point of the unit square is farther than 0.05 * sqrt(2) / 2 from the grid.
    assert (np.linalg.norm(points - 0.5, axis=1) < 0.2).all()
    farther = empty_region_points(codes, n_points=20, rng=np.random.default_rng(1), threshold=0.12)
    assert (np.min(np.linalg.norm(farther[:, None] - codes[None], axis=2), axis=1) > 0.12).all()


def test_empty_region_points_is_reproducible_and_covers_the_hole_in_3d():
    codes = grid_with_hole(3, 0.1, radius=0.3)
    first = empty_region_points(codes, n_points=60, rng=np.random.default_rng(3))
    second = empty_region_points(codes, n_points=60, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(first, second)
    assert (np.linalg.norm(first - 0.5, axis=1) < 0.3).all()
    # Uniform in the hole: its centroid sits near the hole's centre.
    np.testing.assert_allclose(first.mean(axis=0), 0.5, atol=0.06)


def test_empty_region_points_in_more_than_three_dimensions_map_back_through_pca():
    hole = grid_with_hole(3, 0.1, radius=0.3)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))[0]
    codes = np.column_stack([hole, np.zeros((len(hole), 2))]) @ rotation.T  # a 3-D grid inside 5-D
    points = empty_region_points(codes, n_points=40, rng=np.random.default_rng(0))
    assert points.shape == (40, 5)
    back = points @ rotation  # undo the rotation: the last two coordinates are ~0, the first three in the hole
    np.testing.assert_allclose(back[:, 3:], 0.0, atol=1e-9)
    assert (np.linalg.norm(back[:, :3] - 0.5, axis=1) < 0.3).all()


def test_empty_region_points_without_holes_returns_what_it_found():
    codes = np.random.default_rng(0).uniform(size=(400, 2))
    points = empty_region_points(codes, n_points=10_000, rng=np.random.default_rng(0), max_tries=2_000)
    assert points.ndim == 2 and points.shape[1] == 2 and len(points) < 10_000


def test_empty_region_points_in_one_dimension_uses_the_interval():
    codes = np.concatenate([np.linspace(0, 1, 11), np.linspace(2, 3, 11)])[:, None]
    points = empty_region_points(codes, n_points=30, rng=np.random.default_rng(0))
    assert ((points > 1.1) & (points < 1.9)).all()


def test_empty_region_points_refuses_flat_codes():
    line = np.column_stack([np.linspace(0, 1, 20), np.linspace(0, 1, 20)])
    with pytest.raises(AtlasError, match="convex hull"):
        empty_region_points(line, rng=np.random.default_rng(0))


def test_hull_sampler_is_uniform_in_the_hull():
    triangle = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.2, 0.2], [0.1, 0.5]])
    points = HullSampler().fit(triangle).sample(20_000, np.random.default_rng(0))
    assert (points.sum(axis=1) <= 1.0 + 1e-12).all() and (points >= 0).all()
    assert len(points) == pytest.approx(10_000, rel=0.03)  # the triangle fills half its bounding box
    np.testing.assert_allclose(points.mean(axis=0), 1 / 3, atol=0.01)  # the triangle's centroid
    codes = np.random.default_rng(1).normal(size=(12, 3))
    candidates = np.random.default_rng(2).uniform(codes.min(axis=0), codes.max(axis=0), size=(2000, 3))
    inside = HullSampler().fit(codes).sample(2000, np.random.default_rng(2))
    np.testing.assert_array_equal(inside, candidates[Delaunay(codes).find_simplex(candidates) >= 0])


def test_empty_volume_fraction_sees_codes_bunched_on_sheets():
    rng = np.random.default_rng(0)
    scatter = rng.uniform(size=(3000, 3))
    sheets = scatter.copy()
    sheets[:, 2] = rng.integers(0, 4, 3000) / 3 + rng.normal(scale=0.005, size=3000)  # four thin layers
    spread = empty_volume_fraction(scatter, 20_000, np.random.default_rng(1))
    layered = empty_volume_fraction(sheets, 20_000, np.random.default_rng(1))
    assert spread["fraction"] < 0.05
    assert layered["fraction"] > 0.5
    assert layered["low"] <= layered["fraction"] <= layered["high"] and layered["n"] > 5_000
    assert spread["threshold"] == pytest.approx(np.quantile(code_spacing(scatter), 0.99))
    # One yardstick for both: a larger threshold leaves less of the hull "far", and 0 leaves all of it.
    wide = empty_volume_fraction(sheets, 20_000, np.random.default_rng(1), threshold=0.1)
    assert wide["fraction"] < layered["fraction"]
    assert empty_volume_fraction(sheets, 2_000, np.random.default_rng(1), threshold=0.0)["fraction"] == 1.0


def test_prior_points_are_seeded_standard_normal():
    a = prior_points(20_000, 3, np.random.default_rng(5))
    np.testing.assert_array_equal(a, prior_points(20_000, 3, np.random.default_rng(5)))
    assert a.shape == (20_000, 3)
    np.testing.assert_allclose(a.mean(axis=0), 0.0, atol=0.03)
    np.testing.assert_allclose(a.std(axis=0), 1.0, atol=0.03)


def wilson(k: int, n: int, confidence: float) -> tuple[float, float]:
    z = norm.ppf(0.5 + confidence / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k, n, confidence", [(7, 20, 0.95), (0, 15, 0.95), (50, 50, 0.9), (333, 1000, 0.99)])
def test_valid_fraction_is_the_wilson_interval(k, n, confidence):
    valid = np.zeros(n, dtype=bool)
    valid[:k] = True
    result = valid_fraction(valid, confidence)
    low, high = wilson(k, n, confidence)
    assert result["n"] == n and result["fraction"] == pytest.approx(k / n)
    assert (result["low"], result["high"]) == pytest.approx((low, high), abs=1e-12)
    reference = binomtest(k, n).proportion_ci(confidence, method="wilson")
    assert (result["low"], result["high"]) == pytest.approx((reference.low, reference.high))
    assert result["low"] <= result["fraction"] <= result["high"]


def test_valid_fraction_of_nothing_is_none():
    assert valid_fraction(np.array([], dtype=bool)) == {
        "fraction": None, "low": None, "high": None, "n": 0, "confidence": 0.95
    }


def test_log_aggregate_posterior_matches_a_direct_mixture():
    rng = np.random.default_rng(2)
    mean, logvar = rng.normal(size=(40, 3)), rng.normal(-1.0, 0.5, size=(40, 3))
    points = rng.normal(size=(7, 3))
    components = np.array([multivariate_normal(m, np.diag(np.exp(v))).pdf(points) for m, v in zip(mean, logvar)])
    np.testing.assert_allclose(log_aggregate_posterior(points, mean, logvar), np.log(components.mean(axis=0)))
    at_means = np.array([multivariate_normal(m, np.diag(np.exp(v))).pdf(mean) for m, v in zip(mean, logvar)])
    np.fill_diagonal(at_means, 0.0)
    np.testing.assert_allclose(
        log_aggregate_posterior(mean[5:], mean, logvar, leave_out=np.arange(5, 40)),
        np.log(at_means.sum(axis=0)[5:] / 39),
    )


def test_prior_hole_stats_find_no_hole_when_the_aggregate_posterior_is_the_prior():
    rng = np.random.default_rng(0)
    prior = prior_points(500, 2, rng)
    codes = np.zeros((50, 2)) + rng.normal(scale=1e-3, size=(50, 2))
    stats = prior_hole_stats(codes, np.zeros((50, 2)), prior)  # every posterior is N(~0, I): q = p
    assert stats["kl_prior_to_aggregate"] == pytest.approx(0.0, abs=1e-4)


def test_prior_hole_stats_see_a_shrunken_posterior_as_holes():
    rng = np.random.default_rng(0)
    prior = prior_points(2000, 3, rng)
    matched = prior_hole_stats(rng.normal(size=(1500, 3)), np.full((1500, 3), np.log(0.05)), prior)
    shrunk = prior_hole_stats(0.2 * rng.normal(size=(1500, 3)), np.full((1500, 3), np.log(0.002)), prior)
    assert matched["prior_far_fraction"] < 0.05
    assert shrunk["prior_far_fraction"] > 0.5
    assert shrunk["prior_low_density_fraction"] > 0.5 > matched["prior_low_density_fraction"]
    assert shrunk["kl_prior_to_aggregate"] > matched["kl_prior_to_aggregate"] + 1.0
    assert matched["nearest_ratio"] < 2 < shrunk["nearest_ratio"]


def test_prior_hole_stats_for_the_autoencoder_are_distance_only():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(300, 3))
    stats = prior_hole_stats(codes, None, prior_points(100, 3, rng))
    assert "kl_prior_to_aggregate" not in stats and "log_q_prior_mean" not in stats
    assert stats["spacing_threshold"] == pytest.approx(np.quantile(code_spacing(codes), 0.99))
    with pytest.raises(AtlasError, match="dimension"):
        prior_hole_stats(codes, None, prior_points(10, 2, rng))
