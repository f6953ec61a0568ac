import numpy as np
import pytest
from scipy.spatial import Delaunay
from scipy.spatial.distance import cdist
from scipy.stats import binomtest, multivariate_normal, norm

from latent_atlas.analysis.holes import (
    HullSampler,
    bin_distances,
    distance_bin_summary,
    distance_binned_points,
    empty_volume_fraction,
    log_aggregate_posterior,
    posterior_sigma_scale,
    prior_points,
    scaled_distances,
    valid_fraction,
)
from latent_atlas.analysis.neighbours import code_spacing
from latent_atlas.errors import AtlasError


def grid_with_hole(dim: int, step: float, centre: float = 0.5, radius: float = 0.2) -> np.ndarray:
    axis = np.arange(0.0, 1.0 + 1e-9, step)
    points = np.stack([m.ravel() for m in np.meshgrid(*[axis] * dim, indexing="ij")], axis=1)
    return points[np.linalg.norm(points - centre, axis=1) > radius]


def test_hull_sampler_in_more_than_three_dimensions_maps_back_through_pca():
    cube = grid_with_hole(3, 0.1, radius=0.0)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(5, 5)))[0]
    codes = np.column_stack([cube, np.zeros((len(cube), 2))]) @ rotation.T  # a 3-D cube inside 5-D
    points = HullSampler().fit(codes).sample(500, np.random.default_rng(0))
    assert points.shape[1] == 5 and len(points) > 100
    back = points @ rotation  # undo the rotation: the last two coordinates are ~0, the first three in the cube
    np.testing.assert_allclose(back[:, 3:], 0.0, atol=1e-9)
    assert ((back[:, :3] > -1e-9) & (back[:, :3] < 1 + 1e-9)).all()


def test_hull_sampler_in_one_dimension_uses_the_interval():
    codes = np.concatenate([np.linspace(0, 1, 11), np.linspace(2, 3, 11)])[:, None]
    points = HullSampler().fit(codes).sample(300, np.random.default_rng(0))
    assert len(points) == 300 and points.min() >= 0 and points.max() <= 3


def test_hull_sampler_refuses_flat_codes():
    line = np.column_stack([np.linspace(0, 1, 20), np.linspace(0, 1, 20)])
    with pytest.raises(AtlasError, match="convex hull"):
        HullSampler().fit(line)


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


def test_hull_sampler_contains_matches_delaunay_and_the_interval():
    rng = np.random.default_rng(10)
    codes, points = rng.normal(size=(30, 3)), rng.normal(size=(500, 3)) * 1.5
    inside = HullSampler().fit(codes).contains(points)
    np.testing.assert_array_equal(inside, Delaunay(codes).find_simplex(points) >= 0)
    assert 0 < inside.mean() < 1
    line = HullSampler().fit(np.array([[0.0], [2.0], [1.0]]))
    np.testing.assert_array_equal(line.contains(np.array([[-0.1], [0.0], [1.5], [2.1]])), [False, True, True, False])
    with pytest.raises(AtlasError, match="coordinates"):
        line.contains(points)


def test_posterior_sigma_scale_is_the_mean_standard_deviation():
    logvar = np.log(np.array([[1.0, 4.0, 9.0], [0.25, 0.25, 0.25]]))
    np.testing.assert_allclose(posterior_sigma_scale(logvar), [2.0, 0.5])


def test_scaled_distances_match_brute_force_in_either_unit():
    rng = np.random.default_rng(11)
    codes, points = rng.normal(size=(200, 3)), rng.normal(size=(40, 3))
    distance, nearest, scaled = scaled_distances(points, codes)
    pairwise = cdist(points, codes)
    np.testing.assert_allclose(distance, pairwise.min(axis=1))
    np.testing.assert_array_equal(nearest, pairwise.argmin(axis=1))
    np.testing.assert_allclose(scaled, distance / np.median(code_spacing(codes)))
    per_code = rng.uniform(0.5, 2.0, 200)
    np.testing.assert_allclose(scaled_distances(points, codes, per_code)[2], distance / per_code[nearest])
    np.testing.assert_allclose(scaled_distances(points, codes, 0.5)[2], distance / 0.5)
    with pytest.raises(AtlasError, match="scale"):
        scaled_distances(points, codes, np.ones(3))
    with pytest.raises(AtlasError, match="scale"):
        scaled_distances(points, codes, -1.0)


def test_bin_distances_uses_half_open_bins():
    index = bin_distances(np.array([0.0, 0.49, 0.5, 1.0, 7.9, 8.0, 100.0]), (0.0, 0.5, 1.0, 2.0, 4.0, 8.0))
    np.testing.assert_array_equal(index, [0, 0, 1, 2, 4, -1, -1])
    with pytest.raises(AtlasError, match="increasing"):
        bin_distances(np.ones(3), (0.0, 1.0, 1.0))


def test_distance_binned_points_fill_each_reachable_bin_of_a_grid_with_a_hole():
    codes = grid_with_hole(2, 0.05)  # spacing 0.05; the hole's centre is 0.2 = 4 spacings from every code
    edges = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
    binned = distance_binned_points(codes, np.random.default_rng(12), n_per_bin=60, edges=edges)
    np.testing.assert_array_equal(binned.counts(), [60, 60, 60, 60, 0])  # no point of the square is 4 spacings off
    assert binned.n_candidates < 100_000  # the unreachable bin is given up early, not after a million draws
    assert ((binned.points >= 0) & (binned.points <= 1)).all()
    pairwise = cdist(binned.points, codes)
    np.testing.assert_allclose(binned.distance, pairwise.min(axis=1))
    np.testing.assert_allclose(binned.scaled_distance, binned.distance / 0.05)
    lows, highs = np.asarray(edges)[binned.bin_index], np.asarray(edges)[binned.bin_index + 1]
    assert np.all((binned.scaled_distance >= lows) & (binned.scaled_distance < highs))
    far = binned.points[binned.bin_index >= 2]  # 1 spacing or more: only inside the hole (radius 0.2), since
    assert np.all(np.linalg.norm(far - 0.5, axis=1) < 0.2)  # the grid leaves no point 0.036 from every code
    again = distance_binned_points(codes, np.random.default_rng(12), n_per_bin=60, edges=edges)
    np.testing.assert_array_equal(again.points, binned.points)


def test_distance_binned_points_in_per_code_units():
    codes = grid_with_hole(2, 0.05)
    scale = np.where(codes[:, 0] < 0.5, 0.05, 0.1)  # a larger unit on the right half
    binned = distance_binned_points(codes, np.random.default_rng(13), n_per_bin=30, edges=(0.0, 1.0, 2.0),
                                    scale=scale, unit="sigma")
    np.testing.assert_allclose(binned.scaled_distance, binned.distance / scale[binned.nearest])
    assert binned.unit == "sigma" and binned.counts().tolist() == [30, 30]


def test_distance_bin_summary_gives_wilson_intervals_and_quantiles_per_bin():
    bins = np.array([0, 0, 0, 0, 1, 1, -1, 2])
    valid = np.array([True, True, True, False, False, True, True, True])
    residual = np.array([0.1, 0.2, 0.3, 0.4, 1.0, 3.0, 9.0, 2.0])
    summary = distance_bin_summary(bins, valid, edges=(0.0, 1.0, 2.0, 4.0, 8.0), residual=residual, unit="sigma")
    first, second, third, fourth = summary["bins"]
    assert (first["from"], first["to"], first["n"], first["fraction"]) == (0.0, 1.0, 4, 0.75)
    assert (first["low"], first["high"]) == pytest.approx(wilson(3, 4, 0.95))
    assert first["residual_quantiles"]["q50"] == pytest.approx(0.25)
    assert second["n"] == 2 and second["residual_quantiles"]["q90"] == pytest.approx(2.8)
    assert third["n"] == 1 and fourth["n"] == 0 and fourth["fraction"] is None
    assert fourth["residual_quantiles"] is None
    assert summary["n_outside"] == 1 and summary["unit"] == "sigma"
    import json

    json.dumps(summary, allow_nan=False)
    with pytest.raises(AtlasError, match="boolean"):
        distance_bin_summary(bins, valid.astype(int))
