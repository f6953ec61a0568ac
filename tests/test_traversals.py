"""Lines, arcs, interpolation and arithmetic in latent space: exact geometry on random codes."""

from __future__ import annotations

import numpy as np
import pytest

from latent_atlas.analysis.traversals import (
    angular_traversal,
    interpolate,
    latent_arithmetic,
    line_traversal,
    polyline_length,
    random_unit_vectors,
)
from latent_atlas.errors import AtlasError


@pytest.fixture()
def codes() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(500, 4)) * [1.0, 2.0, 0.5, 3.0] + [0.0, 1.0, -2.0, 4.0]


def test_line_traversal_default_crosses_the_robust_range_of_the_first_axis(codes):
    points = line_traversal(codes, axes=(1, 3), n_points=7)
    median = np.median(codes, axis=0)
    assert points.shape == (7, 4)
    np.testing.assert_allclose(points[[0, -1], 1], np.percentile(codes[:, 1], [2, 98]))
    np.testing.assert_allclose(points[:, 3], median[3])
    np.testing.assert_allclose(points[:, [0, 2]], np.broadcast_to(median[[0, 2]], (7, 2)))
    steps = np.diff(points, axis=0)
    np.testing.assert_allclose(steps, np.broadcast_to(steps[0], steps.shape))


def test_line_traversal_with_explicit_start_end_and_fixed(codes):
    fixed = np.array([9.0, 8.0, 7.0, 6.0])
    points = line_traversal(codes, axes=(2, 0), start=(-1.0, 1.0), end=(3.0, -3.0), n_points=5, fixed=fixed)
    np.testing.assert_allclose(points[:, 2], [-1, 0, 1, 2, 3])
    np.testing.assert_allclose(points[:, 0], [1, 0, -1, -2, -3])
    np.testing.assert_allclose(points[:, [1, 3]], np.broadcast_to([8.0, 6.0], (5, 2)))


def test_angular_traversal_stays_on_the_circle_in_its_plane():
    center = np.array([1.0, -2.0, 0.5])
    points = angular_traversal(center, axes=(0, 2), radius=1.5, n_points=8)
    offsets = points - center
    np.testing.assert_allclose(np.hypot(offsets[:, 0], offsets[:, 2]), 1.5)
    np.testing.assert_allclose(offsets[:, 1], 0.0)
    angles = np.mod(np.arctan2(offsets[:, 2], offsets[:, 0]), 2 * np.pi)
    np.testing.assert_allclose(angles, np.arange(8) * 2 * np.pi / 8, atol=1e-12)  # a full turn, no repeat


def test_angular_traversal_arc_includes_both_ends():
    points = angular_traversal(np.zeros(2), axes=(1, 0), radius=2.0, start_angle=0.0, end_angle=np.pi / 2,
                               n_points=3)
    np.testing.assert_allclose(points, [[0.0, 2.0], [np.sqrt(2), np.sqrt(2)], [2.0, 0.0]], atol=1e-12)


def test_interpolate_includes_endpoints_at_equal_steps():
    a, b = np.array([0.0, 1.0, 2.0]), np.array([4.0, -3.0, 2.0])
    points = interpolate(a, b, n_points=5)
    np.testing.assert_allclose(points[0], a)
    np.testing.assert_allclose(points[-1], b)
    np.testing.assert_allclose(np.linalg.norm(np.diff(points, axis=0), axis=1), np.linalg.norm(b - a) / 4)


def test_latent_arithmetic():
    a, b, c = np.ones((2, 3)), np.full((2, 3), 2.0), np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(latent_arithmetic(a, b, c), 3.0 - c)
    with pytest.raises(AtlasError, match="one shape"):
        latent_arithmetic(a, b, np.zeros(3))


def test_polyline_length_sums_the_segments():
    assert polyline_length(np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 6.0]])) == pytest.approx(7.0)
    with pytest.raises(AtlasError, match="n >= 2"):
        polyline_length(np.zeros((1, 3)))


def test_random_unit_vectors_are_uniform_on_the_sphere():
    vectors = random_unit_vectors(20_000, 3, np.random.default_rng(1))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0)
    np.testing.assert_allclose(vectors.mean(axis=0), 0.0, atol=0.02)
    # Archimedes: on the unit 2-sphere each coordinate is uniform on [-1, 1].
    np.testing.assert_allclose(np.quantile(vectors[:, 2], [0.25, 0.5, 0.75]), [-0.5, 0.0, 0.5], atol=0.03)
    np.testing.assert_array_equal(random_unit_vectors(5, 4, np.random.default_rng(2)),
                                  random_unit_vectors(5, 4, np.random.default_rng(2)))
    with pytest.raises(AtlasError, match="directions"):
        random_unit_vectors(0, 3, np.random.default_rng(0))


@pytest.mark.parametrize(
    "call",
    [
        lambda c: line_traversal(c, axes=(0, 4)),
        lambda c: line_traversal(c, axes=(1, 1)),
        lambda c: line_traversal(c, n_points=1),
        lambda c: line_traversal(c[:, :1]),
        lambda c: line_traversal(c, start=(0.0, 0.0, 0.0)),
        lambda c: line_traversal(c, fixed=np.zeros(3)),
        lambda c: angular_traversal(c[0], radius=0.0),
        lambda c: angular_traversal(c[0], axes=(0, 9)),
        lambda c: angular_traversal(c[0, :1]),
        lambda c: interpolate(c[0], c[1, :3]),
        lambda c: interpolate(c[0], c[1], n_points=1.5),
    ],
)
def test_bad_input_raises_atlas_error(codes, call):
    with pytest.raises(AtlasError):
        call(codes)
