"""Geometry-based latent paths on synthetic codes whose shape is known, plus one decode on a tiny trained run."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import spearmanr

from latent_atlas.analysis.latents import LatentCodes, encode_dataset
from latent_atlas.analysis.neighbours import distance_to_codes, typical_spacing
from latent_atlas.analysis.paths import (
    LatentPath,
    bounding_planes,
    correlation_axis,
    empty_region_traversal,
    factor_association,
    factor_axis,
    hull_perturbations,
    isovariance_path,
)
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
    codes = np.c_[rng.normal(size=len(uv)), uv]  # axis 0 is the fixed one
    latents = synthetic_latents(codes, np.zeros((len(codes), 3)))
    upper, lower = bounding_planes(latents, fixed_axis=0, n_points=6)
    for path in (upper, lower):
        assert path.points.shape == (6, 3)
        np.testing.assert_allclose(path.points[:, 0], np.median(codes[:, 0]))
        np.testing.assert_allclose(path.points[[0, -1], 1], np.percentile(codes[:, 1], [2, 98]))
    np.testing.assert_allclose(upper.points[:, 2], np.minimum(upper.points[:, 1], 2 - upper.points[:, 1]))
    np.testing.assert_allclose(lower.points[:, 2], 0.0, atol=1e-12)


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


def test_empty_region_traversal_crosses_the_hollow_of_a_parabola():
    u, w = (a.ravel() for a in np.meshgrid(np.linspace(-1, 1, 41), np.linspace(-1, 1, 21)))
    latents = sheet_latents(u**2, u, w)
    path = empty_region_traversal(latents, n_points=11)
    np.testing.assert_allclose(path.points[0], [1.0, 0.0, 1.0], atol=1e-6)  # var_x-heavy tail first
    np.testing.assert_allclose(path.points[-1], [-1.0, 0.0, 1.0], atol=1e-6)
    distances = path.extras["nearest_code_distance"]
    np.testing.assert_allclose(distances, distance_to_codes(path.points, latents.codes))
    assert distances[5] > 0.8 and distances[1:-1].mean() > 5 * path.extras["typical_spacing"]


def test_empty_region_traversal_bends_off_a_flat_sheet():
    u, w = (a.ravel() for a in np.meshgrid(np.linspace(-1, 1, 41), np.linspace(-1, 1, 21)))
    latents = sheet_latents(np.zeros_like(u), u, w, extra=np.array([[0.0, 0.0, 1.0]]))  # one code lifts the box
    path = empty_region_traversal(latents, n_points=11)
    chord = path.extras["chord_nearest_code_distance"]
    assert chord.max() < 0.06  # the straight line runs through the sheet
    assert path.extras["nearest_code_distance"][3:8].min() > 5 * path.extras["typical_spacing"]
    assert np.all(path.points >= latents.codes.min(axis=0) - 1e-9)
    assert np.all(path.points <= latents.codes.max(axis=0) + 1e-9)


def test_empty_region_traversal_rejects_bad_input():
    u = np.linspace(-1, 1, 20)
    with pytest.raises(AtlasError, match="tail_fraction"):
        empty_region_traversal(sheet_latents(u**2, u, u), tail_fraction=0.6)
    same = synthetic_latents(np.zeros((20, 3)), np.c_[2 + u, 2 - u, u])
    with pytest.raises(AtlasError, match="share one code"):
        empty_region_traversal(same)


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
             hull_perturbations(latents, n_points=5, rng=0), empty_region_traversal(latents, n_points=5)]
    for path in paths:
        assert np.all(np.isfinite(path.points)) and path.points.shape == (5, latents.latent_dim)
        images = decode(model, path.points)
        assert images.shape == (5, *tiny_dataset.image_shape)
