"""Geometry-based latent paths on synthetic codes whose shape is known, plus one decode on a tiny trained run."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import spearmanr

from latent_atlas.analysis.holes import HullSampler
from latent_atlas.analysis.latents import LatentCodes, encode_dataset
from latent_atlas.analysis.neighbours import distance_to_codes, typical_spacing
from latent_atlas.analysis.paths import (
    PATH_FACTORS,
    LatentPath,
    bounding_planes,
    code_directed_null_paths,
    compare_with_null,
    correlation_axis,
    drift,
    factor_association,
    factor_axis,
    factor_quantity,
    hull_envelopes,
    hull_perturbations,
    isovariance_path,
    null_paths,
    null_paths_like,
    path_drift,
    path_validity_summary,
    planar_hull,
    rotated_null_paths,
    slab_codes,
    tail_indices,
    tail_traversals,
)
from latent_atlas.analysis.traversals import polyline_length
from latent_atlas.errors import AtlasError
from latent_atlas.models.inference import decode

VARIANCES = np.linspace(0.2, 2.0, 6)  # steps of 0.36: only equal variances are within 0.3 of each other
RHOS = np.linspace(-0.9, 0.9, 7)


def synthetic_latents(codes: np.ndarray, factors: np.ndarray) -> LatentCodes:
    return LatentCodes(mean=np.asarray(codes, dtype=np.float32), logvar=None, factors=np.asarray(factors, float),
                       factor_names=("var_x", "var_y", "rho"), is_test=np.zeros(len(codes), dtype=bool),
                       dataset_hash="synthetic", model_hash="synthetic")


def factor_grid() -> np.ndarray:
    return np.array(list(itertools.product(VARIANCES, VARIANCES, RHOS)))  # (252, 3)


def cone_latents(rho_sign: float = 1.0, extra_axis: bool = False) -> LatentCodes:
    """z0 = var_x - var_y, z1 = sqrt(var_x + var_y), z2 = rho (optionally z3 = rho^2).

    Each slice of constant rho is a bent diamond whose isovariance strip (z0 = 0) reaches farthest from the
    slice's centroid at its low-variance end, so the isovariance path must run along var_x = var_y = 0.2.
    """
    f = factor_grid()
    columns = [f[:, 0] - f[:, 1], np.sqrt(f[:, 0] + f[:, 1]), rho_sign * f[:, 2]]
    if extra_axis:
        columns.append(f[:, 2] ** 2)
    return synthetic_latents(np.stack(columns, axis=1), f)


def test_factor_association_matches_scipy_spearman():
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(80, 3))
    values = codes[:, 1] ** 3 + 0.5 * rng.normal(size=80)
    expected = [spearmanr(codes[:, j], values)[0] for j in range(3)]
    np.testing.assert_allclose(factor_association(codes, values), expected, atol=1e-12)
    constant = np.c_[codes, np.ones(80)]
    assert factor_association(constant, values)[3] == 0.0


def test_correlation_and_factor_axes_are_found():
    latents = cone_latents()
    assert correlation_axis(latents) == 2
    assert factor_axis(latents, "var_diff") == 0
    permuted = synthetic_latents(latents.codes[:, [2, 0, 1]], latents.factors)
    assert correlation_axis(permuted) == 0


def test_isovariance_path_follows_the_outer_edge_of_the_strip():
    latents = cone_latents()
    path = isovariance_path(latents, tolerance=0.3, n_bins=7, n_points=9)
    assert isinstance(path, LatentPath) and path.points.shape == (9, 3)
    knot_factors = path.extras["knot_factors"]
    np.testing.assert_allclose(knot_factors[:, :2], 0.2)  # the low-variance end of every slice
    np.testing.assert_allclose(knot_factors[:, 2], RHOS)  # one knot per rho value, from most negative to most positive
    np.testing.assert_allclose(path.points[:, 2], np.linspace(-0.9, 0.9, 9))
    np.testing.assert_allclose(path.points[:, 0], 0.0, atol=1e-9)
    np.testing.assert_allclose(path.points[:, 1], np.sqrt(0.4), atol=1e-9)


def test_isovariance_path_in_four_dimensions_with_empty_bins_and_a_reversed_axis():
    latents = cone_latents(rho_sign=-1.0, extra_axis=True)
    path = isovariance_path(latents, n_bins=40, n_points=11)  # 40 slices for 7 rho values: most are empty
    assert path.extras["axis"] == 2 and len(path.extras["knots"]) == 7
    assert np.all(np.diff(path.points[:, 2]) < 0)  # ordered so that rho grows, although z2 = -rho
    rho_along = -path.points[:, 2]
    np.testing.assert_allclose(path.points[:, 3], rho_along**2, atol=0.03)  # z3 = rho^2 fitted as a function of z2
    strip = latents.codes[np.abs(latents.factor("var_diff")) <= 0.3]
    assert distance_to_codes(path.points, strip).max() < 0.25  # knots are 0.3 apart along z2; z3 bends between


def test_isovariance_path_with_few_bins_joins_them_with_straight_segments():
    path = isovariance_path(cone_latents(), n_bins=3, n_points=5)
    knots = path.extras["knots"]
    assert len(knots) == 3
    np.testing.assert_allclose(path.points[[0, -1]], knots[[0, -1]], atol=1e-7)
    assert np.all(np.diff(path.points[:, 2]) > 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tolerance=-1.0), "raise the tolerance"),
        (dict(n_bins=1), "n_bins"),
        (dict(n_points=1), "n_points"),
        (dict(axis=3), "axes"),
    ],
)
def test_isovariance_path_rejects_bad_input(kwargs, message):
    with pytest.raises(AtlasError, match=message):
        isovariance_path(cone_latents(), **kwargs)


def test_isovariance_path_rejects_one_dimensional_codes():
    latents = cone_latents()
    with pytest.raises(AtlasError, match="D >= 2"):
        isovariance_path(synthetic_latents(latents.codes[:, 2:], latents.factors))


def test_bounding_planes_of_a_triangle_are_its_edges():
    rng = np.random.default_rng(2)
    u, v = rng.uniform(0, 2, 3000), rng.uniform(0, 1, 3000)
    inside = v <= np.minimum(u, 2 - u)
    plane = np.c_[[0.0, 2.0, 1.0], [0.0, 0.0, 1.0]]  # the triangle's corners, so the hull is known exactly
    uv = np.r_[plane, np.c_[u, v][inside]]
    fixed = np.r_[np.zeros(3), rng.normal(size=len(uv) - 3)]  # axis 0 is the fixed one; the corners sit at 0
    codes = np.c_[fixed, uv]
    latents = synthetic_latents(codes, np.zeros((len(codes), 3)))
    upper, lower = bounding_planes(latents, fixed_axis=0, n_points=6)
    slab = np.abs(fixed - np.median(fixed)) <= upper.extras["slab_width"]
    for path in (upper, lower):
        assert path.points.shape == (6, 3)
        np.testing.assert_allclose(path.points[:, 0], np.median(fixed))
        np.testing.assert_allclose(path.points[[0, -1], 1], np.percentile(uv[slab, 0], [2, 98]))
    np.testing.assert_allclose(upper.points[:, 2], np.minimum(upper.points[:, 1], 2 - upper.points[:, 1]))
    np.testing.assert_allclose(lower.points[:, 2], 0.0, atol=1e-12)
    assert upper.extras["n_slab"] == slab.sum() and abs(slab.mean() - 0.2) < 0.01


def test_bounding_planes_take_their_hull_from_the_slab_around_the_fixed_value():
    rng = np.random.default_rng(3)
    near = np.c_[rng.uniform(-0.1, 0.1, 400), rng.uniform(0, 1, 400), rng.uniform(0, 1, 400)]  # a unit square
    far = np.c_[rng.uniform(2, 3, 100) * rng.choice([-1, 1], 100), rng.uniform(0, 1, 100), rng.uniform(-2, 3, 100)]
    codes = np.r_[near, far]
    latents = synthetic_latents(codes, np.zeros((len(codes), 3)))
    upper, lower = bounding_planes(latents, fixed_axis=0, n_points=5, slab_width=0.5)
    assert upper.extras["n_slab"] == 400 and upper.extras["slab_width"] == 0.5
    assert upper.extras["slab_fraction"] is None
    square_top, square_bottom = hull_envelopes(planar_hull(near[:, 1:]), upper.points[:, 1])
    # The square's edges, not the far codes' 3 and -2:
    np.testing.assert_allclose(upper.points[:, 2], square_top, atol=1e-9)
    np.testing.assert_allclose(lower.points[:, 2], square_bottom, atol=1e-9)
    assert upper.points[:, 2].min() > 0.9 and lower.points[:, 2].max() < 0.1
    projected, _ = bounding_planes(latents, fixed_axis=0, n_points=5, slab_fraction=1.0)  # every code: too tall
    assert projected.extras["n_slab"] == 500 and projected.points[:, 2].max() > 2.5
    default, _ = bounding_planes(latents, fixed_axis=0, n_points=5)
    assert default.extras["n_slab"] == 100 and default.extras["slab_fraction"] == 0.2
    members, width, centre = slab_codes(codes, 0, fraction=0.2)
    assert len(members) == 100 and width == pytest.approx(np.quantile(np.abs(codes[:, 0] - centre), 0.2))
    with pytest.raises(AtlasError, match="widen"):
        bounding_planes(latents, fixed_axis=0, slab_width=0.0)
    with pytest.raises(AtlasError, match="slab fraction"):
        bounding_planes(latents, fixed_axis=0, slab_fraction=0.0)


def test_bounding_planes_bound_every_code_of_a_cone():
    latents = cone_latents()
    upper, lower = bounding_planes(latents, fixed_axis=0)
    u, v = latents.codes[:, 1], latents.codes[:, 2]
    above = np.interp(u, *upper.extras["hull_chain"].T)
    below = np.interp(u, *lower.extras["hull_chain"].T)
    assert np.all(v <= above + 1e-6) and np.all(v >= below - 1e-6)
    assert np.all(upper.points[:, 2] >= lower.points[:, 2])
    assert upper.extras["axes"] == (1, 2) and upper.name == "bounding_upper"


def test_bounding_planes_reject_bad_input():
    latents = cone_latents()
    with pytest.raises(AtlasError, match="other than the fixed axis"):
        bounding_planes(latents, fixed_axis=1, plane_axes=(1, 2))
    with pytest.raises(AtlasError, match="at least 3 axes"):
        bounding_planes(synthetic_latents(latents.codes[:, :2], latents.factors))
    flat = synthetic_latents(np.c_[latents.codes[:, :2], latents.codes[:, 1]], latents.factors)
    with pytest.raises(AtlasError, match="collinear"):
        bounding_planes(flat, fixed_axis=0)


def cube_latents() -> LatentCodes:
    grid = np.array(list(itertools.product(range(5), repeat=3)), dtype=float)  # (125, 3); hull vertices: 8 corners
    factors = np.c_[np.ones(125), np.ones(125), grid[:, 2] / 4 - 0.5]  # rho grows along z2
    return synthetic_latents(grid, factors)


def test_hull_perturbations_stay_within_scale_of_hull_vertices():
    latents = cube_latents()
    path = hull_perturbations(latents, n_points=12, scale=0.2, rng=np.random.default_rng(3))
    base = path.extras["base"]
    assert path.points.shape == (12, 3) and path.extras["connected"] is False
    assert set(map(tuple, base)) <= set(itertools.product((0.0, 4.0), repeat=3))  # corners only, reused when 12 > 8
    assert np.all(np.abs(path.points - base) <= 0.2 * latents.codes.std(axis=0) + 1e-12)
    assert np.all(np.diff(base[:, 2]) >= 0)  # ordered along the correlation axis
    again = hull_perturbations(latents, n_points=12, scale=0.2, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(again.points, path.points)
    still = hull_perturbations(latents, n_points=4, scale=0.0, rng=0)
    np.testing.assert_array_equal(still.points, still.extras["base"])
    assert len(set(map(tuple, still.extras["base"]))) == 4  # distinct vertices while there are enough


def test_hull_perturbations_reject_bad_input():
    latents = cube_latents()
    with pytest.raises(AtlasError, match="scale"):
        hull_perturbations(latents, scale=-0.1)
    flat = synthetic_latents(np.c_[latents.codes[:, :2], np.zeros(125)], latents.factors)
    with pytest.raises(AtlasError, match="degenerate"):
        hull_perturbations(flat)


def sheet_latents(height: np.ndarray, u: np.ndarray, w: np.ndarray, extra: np.ndarray | None = None) -> LatentCodes:
    """Codes (u, w, height) with var_x - var_y = 2u, so the manifold's tails sit at u = -1 and u = +1."""
    codes = np.c_[u, w, height]
    factors = np.c_[2 + u, 2 - u, 0.9 * w]
    if extra is not None:
        codes, factors = np.r_[codes, extra], np.r_[factors, np.tile([2.0, 2.0, 0.0], (len(extra), 1))]
    return synthetic_latents(codes, factors)


def test_distance_to_codes_and_typical_spacing_match_brute_force():
    rng = np.random.default_rng(4)
    codes, points = rng.normal(size=(300, 3)), rng.normal(size=(25, 3))
    np.testing.assert_allclose(distance_to_codes(points, codes), cdist(points, codes).min(axis=1))
    pairwise = cdist(codes, codes) + np.diag(np.full(300, np.inf))
    assert typical_spacing(codes) == pytest.approx(np.median(pairwise.min(axis=1)))


def test_paths_decode_on_a_trained_run(trained_runs, tiny_dataset):
    model = trained_runs["vae"].load_model()
    latents = encode_dataset(model, tiny_dataset)
    paths = [isovariance_path(latents, n_bins=4, n_points=5), *bounding_planes(latents, n_points=5),
             hull_perturbations(latents, n_points=5, rng=0)]
    rng = np.random.default_rng(0)
    tails = tail_traversals(latents.codes, latents.factor("var_diff"), rng, n_paths=3, n_points=5, tail_fraction=0.1)
    point_sets = [path.points for path in paths] + [*tails.points, *null_paths_like(paths[0].points, rng, n_paths=2)]
    for points in point_sets:
        assert np.all(np.isfinite(points)) and points.shape == (5, latents.latent_dim)
        images = decode(model, points)
        assert images.shape == (5, *tiny_dataset.image_shape)


# -- the tail traversal --------------------------------------------------------------------------------


def parabola_codes() -> tuple[np.ndarray, np.ndarray]:
    """A parabolic sheet z2 = z0^2 with var_x - var_y = 2 z0: tails at z0 = -1 and +1, hollow above."""
    u, w = (a.ravel() for a in np.meshgrid(np.linspace(-1, 1, 41), np.linspace(-1, 1, 11)))
    return np.c_[u, w, u**2], 2 * u


def test_tail_indices_are_the_top_and_bottom_of_var_diff():
    var_diff = np.arange(100.0)
    top, bottom = tail_indices(var_diff, 0.05)
    np.testing.assert_array_equal(np.sort(top), np.arange(95, 100))  # quantiles interpolate: 94.05 and 4.95
    np.testing.assert_array_equal(np.sort(bottom), np.arange(0, 5))
    with pytest.raises(AtlasError, match="tail_fraction"):
        tail_indices(var_diff, 0.5)


def test_tail_traversals_join_tail_codes_by_one_rule_inside_the_hull():
    codes, var_diff = parabola_codes()
    paths = tail_traversals(codes, var_diff, np.random.default_rng(0), n_paths=10, n_points=9, tail_fraction=0.05,
                            bend=1.0)
    top, bottom = tail_indices(var_diff, 0.05)
    assert paths.points.shape == (10, 9, 3) and paths.nearest_code_distance.shape == (10, 9)
    assert set(paths.extras["start_indices"]) <= set(top) and set(paths.extras["end_indices"]) <= set(bottom)
    np.testing.assert_allclose(paths.points[:, 0], codes[paths.extras["start_indices"]])
    np.testing.assert_allclose(paths.points[:, -1], codes[paths.extras["end_indices"]])
    midpoint = (paths.points[:, 0] + paths.points[:, -1]) / 2
    np.testing.assert_allclose(paths.points[:, 4], (midpoint + codes.mean(axis=0)) / 2, atol=1e-12)  # bend 1
    assert HullSampler().fit(codes).contains(paths.points.reshape(-1, 3)).all()
    flat = paths.points.reshape(-1, 3)
    np.testing.assert_allclose(paths.nearest_code_distance.ravel(), distance_to_codes(flat, codes))
    assert paths.nearest_code_distance[:, 4].min() > 5 * paths.extras["typical_spacing"]  # across the hollow
    straight = tail_traversals(codes, var_diff, np.random.default_rng(0), n_paths=10, n_points=9)  # bend 0
    np.testing.assert_array_equal(straight.extras["start_indices"], paths.extras["start_indices"])  # same pairs
    np.testing.assert_allclose(straight.points, np.linspace(straight.points[:, 0], straight.points[:, -1], 9, axis=1),
                               atol=1e-12)
    np.testing.assert_allclose(straight.nearest_code_distance, straight.extras["chord_nearest_code_distance"])
    assert straight.nearest_code_distance[:, 4].min() > 5 * paths.extras["typical_spacing"]  # the chord crosses too


def test_tail_traversals_are_reproducible_and_reject_bad_input():
    codes, var_diff = parabola_codes()
    first = tail_traversals(codes, var_diff, np.random.default_rng(5), n_paths=4)
    again = tail_traversals(codes, var_diff, np.random.default_rng(5), n_paths=4)
    np.testing.assert_array_equal(first.points, again.points)
    assert first.points.shape == (4, 21, 3)
    with pytest.raises(AtlasError, match="bend"):
        tail_traversals(codes, var_diff, np.random.default_rng(0), bend=1.5)
    with pytest.raises(AtlasError, match="one value per code"):
        tail_traversals(codes, var_diff[:-1], np.random.default_rng(0))
    with pytest.raises(AtlasError, match="n_paths"):
        tail_traversals(codes, var_diff, np.random.default_rng(0), n_paths=0)


def test_path_validity_summary_treats_the_path_as_the_unit():
    valid = np.zeros((8, 5), dtype=bool)
    valid[:4] = True  # four paths fully valid
    valid[4:, :2] = True  # four 40 % valid
    summary = path_validity_summary(valid, rng=1)
    assert summary["mean_path_fraction"]["fraction"] == pytest.approx(0.7)
    assert summary["mean_path_fraction"]["low"] < 0.7 < summary["mean_path_fraction"]["high"]
    assert summary["mean_path_fraction"]["low"] >= 0.4 and summary["mean_path_fraction"]["high"] <= 1.0
    assert summary["per_path_fraction"] == [1.0] * 4 + [0.4] * 4
    assert summary["all_valid_paths"]["fraction"] == 0.5 and summary["all_valid_paths"]["n"] == 8
    assert summary["pointwise"] == [1.0, 1.0, 0.5, 0.5, 0.5]
    assert summary["pooled"]["n"] == 40
    same = path_validity_summary(np.ones((3, 4), dtype=bool))
    assert same["mean_path_fraction"]["low"] == same["mean_path_fraction"]["high"] == 1.0
    assert path_validity_summary(valid, rng=1) == summary
    with pytest.raises(AtlasError, match="boolean"):
        path_validity_summary(np.ones(5, dtype=bool))


# -- drift of the factors a path should keep fixed ------------------------------------------------------

NAMES = ("var_x", "var_y", "rho")


def test_factor_quantities_in_natural_units():
    factors = np.array([[2.0, 0.5, 0.3], [1.0, 1.0, -0.2]])
    np.testing.assert_allclose(factor_quantity(factors, NAMES, "log_var_ratio"), [np.log(4.0), 0.0])
    np.testing.assert_allclose(factor_quantity(factors, NAMES, "log_var_sum"), np.log([2.5, 2.0]))
    np.testing.assert_allclose(factor_quantity(factors, NAMES, "log_var_y"), np.log([0.5, 1.0]))
    np.testing.assert_allclose(factor_quantity(factors, NAMES, "rho"), [0.3, -0.2])
    np.testing.assert_allclose(factor_quantity(factors, NAMES, "var_diff"), [1.5, 0.0])
    with pytest.raises(AtlasError, match="needs factor 'df'"):
        factor_quantity(factors, NAMES, "log_df")
    with pytest.raises(AtlasError, match="non-positive"):
        factor_quantity(np.array([[-1.0, 1.0, 0.0]]), NAMES, "log_var_x")
    with pytest.raises(AtlasError, match="unknown quantity"):
        factor_quantity(factors, NAMES, "size")


def test_drift_measures():
    values = np.array([[0.0, 2.0, 1.0, 1.5], [3.0, 3.0, 3.0, 3.0]])
    np.testing.assert_allclose(drift(values, "range"), [2.0, 0.0])
    np.testing.assert_allclose(drift(values, "total_variation"), [3.5, 0.0])
    np.testing.assert_allclose(drift(values, "change"), [1.5, 0.0])
    with pytest.raises(AtlasError, match="measure"):
        drift(values, "spread")
    with pytest.raises(AtlasError, match="finite"):
        drift(np.array([1.0, np.nan]))
    factors = np.array([[1.0, 1.0, -0.5], [2.0, 2.0, 0.0], [1.0, 1.0, 0.5]])
    assert path_drift(factors, NAMES, PATH_FACTORS["isovariance"]["fixed"]) == {
        "log_var_ratio": 0.0, "log_var_sum": pytest.approx(np.log(2.0))}
    many = path_drift(np.stack([factors, factors]), NAMES, ("rho",), measure="change")
    assert many == {"rho": [1.0, 1.0]}


def test_null_paths_are_straight_random_and_as_long_as_the_path():
    start = np.array([1.0, -1.0, 0.5])
    paths = null_paths(start, length=2.0, n_points=6, rng=np.random.default_rng(6), n_paths=500)
    assert paths.shape == (500, 6, 3)
    np.testing.assert_allclose(paths[:, 0], np.broadcast_to(start, (500, 3)))
    np.testing.assert_allclose([polyline_length(p) for p in paths], 2.0)
    steps = np.diff(paths, axis=1)  # (P, 5, D): equal steps along one direction per path
    np.testing.assert_allclose(steps, np.broadcast_to(steps[:, :1], steps.shape), atol=1e-12)
    directions = steps[:, 0] / np.linalg.norm(steps[:, 0], axis=1, keepdims=True)
    np.testing.assert_allclose(directions.mean(axis=0), 0.0, atol=0.1)  # no preferred direction
    np.testing.assert_allclose((directions**2).mean(axis=0), 1 / 3, atol=0.05)
    again = null_paths(start, 2.0, 6, np.random.default_rng(6), n_paths=500)
    np.testing.assert_array_equal(again, paths)
    curve = np.array([[1.0, -1.0, 0.5], [1.0, 0.0, 0.5], [2.0, 0.0, 0.5]])  # length 2, three points
    like = null_paths_like(curve, np.random.default_rng(6), n_paths=500)
    np.testing.assert_allclose(like, null_paths(start, 2.0, 3, np.random.default_rng(6), n_paths=500))
    with pytest.raises(AtlasError, match="length"):
        null_paths(start, 0.0, 6, np.random.default_rng(0))


def test_code_directed_null_paths_end_on_codes_at_the_path_length():
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    ring = np.c_[np.cos(angles), np.sin(angles), np.zeros(40)]  # 40 codes 1 from the origin
    codes = np.r_[ring, 3 * ring, [[0.0, 0.0, 0.0]]]  # and 40 more 3 from it, and the start itself
    paths = code_directed_null_paths(np.zeros(3), 1.0, 5, codes, np.random.default_rng(8), n_paths=30)
    assert paths.shape == (30, 5, 3)
    np.testing.assert_allclose(paths[:, 0], 0.0)
    ends = paths[:, -1]
    assert np.abs(cdist(ends, ring)).min(axis=1).max() < 1e-12  # every path ends on a code of the inner ring
    assert len({tuple(np.round(e, 9)) for e in ends}) == 30  # drawn without replacement while enough qualify
    np.testing.assert_allclose([polyline_length(p) for p in paths], 1.0)
    longer = code_directed_null_paths(np.zeros(3), 2.9, 4, codes, np.random.default_rng(8), n_paths=50)
    np.testing.assert_allclose(np.linalg.norm(longer[:, -1], axis=1), 2.9)  # towards the outer ring, 2.9 long
    with pytest.raises(AtlasError, match="no code lies"):
        code_directed_null_paths(np.zeros(3), 2.0, 4, codes, np.random.default_rng(8))
    with pytest.raises(AtlasError, match="dimension"):
        code_directed_null_paths(np.zeros(2), 1.0, 4, codes, np.random.default_rng(8))


def test_rotated_null_paths_keep_the_shape_of_the_path():
    path = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 2.0]])
    paths = rotated_null_paths(path, np.random.default_rng(7), n_paths=50)
    assert paths.shape == (50, 4, 3)
    for rotated in paths:
        np.testing.assert_allclose(cdist(rotated, rotated), cdist(path, path), atol=1e-12)
    np.testing.assert_allclose(paths[:, 0], 0.0, atol=1e-12)
    assert np.std(paths[:, -1], axis=0).min() > 0.5  # the end point goes everywhere on its sphere


def test_compare_with_null_places_the_path_among_the_null_paths():
    n = 5
    rho = np.linspace(-0.8, 0.8, n)
    path = np.c_[np.full(n, 1.0), np.full(n, 1.0), rho]  # isovariance held exactly, rho sweeps
    null = np.empty((20, n, 3))
    for p in range(20):  # null paths whose variance ratio drifts by p / 10 in log units and whose rho barely moves
        null[p] = np.c_[np.exp(np.linspace(0.0, p / 10, n)), np.ones(n), np.full(n, 0.01 * p)]
    result = compare_with_null(path, null, NAMES, fixed=("log_var_ratio", "log_var_sum"), intended=("rho",))
    ratio = result["fixed"]["log_var_ratio"]
    assert ratio["path"] == 0.0 and ratio["null_median"] == pytest.approx(0.95)
    assert ratio["percentile"] == pytest.approx(100 * 0.5 / 20)  # one null path ties at 0, counted half
    assert ratio["p_value"] == pytest.approx(2 / 21)
    rho_change = result["intended"]["rho"]
    assert rho_change["path"] == pytest.approx(1.6) and rho_change["percentile"] == 100.0
    assert rho_change["p_value"] == pytest.approx(1 / 21) and rho_change["measure"] == "change"
    assert result["n_null"] == 20 and "log-variance" in result["units"]["log_var_ratio"]
    assert "valid_only" not in result and "path_valid_fraction" not in result
    null_valid = np.ones((20, n), dtype=bool)
    null_valid[10:, 2] = False  # the ten null paths that drift most leave the manifold half way
    judged = compare_with_null(path, null, NAMES, fixed=("log_var_ratio",), path_valid=np.ones(n, dtype=bool),
                               null_valid=null_valid, min_valid_null=10)
    assert judged["path_valid_fraction"] == 1.0 and judged["null_valid_fraction"] == pytest.approx(0.9)
    assert judged["n_null_valid_paths"] == 10 and judged["valid_only"]["n_null"] == 10
    assert judged["valid_only"]["fixed"]["log_var_ratio"]["null_median"] == pytest.approx(0.45)
    assert judged["valid_only"]["fixed"]["log_var_ratio"]["p_value"] == pytest.approx(2 / 11)
    assert judged["fixed"]["log_var_ratio"] == ratio  # the comparison against every null path is unchanged
    too_few = compare_with_null(path, null, NAMES, fixed=("rho",), null_valid=null_valid)  # 10 < 20
    assert too_few["valid_only"] is None
    with pytest.raises(AtlasError, match="null_valid"):
        compare_with_null(path, null, NAMES, fixed=("rho",), null_valid=null_valid[:, :2])
    with pytest.raises(AtlasError, match="same n and K"):
        compare_with_null(path, null[:, :3], NAMES, fixed=("rho",))
