"""Paths through latent space built from the manifold's geometry, after the seed study's "specific directions".

Each builder takes a run's ``LatentCodes`` and returns a ``LatentPath`` whose points (n, D) the caller decodes.
All of them work for any latent dimension D >= 2; axes are latent coordinate indices. :func:`tail_traversals`
returns a ``PathSet`` of many paths (P, n, D) built by one rule for every model.

Paths are judged by what they should keep fixed: the caller decodes a path and its null paths (same start and
latent length, random directions: :func:`null_paths_like`; the same shape turned at random:
:func:`rotated_null_paths`; or aimed at codes that far away: :func:`code_directed_null_paths`), reads the
factors with the oracle, and
:func:`compare_with_null` places the path's drift of each fixed quantity (:data:`PATH_FACTORS`) and its change
of the intended one among the null paths'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.interpolate import make_smoothing_spline
from scipy.spatial import ConvexHull, QhullError, cKDTree
from scipy.stats import bootstrap, ortho_group, rankdata

from ..errors import AtlasError
from .holes import valid_fraction
from .latents import LatentCodes
from .neighbours import as_codes, typical_spacing
from .traversals import (
    ROBUST_PERCENTILES,
    check_axes,
    check_codes,
    check_n_points,
    polyline_length,
    random_unit_vectors,
)

MIN_SPLINE_KNOTS = 5  # make_smoothing_spline needs 5 points; fewer bins are joined by straight segments
SLAB_FRACTION = 0.2  # bounding planes: the share of codes nearest the fixed coordinate that shapes the hull
NULL_PATHS = 100
MIN_VALID_NULL = 20  # fewer null paths valid at every point than this: no valid-only comparison
TAIL_PATHS = 32
TAIL_POINTS = 21
TAIL_FRACTION = 0.05
TAIL_BEND = 0.0


@dataclass(frozen=True, eq=False)
class LatentPath:
    name: str
    points: np.ndarray  # (n, D) latent points to decode, in path order
    description: str  # one sentence: how it was built
    extras: dict = field(default_factory=dict)  # what is worth plotting; "connected": False = points, not a line


def factor_association(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of each latent axis with ``values``: (D,), 0 for a constant axis."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) != len(values):
        raise AtlasError(f"codes {codes.shape} and factor values {np.shape(values)} do not match row for row")
    ranks = rankdata(codes, axis=0)  # (N, D)
    ranks -= ranks.mean(axis=0)
    target = rankdata(values) - (len(values) + 1) / 2  # (N,)
    norms = np.linalg.norm(ranks, axis=0) * np.linalg.norm(target)  # (D,)
    return np.divide(target @ ranks, norms, out=np.zeros(ranks.shape[1]), where=norms > 0)


def factor_axis(latents: LatentCodes, name: str) -> int:
    """The latent axis whose coordinate is most associated (largest |Spearman|) with factor ``name``."""
    return int(np.argmax(np.abs(factor_association(latents.codes, latents.factor(name)))))


def correlation_axis(latents: LatentCodes) -> int:
    """The latent axis that carries the correlation rho."""
    return factor_axis(latents, "rho")


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else vector


def _smooth_curve(heights: np.ndarray, values: np.ndarray, at: np.ndarray, smoothing: float | None) -> np.ndarray:
    """A smoothing spline values(heights) evaluated at ``at`` (GCV picks the smoothing when it is None)."""
    if len(heights) < MIN_SPLINE_KNOTS:
        return np.interp(at, heights, values)
    return make_smoothing_spline(heights, values, lam=smoothing)(at)


def outer_strip_codes(codes: np.ndarray, strip: np.ndarray, axis: int, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the strip's outermost code in each non-empty slice along ``axis`` (ascending), and the slice edges.

    The strip crosses each slice from one side of the manifold to the other, so it touches the hull at two ends.
    To follow one side consistently, the outward direction is the mean over slices of the unit vector from the
    slice's centroid (all its codes, in the other coordinates) to its farthest strip code; each slice gives the
    strip code that reaches farthest in that direction (the strip's support point on the hull).
    """
    others = [j for j in range(codes.shape[1]) if j != axis]
    heights = codes[:, axis]  # (N,)
    edges = np.linspace(heights[strip].min(), heights[strip].max(), n_bins + 1)
    if edges[0] == edges[-1]:
        raise AtlasError(f"the isovariance codes all sit at one value of latent axis {axis}; choose another axis")
    in_range = (heights >= edges[0]) & (heights <= edges[-1])
    slice_of = np.clip(np.searchsorted(edges, heights, side="right") - 1, 0, n_bins - 1)  # (N,)
    slices = []  # (strip codes of the slice, their offsets from the slice's centroid in the other coordinates)
    for index in range(n_bins):
        members = in_range & (slice_of == index)
        candidates = np.flatnonzero(members & strip)
        if candidates.size:
            slices.append((candidates, codes[candidates][:, others] - codes[members][:, others].mean(axis=0)))
    if len(slices) < 2:
        raise AtlasError("the isovariance strip fills fewer than 2 bins; raise the tolerance or lower n_bins")
    farthest = [_unit(offsets[np.argmax(np.linalg.norm(offsets, axis=1))]) for _, offsets in slices]
    outward = np.mean(farthest, axis=0)
    if not np.linalg.norm(outward) > 1e-9:
        outward = farthest[0]
    return np.asarray([candidates[np.argmax(offsets @ outward)] for candidates, offsets in slices]), edges


def isovariance_path(latents: LatentCodes, tolerance: float = 0.3, n_bins: int = 12, n_points: int = 12,
                     axis: int | None = None, smoothing: float | None = None) -> LatentPath:
    """The seed's "convex hull along the isovariance strip", from one end of the correlation axis to the other.

    Codes with |var_x - var_y| <= tolerance form the strip. Along ``axis`` (default: ``correlation_axis``) the
    strip's range is cut into ``n_bins`` equal slices and each non-empty slice gives one knot, the strip's
    outermost code there (``outer_strip_codes``). Smoothing splines (scipy's ``make_smoothing_spline``, its
    ``lam`` chosen by GCV unless ``smoothing`` is given; straight segments below 5 knots) give every other
    coordinate as a function of ``axis``; the path samples them at ``n_points`` even steps along ``axis`` between
    the end knots, in the direction in which rho grows. ``extras["knots"]`` are in ascending order of ``axis``.
    """
    codes = check_codes(latents.codes)
    n_points = check_n_points(n_points)
    if int(n_bins) != n_bins or n_bins < 2:
        raise AtlasError(f"n_bins must be an integer >= 2, got {n_bins!r}")
    rho_association = factor_association(codes, latents.factor("rho"))  # (D,)
    axis = int(np.argmax(np.abs(rho_association))) if axis is None else check_axes((axis,), codes.shape[1], 1)[0]
    strip = np.abs(latents.factor("var_diff")) <= tolerance  # (N,)
    if strip.sum() < 2:
        raise AtlasError(f"only {strip.sum()} codes have |var_x - var_y| <= {tolerance}; raise the tolerance")
    picks, edges = outer_strip_codes(codes, strip, axis, int(n_bins))
    knots = codes[picks]  # (m, D)
    along = np.linspace(knots[0, axis], knots[-1, axis], n_points)  # (n,)
    points = np.empty((n_points, codes.shape[1]))
    for j in range(codes.shape[1]):
        points[:, j] = along if j == axis else _smooth_curve(knots[:, axis], knots[:, j], along, smoothing)
    if rho_association[axis] < 0:
        points = points[::-1]
    return LatentPath(
        name="isovariance",
        points=points,
        description=(f"The outermost code with |var_x - var_y| <= {tolerance:g} in each of {len(picks)} slices along "
                     f"latent axis {axis}, joined by smoothing splines of the other coordinates against that axis."),
        extras={"axis": axis, "tolerance": float(tolerance), "n_strip": int(strip.sum()), "bin_edges": edges,
                "knot_indices": picks, "knots": knots, "knot_factors": latents.factors[picks],
                "factor_names": latents.factor_names},
    )


def planar_hull(points_2d: np.ndarray) -> ConvexHull:
    try:
        return ConvexHull(points_2d)
    except QhullError:
        raise AtlasError("the codes are collinear in this plane, so they have no 2-D convex hull") from None


def hull_envelopes(hull: ConvexHull, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower boundary of a 2-D convex hull at abscissas ``at`` (n,), clipped to the hull's extent.

    From the hull's edge equations: every point satisfies n_u u + n_v v + offset <= 0 for each edge, so the
    upper boundary is the tightest bound of the edges facing up (n_v > 0), the lower one of those facing down.
    """
    normal_u, normal_v, offset = hull.equations.T  # (F,) each, unit outward normals
    corners = hull.points[hull.vertices]  # (k, 2)
    at = np.clip(np.asarray(at, dtype=np.float64), corners[:, 0].min(), corners[:, 0].max())[:, None]  # (n, 1)
    facing_up, facing_down = normal_v > 1e-9, normal_v < -1e-9
    upper = ((-offset[facing_up] - normal_u[facing_up] * at) / normal_v[facing_up]).min(axis=1)
    lower = ((-offset[facing_down] - normal_u[facing_down] * at) / normal_v[facing_down]).max(axis=1)
    return upper, lower


def slab_codes(codes: np.ndarray, axis: int, fraction: float = SLAB_FRACTION,
               width: float | None = None) -> tuple[np.ndarray, float, float]:
    """Indices of the codes with |z_axis - median| <= width, the width and the median.

    By default ``width`` is the ``fraction`` quantile of |z_axis - median| over all codes, so the slab keeps
    about that share of the codes (ties at the edge may add a few); a given ``width`` (latent units) replaces it.
    """
    codes = check_codes(codes)
    values = codes[:, axis]
    centre = float(np.median(values))
    offsets = np.abs(values - centre)  # (N,)
    if width is None:
        if not 0 < fraction <= 1:
            raise AtlasError(f"slab fraction must lie in (0, 1], got {fraction!r}")
        width = float(np.quantile(offsets, fraction))
    elif not width >= 0:
        raise AtlasError(f"slab width must be >= 0, got {width!r}")
    return np.flatnonzero(offsets <= width), float(width), centre


def bounding_planes(latents: LatentCodes, fixed_axis: int = 0, n_points: int = 10,
                    plane_axes: tuple[int, int] | None = None, slab_fraction: float = SLAB_FRACTION,
                    slab_width: float | None = None) -> tuple[LatentPath, LatentPath]:
    """Walks along the planes that bound the manifold from above and from below, ``fixed_axis`` held constant.

    The codes NEAR the fixed coordinate shape the hull: those in the slab |z_fixed - median| <= width
    (:func:`slab_codes`; by default the width keeps the ``slab_fraction`` (0.2) of codes nearest the median), not
    all codes projected, which would bound the projection of the whole manifold rather than its cross-section.
    In the plane of ``plane_axes`` (u, v) (default: the first two axes other than ``fixed_axis``, v the
    "vertical" one), the upper and lower edges of the slab codes' 2-D convex hull (``hull_envelopes``) bound them
    from above and from below. Each is sampled at ``n_points`` even steps of u across the slab codes' 2nd..98th
    percentile of u; the fixed coordinate sits at the median of all codes, any other coordinate at the slab
    codes' median. Hull edges rather than one straight line: a line that bounds every code touches the manifold
    at one point only, while the hull edge stays on its boundary. ``extras`` holds the slab's width and size,
    the hull's corners along the edge and a least-squares line through the samples. Returns (upper, lower).
    """
    codes = check_codes(latents.codes)
    n_points = check_n_points(n_points)
    if codes.shape[1] < 3:
        raise AtlasError("bounding planes need a latent space with at least 3 axes (one fixed, two in the plane)")
    fixed_axis = check_axes((fixed_axis,), codes.shape[1], count=1)[0]
    if plane_axes is None:
        plane_axes = tuple(a for a in range(codes.shape[1]) if a != fixed_axis)[:2]
    if len(plane_axes) != 2 or fixed_axis in plane_axes:
        raise AtlasError(f"plane_axes must be two axes other than the fixed axis {fixed_axis}, got {plane_axes}")
    u, v = check_axes(plane_axes, codes.shape[1])
    members, width, centre = slab_codes(codes, fixed_axis, slab_fraction, slab_width)
    if len(members) < 3:
        raise AtlasError(f"the slab around latent axis {fixed_axis} keeps {len(members)} codes; widen it")
    slab = codes[members]  # (S, D)
    base = np.median(slab, axis=0)  # (D,)
    base[fixed_axis] = centre
    along = np.linspace(*np.percentile(slab[:, u], ROBUST_PERCENTILES), n_points)  # (n,)
    hull = planar_hull(slab[:, [u, v]])
    corners = hull.points[hull.vertices]  # (k, 2)
    corners = corners[np.argsort(corners[:, 0], kind="stable")]
    edges = hull_envelopes(hull, np.r_[along, corners[:, 0]])
    paths = []
    for side, edge in zip(("upper", "lower"), edges):
        points = np.repeat(base[None, :], n_points, axis=0)  # (n, D)
        points[:, u] = along
        points[:, v] = edge[:n_points]
        chain = corners[np.isclose(corners[:, 1], edge[n_points:], rtol=0, atol=1e-9 * (1 + np.abs(edge).max()))]
        slope, intercept = np.polyfit(along, points[:, v], 1)
        paths.append(LatentPath(
            name=f"bounding_{side}",
            points=points,
            description=(f"The {side} edge of the convex hull, in the plane of latent axes {u} (across) and {v} "
                         f"(up), of the {len(members)} codes within {width:.3g} of the median of latent axis "
                         f"{fixed_axis}, which is held there."),
            extras={"axes": (u, v), "fixed_axis": fixed_axis, "fixed_value": centre, "slab_width": width,
                    "slab_fraction": None if slab_width is not None else float(slab_fraction),
                    "n_slab": int(len(members)), "n_codes": int(len(codes)), "hull_chain": chain,
                    "line_slope": float(slope), "line_intercept": float(intercept)},
        ))
    return paths[0], paths[1]


def hull_perturbations(latents: LatentCodes, n_points: int = 12, scale: float = 0.1,
                       rng: np.random.Generator | int = 0, axes: tuple[int, ...] | None = None) -> LatentPath:
    """Random perturbations of codes on the convex hull of the manifold (the seed's AE "Convex Hull" section).

    The hull is taken on ``axes`` (default: all axes when D <= 3, else the first three); ``n_points`` of its
    vertices (distinct while there are enough) are ordered along the correlation axis and each coordinate j moves
    by a uniform offset in [-scale, scale] times the codes' standard deviation along j.
    """
    codes = check_codes(latents.codes)
    n_points = check_n_points(n_points)
    if not scale >= 0:
        raise AtlasError(f"scale must be >= 0, got {scale!r}")
    rng = np.random.default_rng(rng)
    if axes is None:
        axes = tuple(range(min(codes.shape[1], 3)))
    axes = check_axes(axes, codes.shape[1], count=len(tuple(axes)))
    try:
        vertices = ConvexHull(codes[:, axes]).vertices
    except QhullError:
        raise AtlasError(f"the codes are degenerate on axes {axes}, so they have no convex hull") from None
    chosen = rng.choice(vertices, size=n_points, replace=n_points > len(vertices))
    chosen = chosen[np.argsort(codes[chosen, correlation_axis(latents)], kind="stable")]
    spread = codes.std(axis=0)  # (D,)
    offsets = rng.uniform(-1.0, 1.0, size=(n_points, codes.shape[1])) * scale * spread  # (n, D)
    return LatentPath(
        name="hull_perturbations",
        points=codes[chosen] + offsets,
        description=(f"{n_points} convex-hull vertices of the codes (axes {axes}), each moved by a uniform random "
                     f"offset of at most {scale:g} standard deviations per axis."),
        extras={"connected": False, "vertex_indices": chosen, "base": codes[chosen], "offsets": offsets,
                "spread": spread, "scale": float(scale), "axes": axes},
    )


# -- the tail traversal: many paths, one construction for every model ----------------------------------


@dataclass(frozen=True, eq=False)
class PathSet:
    name: str
    points: np.ndarray  # (P, n, D): P paths of n latent points each
    nearest_code_distance: np.ndarray  # (P, n) distance of each point to the nearest code
    description: str
    extras: dict = field(default_factory=dict)


def tail_indices(var_diff: np.ndarray, tail_fraction: float = TAIL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the codes in the var_x-heavy tail (the top ``tail_fraction`` of var_x - var_y) and in the
    var_y-heavy tail (the bottom ``tail_fraction``)."""
    var_diff = np.asarray(var_diff, dtype=np.float64).ravel()
    if not 0 < tail_fraction < 0.5:
        raise AtlasError(f"tail_fraction must be in (0, 0.5), got {tail_fraction!r}")
    low, high = np.quantile(var_diff, [tail_fraction, 1 - tail_fraction])
    return np.flatnonzero(var_diff >= high), np.flatnonzero(var_diff <= low)


def tail_traversals(codes: np.ndarray, var_diff: np.ndarray, rng: np.random.Generator, n_paths: int = TAIL_PATHS,
                    n_points: int = TAIL_POINTS, tail_fraction: float = TAIL_FRACTION,
                    bend: float = TAIL_BEND) -> PathSet:
    """Many paths from the manifold's var_x-heavy tail to its var_y-heavy tail, built by one rule for any model.

    Each of ``n_paths`` paths joins a code drawn (by ``rng``, with replacement only when a tail is smaller than
    ``n_paths``) from the top ``tail_fraction`` of var_x - var_y to one drawn from the bottom ``tail_fraction``
    (:func:`tail_indices`). The path is a quadratic Bezier curve whose control point is the chord's midpoint
    moved ``bend`` of the way towards the centroid of all codes: with 0 <= bend <= 1 the control point is a convex
    combination of two points of the hull, so every path lies inside the codes' convex hull (inside the triangle
    start, control, end), and the rule uses nothing of a model beyond its codes: no search for empty space
    that would build a different kind of path for each model. bend 0 (default) gives the straight chord, the rule
    with no free choice; 1 a curve whose middle passes halfway between the chord's midpoint and the centroid
    (on the codes of a VAE and an AE of the default data, bending towards the centroid brought the paths no
    farther from the codes). How empty the crossed space is comes back as ``nearest_code_distance``; validity as
    a function of that distance is :func:`holes.distance_binned_points`'s job. The rule draws the same image
    pairs for every model when called with the same ``var_diff`` and seed, so paths are paired across models
    (compare per-path valid fractions with a paired test). ``n_points`` per path, evenly spaced in the curve
    parameter.
    """
    codes = check_codes(codes)
    n_points = check_n_points(n_points)
    var_diff = np.asarray(var_diff, dtype=np.float64).ravel()
    if var_diff.shape != (len(codes),):
        raise AtlasError(f"var_diff must have one value per code ({len(codes)}), got shape {var_diff.shape}")
    if int(n_paths) != n_paths or n_paths < 1:
        raise AtlasError(f"n_paths must be a positive integer, got {n_paths!r}")
    if not 0 <= bend <= 1:
        raise AtlasError(f"bend must lie in [0, 1] (0: straight chord, 1: control point at the centroid), got {bend!r}")
    x_heavy, y_heavy = tail_indices(var_diff, tail_fraction)
    starts = rng.choice(x_heavy, size=int(n_paths), replace=int(n_paths) > len(x_heavy))  # (P,)
    ends = rng.choice(y_heavy, size=int(n_paths), replace=int(n_paths) > len(y_heavy))  # (P,)
    start, end = codes[starts], codes[ends]  # (P, D)
    midpoint = (start + end) / 2
    controls = midpoint + bend * (codes.mean(axis=0) - midpoint)  # (P, D)
    t = np.linspace(0.0, 1.0, n_points)[None, :, None]  # (1, n, 1)
    points = ((1 - t) ** 2 * start[:, None] + 2 * (1 - t) * t * controls[:, None]
              + t**2 * end[:, None])  # (P, n, D)
    tree = cKDTree(codes)
    distance = tree.query(points.reshape(-1, codes.shape[1]))[0].reshape(points.shape[:2])  # (P, n)
    chords = np.linspace(start, end, n_points, axis=1)  # (P, n, D)
    return PathSet(
        name="tail_traversals",
        points=points,
        nearest_code_distance=distance,
        description=(f"{int(n_paths)} quadratic Bezier curves, each from a random code among the {tail_fraction:.0%} "
                     f"with the largest var_x - var_y to one among the {tail_fraction:.0%} with the smallest, "
                     f"bent {bend:g} of the way from the chord's midpoint towards the codes' centroid."),
        extras={"start_indices": starts, "end_indices": ends, "control_points": controls, "bend": float(bend),
                "tail_fraction": float(tail_fraction), "n_tail": (int(len(x_heavy)), int(len(y_heavy))),
                "chord_nearest_code_distance": tree.query(chords.reshape(-1, codes.shape[1]))[0].reshape(
                    points.shape[:2]),
                "typical_spacing": typical_spacing(codes)},
    )


def path_validity_summary(valid: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000,
                          rng: np.random.Generator | int = 0) -> dict[str, Any]:
    """Validity over a set of paths, (P, n) booleans, with the path as the unit of replication.

    ``mean_path_fraction``: the mean over paths of each path's valid fraction, with a percentile bootstrap
    interval over paths (``scipy.stats.bootstrap``, seeded by ``rng``; points on one path are not independent,
    so a Wilson interval over all P x n points would be too narrow). ``all_valid_paths``: the share of paths
    valid at every point (Wilson). ``pointwise``: the valid fraction across paths at each position along them.
    ``pooled``: all points together, for reference only.
    """
    valid = np.asarray(valid)
    if valid.dtype != bool or valid.ndim != 2 or valid.size == 0:
        raise AtlasError(f"valid must be a (P, n) boolean array, got {valid.dtype} {valid.shape}")
    per_path = valid.mean(axis=1)  # (P,)
    mean = float(per_path.mean())
    if len(per_path) < 2 or np.all(per_path == per_path[0]):
        low = high = mean
    else:
        interval = bootstrap((per_path,), np.mean, n_resamples=n_resamples, confidence_level=confidence,
                             method="percentile", rng=np.random.default_rng(rng)).confidence_interval
        low, high = float(interval.low), float(interval.high)
    return {
        "n_paths": int(valid.shape[0]),
        "n_points": int(valid.shape[1]),
        "mean_path_fraction": {"fraction": mean, "low": low, "high": high, "confidence": confidence,
                               "interval": "percentile bootstrap over paths"},
        "per_path_fraction": per_path.tolist(),
        "all_valid_paths": valid_fraction(valid.all(axis=1), confidence),
        "pointwise": valid.mean(axis=0).tolist(),
        "pooled": valid_fraction(valid, confidence),
    }


# -- paths judged by what they keep fixed ----------------------------------------------------------------

FACTOR_QUANTITIES = {
    "log_var_x": "log var_x",
    "log_var_y": "log var_y",
    "log_var_ratio": "log(var_x / var_y): var_x - var_y in log-variance units, 0 where the variances are equal",
    "log_var_sum": "log(var_x + var_y)",
    "rho": "rho (absolute)",
    "var_diff": "var_x - var_y (variance units)",
    "var_sum": "var_x + var_y (variance units)",
    "log_df": "log df",
}

# What each path should keep fixed and what it should change, read from the seed. Isovariance: the path runs
# along var_x = var_y, so log(var_x / var_y) and the size log(var_x + var_y) should hold while rho sweeps.
# Upper bounding plane: "the variance of the first component remains fixed as well as the correlation while
# the variance of the second component decreases". Lower bounding plane: "variance of the second component
# increases ... while maintaining the negative correlation fixed"; the seed does not say var_x stays fixed
# there, so only rho is held to account (var_x's drift can still be asked for).
PATH_FACTORS = {
    "isovariance": {"fixed": ("log_var_ratio", "log_var_sum"), "intended": ("rho",)},
    "bounding_upper": {"fixed": ("log_var_x", "rho"), "intended": ("log_var_y",)},
    "bounding_lower": {"fixed": ("rho",), "intended": ("log_var_y",)},
}
DRIFT_MEASURES = ("range", "total_variation", "change")


def factor_quantity(factors: np.ndarray, factor_names: Sequence[str], name: str) -> np.ndarray:
    """One of :data:`FACTOR_QUANTITIES` from a factor table (..., K) whose last axis is ``factor_names``."""
    factors = np.asarray(factors, dtype=np.float64)
    names = list(factor_names)
    if factors.shape[-1] != len(names):
        raise AtlasError(f"factors have {factors.shape[-1]} columns but {len(names)} names {names}")

    def column(factor: str) -> np.ndarray:
        if factor not in names:
            raise AtlasError(f"quantity {name!r} needs factor {factor!r}, not among {names}")
        return factors[..., names.index(factor)]

    if name not in FACTOR_QUANTITIES:
        raise AtlasError(f"unknown quantity {name!r}; choose one of {', '.join(FACTOR_QUANTITIES)}")
    if name == "rho":
        return column("rho")
    if name == "var_diff":
        return column("var_x") - column("var_y")
    if name == "var_sum":
        return column("var_x") + column("var_y")
    values = {"log_var_x": lambda: column("var_x"), "log_var_y": lambda: column("var_y"),
              "log_var_ratio": lambda: column("var_x") / column("var_y"),
              "log_var_sum": lambda: column("var_x") + column("var_y"), "log_df": lambda: column("df")}[name]()
    if not np.all(values > 0):
        raise AtlasError(f"quantity {name!r} takes the log of a non-positive value")
    return np.log(values)


def drift(values: np.ndarray, measure: str = "range") -> np.ndarray:
    """How much a quantity moves along paths, over the last axis (..., n) -> (...): ``range`` (max - min),
    ``total_variation`` (sum of |steps|) or ``change`` (|last - first|)."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim < 1 or values.shape[-1] < 2 or not np.all(np.isfinite(values)):
        raise AtlasError(f"drift needs finite values along paths of >= 2 points, got shape {values.shape}")
    if measure == "range":
        return values.max(axis=-1) - values.min(axis=-1)
    if measure == "total_variation":
        return np.abs(np.diff(values, axis=-1)).sum(axis=-1)
    if measure == "change":
        return np.abs(values[..., -1] - values[..., 0])
    raise AtlasError(f"measure must be one of {', '.join(DRIFT_MEASURES)}, got {measure!r}")


def path_drift(factors: np.ndarray, factor_names: Sequence[str], quantities: Sequence[str],
               measure: str = "range") -> dict[str, Any]:
    """{quantity: drift} for recovered factors along one path (n, K) (floats) or many (P, n, K) (lists)."""
    out = {}
    for name in quantities:
        value = drift(factor_quantity(factors, factor_names, name), measure)
        out[name] = float(value) if np.ndim(value) == 0 else value.tolist()
    return out


def null_paths(start: np.ndarray, length: float, n_points: int, rng: np.random.Generator,
               n_paths: int = NULL_PATHS) -> np.ndarray:
    """(P, n, D) straight paths from ``start`` (D,) in uniformly random directions, each of latent ``length`` and
    ``n_points`` evenly spaced points (the first is ``start``): the null against which a path's drift is judged.
    Pass the path's first point, :func:`traversals.polyline_length` of it and its number of points."""
    start = np.asarray(start, dtype=np.float64)
    if start.ndim != 1 or start.size < 1 or not np.all(np.isfinite(start)):
        raise AtlasError(f"start must be a finite (D,) point, got shape {start.shape}")
    if not (np.isfinite(length) and length > 0):
        raise AtlasError(f"length must be positive, got {length!r}")
    n_points = check_n_points(n_points)
    directions = random_unit_vectors(n_paths, start.size, rng)  # (P, D)
    steps = np.linspace(0.0, float(length), n_points)  # (n,)
    return start + steps[None, :, None] * directions[:, None, :]


def code_directed_null_paths(start: np.ndarray, length: float, n_points: int, codes: np.ndarray,
                             rng: np.random.Generator, n_paths: int = NULL_PATHS,
                             tolerance: float = 0.1) -> np.ndarray:
    """(P, n, D) straight paths from ``start`` towards codes that lie ``length`` (within ``tolerance`` x length)
    from it, each ``length`` long with ``n_points`` evenly spaced points: like :func:`null_paths`, but aimed at
    the manifold, so that they end on it instead of leaving it (random directions from a point of a thin
    manifold point away from it). Target codes are drawn by ``rng``, with replacement only when fewer than
    ``n_paths`` qualify."""
    start = np.asarray(start, dtype=np.float64)
    codes = as_codes(codes)
    if start.shape != (codes.shape[1],) or not np.all(np.isfinite(start)):
        raise AtlasError(f"start must be a finite point of the codes' dimension {codes.shape[1]}, got {start.shape}")
    if not (np.isfinite(length) and length > 0 and 0 < tolerance < 1):
        raise AtlasError(f"need length > 0 and 0 < tolerance < 1, got {length!r} and {tolerance!r}")
    n_points = check_n_points(n_points)
    offsets = codes - start  # (N, D)
    distance = np.linalg.norm(offsets, axis=1)  # (N,)
    targets = np.flatnonzero(np.abs(distance - length) <= tolerance * length)
    if targets.size == 0:
        raise AtlasError(f"no code lies {length:.3g} (within {tolerance:.0%}) from the start; the path is longer "
                         f"than the manifold reaches from there")
    chosen = rng.choice(targets, size=int(n_paths), replace=int(n_paths) > targets.size)  # (P,)
    directions = offsets[chosen] / distance[chosen, None]  # (P, D)
    steps = np.linspace(0.0, float(length), n_points)  # (n,)
    return start + steps[None, :, None] * directions[:, None, :]


def null_paths_like(points: np.ndarray, rng: np.random.Generator, n_paths: int = NULL_PATHS) -> np.ndarray:
    """:func:`null_paths` for a given path (n, D): its first point, its polyline length, its number of points."""
    points = as_codes(points, "points", min_count=2)
    return null_paths(points[0], polyline_length(points), len(points), rng, n_paths)


def rotated_null_paths(points: np.ndarray, rng: np.random.Generator, n_paths: int = NULL_PATHS) -> np.ndarray:
    """(P, n, D) copies of a path (n, D) turned about its first point by uniformly random orthogonal matrices
    (``scipy.stats.ortho_group``): same start, length, spacing and curvature, random direction. A stricter null
    than :func:`null_paths` for curved paths, whose straight counterparts end farther from the start."""
    points = as_codes(points, "points", min_count=2, min_dim=2)
    if int(n_paths) != n_paths or n_paths < 1:
        raise AtlasError(f"n_paths must be a positive integer, got {n_paths!r}")
    rotations = ortho_group.rvs(points.shape[1], size=int(n_paths), random_state=rng)  # (P, D, D)
    rotations = rotations.reshape(int(n_paths), points.shape[1], points.shape[1])
    offsets = points - points[0]  # (n, D)
    return points[0] + np.einsum("pij,nj->pni", rotations, offsets)


def compare_with_null(path_factors: np.ndarray, null_factors: np.ndarray, factor_names: Sequence[str],
                      fixed: Sequence[str] = (), intended: Sequence[str] = (), measure: str = "range",
                      path_valid: np.ndarray | None = None, null_valid: np.ndarray | None = None,
                      min_valid_null: int = MIN_VALID_NULL) -> dict[str, Any]:
    """A path's recovered factors (n, K) against those of its null paths (P, n, K).

    For each ``fixed`` quantity: the path's drift (``measure``), the null's median and 5 / 95 % quantiles, the
    path's ``percentile`` among the null drifts (ties count half; low = the path keeps the quantity fixed
    better than random directions do) and ``p_value`` = (1 + #null <= path) / (P + 1), the Monte Carlo p of
    "no more fixed than a random direction". For each ``intended`` quantity the same with |last - first|
    (``change``) and ``p_value`` = (1 + #null >= path) / (P + 1): does the path change it more than random
    directions do.

    Factors recovered from an image that is not a heatmap mean little, and random directions soon leave the
    manifold. With the verdicts ``path_valid`` (n,) and ``null_valid`` (P, n), the result also gives the
    path's and the null's valid fractions and, under ``valid_only``, the same comparison against only the null
    paths valid at every point (None when fewer than ``min_valid_null`` are).
    """
    path_factors = np.asarray(path_factors, dtype=np.float64)
    null_factors = np.asarray(null_factors, dtype=np.float64)
    if path_factors.ndim != 2 or null_factors.ndim != 3 or null_factors.shape[1:] != path_factors.shape:
        raise AtlasError(f"need path factors (n, K) and null factors (P, n, K) of the same n and K, got "
                         f"{path_factors.shape} and {null_factors.shape}")
    for name, mask, shape in (("path_valid", path_valid, path_factors.shape[:1]),
                              ("null_valid", null_valid, null_factors.shape[:2])):
        if mask is not None and (np.asarray(mask).dtype != bool or np.shape(mask) != shape):
            raise AtlasError(f"{name} must be a boolean array of shape {shape}, got {np.shape(mask)}")

    def judged(name: str, how: str, smaller_is_better: bool, null_set: np.ndarray) -> dict[str, Any]:
        observed = float(drift(factor_quantity(path_factors, factor_names, name), how))
        null = drift(factor_quantity(null_set, factor_names, name), how)  # (P,)
        below, ties = float((null < observed).sum()), float((null == observed).sum())
        extreme = (null <= observed).sum() if smaller_is_better else (null >= observed).sum()
        low, median, high = np.quantile(null, [0.05, 0.5, 0.95])
        return {"path": observed, "null_median": float(median), "null_q05": float(low), "null_q95": float(high),
                "percentile": 100.0 * (below + 0.5 * ties) / len(null),
                "p_value": float((1 + extreme) / (len(null) + 1)), "measure": how}

    def against(null_set: np.ndarray) -> dict[str, Any]:
        return {"n_null": int(len(null_set)),
                "fixed": {name: judged(name, measure, True, null_set) for name in fixed},
                "intended": {name: judged(name, "change", False, null_set) for name in intended}}

    result = {**against(null_factors), "units": {name: FACTOR_QUANTITIES[name] for name in (*fixed, *intended)}}
    if path_valid is not None:
        result["path_valid_fraction"] = float(np.mean(path_valid))
    if null_valid is not None:
        whole = np.asarray(null_valid).all(axis=1)  # (P,)
        result["null_valid_fraction"] = float(np.mean(null_valid))
        result["n_null_valid_paths"] = int(whole.sum())
        result["valid_only"] = against(null_factors[whole]) if whole.sum() >= min_valid_null else None
    return result
