"""Simple walks through latent space: lines and arcs in a plane of two axes, interpolation, arithmetic.

Every function returns latent points (n, D) for ``latent_atlas.models.inference.decode``.
"""

from __future__ import annotations

import numpy as np

from ..errors import AtlasError
from .neighbours import as_codes

ROBUST_PERCENTILES = (2.0, 98.0)


def check_n_points(n_points: int) -> int:
    if int(n_points) != n_points or n_points < 2:
        raise AtlasError(f"n_points must be an integer >= 2, got {n_points!r}")
    return int(n_points)


def check_codes(codes: np.ndarray, name: str = "codes") -> np.ndarray:
    """Codes for the traversals and paths: a non-empty (N, D) array with at least the 2 axes of a plane."""
    return as_codes(codes, name, min_dim=2)


def check_axes(axes, latent_dim: int, count: int = 2) -> tuple[int, ...]:
    axes = tuple(int(a) for a in axes)
    if len(axes) != count or len(set(axes)) != count or not all(0 <= a < latent_dim for a in axes):
        raise AtlasError(f"axes must be {count} distinct latent axes in 0..{latent_dim - 1}, got {axes}")
    return axes


def _point(value, size: int, name: str) -> np.ndarray:
    point = np.asarray(value, dtype=np.float64)
    if point.shape != (size,):
        raise AtlasError(f"{name} must have shape ({size},), got {point.shape}")
    return point


def line_traversal(codes: np.ndarray, axes=(0, 1), start=None, end=None, n_points: int = 10,
                   fixed=None) -> np.ndarray:
    """A straight line in the plane of ``axes``; the other coordinates stay at ``fixed`` (default: the codes' median).

    ``start``/``end`` are points (a, b) in that plane; by default the line crosses the codes' 2nd..98th percentile
    along the first axis at the median of the second.
    """
    codes = check_codes(codes)
    n_points = check_n_points(n_points)
    first, second = check_axes(axes, codes.shape[1])
    median = np.median(codes, axis=0)  # (D,)
    low, high = np.percentile(codes[:, first], ROBUST_PERCENTILES)
    start = _point((low, median[second]) if start is None else start, 2, "start")
    end = _point((high, median[second]) if end is None else end, 2, "end")
    base = median if fixed is None else _point(fixed, codes.shape[1], "fixed")
    points = np.repeat(base[None, :], n_points, axis=0)  # (n, D)
    points[:, [first, second]] = np.linspace(start, end, n_points)
    return points


def angular_traversal(center, axes=(0, 2), radius: float = 1.0, start_angle: float = 0.0,
                      end_angle: float = 2 * np.pi, n_points: int = 12) -> np.ndarray:
    """Points on an arc of ``radius`` around ``center`` (D,) in the plane of ``axes``, angles measured from the first.

    A full turn leaves out its last angle so that no point repeats.
    """
    center = np.asarray(center, dtype=np.float64)
    if center.ndim != 1 or center.size < 2:
        raise AtlasError(f"center must be a (D,) point with D >= 2, got shape {center.shape}")
    n_points = check_n_points(n_points)
    first, second = check_axes(axes, center.size)
    if not radius > 0:
        raise AtlasError(f"radius must be positive, got {radius!r}")
    full_turn = np.isclose(abs(end_angle - start_angle), 2 * np.pi)
    angles = np.linspace(start_angle, end_angle, n_points, endpoint=not full_turn)  # (n,)
    points = np.repeat(center[None, :], n_points, axis=0)  # (n, D)
    points[:, first] += radius * np.cos(angles)
    points[:, second] += radius * np.sin(angles)
    return points


def interpolate(code_a, code_b, n_points: int = 10) -> np.ndarray:
    """The straight segment from ``code_a`` to ``code_b``, both endpoints included: (n, D)."""
    code_a = np.asarray(code_a, dtype=np.float64)
    code_b = _point(code_b, code_a.size, "code_b")
    if code_a.ndim != 1:
        raise AtlasError(f"code_a must be a (D,) point, got shape {code_a.shape}")
    return np.linspace(code_a, code_b, check_n_points(n_points))


def latent_arithmetic(a, b, c) -> np.ndarray:
    """``a + b - c`` (the "a is to c as ? is to b" analogy), for single codes or matching batches."""
    a, b, c = (np.asarray(v, dtype=np.float64) for v in (a, b, c))
    if not a.shape == b.shape == c.shape:
        raise AtlasError(f"latent arithmetic needs codes of one shape, got {a.shape}, {b.shape}, {c.shape}")
    return a + b - c


def polyline_length(points) -> float:
    """Total length of the polyline through (n, D) points, in latent units."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or len(points) < 2:
        raise AtlasError(f"a path needs (n, D) points with n >= 2, got shape {points.shape}")
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def random_unit_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """(n, dim) directions uniform on the unit sphere (normalised standard normal draws)."""
    if int(n) != n or n < 1 or int(dim) != dim or dim < 1:
        raise AtlasError(f"need n >= 1 directions in dim >= 1 dimensions, got n={n!r}, dim={dim!r}")
    vectors = rng.standard_normal((int(n), int(dim)))  # (n, dim)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    while not np.all(norms > 0):  # a zero draw has probability 0; redraw it rather than divide by it
        vectors[norms[:, 0] == 0] = rng.standard_normal((int((norms == 0).sum()), int(dim)))
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / norms
