"""Paths through latent space built from the manifold's geometry, after the seed study's "specific directions".

Each builder takes a run's ``LatentCodes`` and returns a ``LatentPath`` whose points (n, D) the caller decodes.
All of them work for any latent dimension D >= 2; axes are latent coordinate indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.interpolate import make_smoothing_spline
from scipy.spatial import ConvexHull, QhullError, cKDTree
from scipy.stats import rankdata

from ..errors import AtlasError
from .latents import LatentCodes
from .neighbours import typical_spacing
from .traversals import ROBUST_PERCENTILES, check_axes, check_codes, check_n_points

MIN_SPLINE_KNOTS = 5  # make_smoothing_spline needs 5 points; fewer bins are joined by straight segments


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


def bounding_planes(latents: LatentCodes, fixed_axis: int = 0, n_points: int = 10,
                    plane_axes: tuple[int, int] | None = None) -> tuple[LatentPath, LatentPath]:
    """Walks along the planes that bound the manifold from above and from below, ``fixed_axis`` held constant.

    In the projection on ``plane_axes`` (u, v) (default: the first two axes other than ``fixed_axis``, v the
    "vertical" one), the upper and lower edges of the codes' 2-D convex hull (``hull_envelopes``) bound every
    code from above and from below. Each is sampled at ``n_points`` even steps of u across the codes' 2nd..98th
    percentile of u, the other coordinates at the codes' median. Hull edges rather than one straight line: a line
    that bounds every code touches the manifold at one point only, while the hull edge stays on its boundary.
    ``extras`` holds the hull's corners along the edge and a least-squares line through the samples.
    Returns (upper, lower).
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
    median = np.median(codes, axis=0)  # (D,)
    along = np.linspace(*np.percentile(codes[:, u], ROBUST_PERCENTILES), n_points)  # (n,)
    hull = planar_hull(codes[:, [u, v]])
    corners = hull.points[hull.vertices]  # (k, 2)
    corners = corners[np.argsort(corners[:, 0], kind="stable")]
    edges = hull_envelopes(hull, np.r_[along, corners[:, 0]])
    paths = []
    for side, edge in zip(("upper", "lower"), edges):
        points = np.repeat(median[None, :], n_points, axis=0)  # (n, D)
        points[:, u] = along
        points[:, v] = edge[:n_points]
        chain = corners[np.isclose(corners[:, 1], edge[n_points:], rtol=0, atol=1e-9 * (1 + np.abs(edge).max()))]
        slope, intercept = np.polyfit(along, points[:, v], 1)
        paths.append(LatentPath(
            name=f"bounding_{side}",
            points=points,
            description=(f"The {side} edge of the codes' convex hull in the plane of latent axes {u} (across) and "
                         f"{v} (up), latent axis {fixed_axis} held at the codes' median."),
            extras={"axes": (u, v), "fixed_axis": fixed_axis, "fixed_value": float(median[fixed_axis]),
                    "hull_chain": chain, "line_slope": float(slope), "line_intercept": float(intercept)},
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


def _bezier(start: np.ndarray, control: np.ndarray, end: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Quadratic Bezier points at ``t`` (n,): (n, D) for one control point (D,), (C, n, D) for controls (C, 1, D)."""
    t = t[:, None]  # (n, 1)
    return (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end


def _bulge_directions(codes: np.ndarray, chord: np.ndarray, n_directions: int) -> np.ndarray:
    """Unit directions orthogonal to ``chord``, in the plane where the codes spread most across it: (k, D)."""
    along = chord / np.linalg.norm(chord)
    across = codes - codes.mean(axis=0)
    across -= np.outer(across @ along, along)  # (N, D) orthogonal to the chord
    basis = np.linalg.svd(across, full_matrices=False)[2][: min(2, codes.shape[1] - 1)]  # (b, D)
    if len(basis) == 1:
        return np.stack([basis[0], -basis[0]])
    angles = np.linspace(0, 2 * np.pi, n_directions, endpoint=False)
    return np.cos(angles)[:, None] * basis[0] + np.sin(angles)[:, None] * basis[1]


def empty_region_traversal(latents: LatentCodes, n_points: int = 12, tail_fraction: float = 0.02,
                           n_directions: int = 16, n_bulges: int = 9) -> LatentPath:
    """From the manifold's var_x-heavy tail to its var_y-heavy tail through the emptiest space between them.

    The two tails are the medoids of the codes with the lowest and the highest ``tail_fraction`` of
    var_x - var_y. Candidate paths are quadratic Bezier curves between them whose control point lies off the
    chord's midpoint by 0..|chord| in ``n_directions`` directions orthogonal to the chord (in the plane where the
    codes spread most); among those that stay inside the codes' bounding box, the one with the largest mean
    nearest-code distance wins (the straight chord is a candidate). ``extras`` records the nearest-code distance
    along the path, along the straight chord, and the codes' typical spacing for comparison.
    """
    codes = check_codes(latents.codes)
    n_points = check_n_points(n_points)
    if not 0 < tail_fraction < 0.5:
        raise AtlasError(f"tail_fraction must be in (0, 0.5), got {tail_fraction!r}")
    var_diff = latents.factor("var_diff")
    low, high = np.quantile(var_diff, [tail_fraction, 1 - tail_fraction])
    tails = []
    for members in (np.flatnonzero(var_diff <= low), np.flatnonzero(var_diff >= high)):
        tails.append(members[np.argmin(np.linalg.norm(codes[members] - codes[members].mean(axis=0), axis=1))])
    start, end = codes[tails[1]], codes[tails[0]]  # var_x-heavy tail first, as in the seed's left-to-right walk
    chord = end - start
    if not np.linalg.norm(chord) > 0:
        raise AtlasError("the two tails of the manifold share one code; there is no region between them to cross")
    tree = cKDTree(codes)
    box_low, box_high = codes.min(axis=0), codes.max(axis=0)
    slack = 1e-9 * (box_high - box_low).max()
    bulges = np.linspace(0.0, np.linalg.norm(chord), n_bulges)
    directions = _bulge_directions(codes, chord, n_directions)  # (k, D)
    offsets = bulges[:, None, None] * directions[None]  # (n_bulges, k, D)
    controls = ((start + end) / 2 + offsets).reshape(-1, 1, codes.shape[1])  # (C, 1, D)
    curves = _bezier(start, controls, end, np.linspace(0.0, 1.0, 33))  # (C, 33, D)
    inside = np.all((curves >= box_low - slack) & (curves <= box_high + slack), axis=(1, 2))  # (C,)
    scores = tree.query(curves.reshape(-1, codes.shape[1]))[0].reshape(len(curves), -1).mean(axis=1)  # (C,)
    best_control = controls[np.argmax(np.where(inside, scores, -np.inf)), 0]  # the chord (bulge 0) is always inside
    t = np.linspace(0.0, 1.0, n_points)
    points = _bezier(start, best_control, end, t)
    return LatentPath(
        name="empty_region",
        points=points,
        description=("A quadratic Bezier curve between the medoids of the two var_x - var_y tails, bent to pass "
                     "as far from every code as the codes' bounding box allows."),
        extras={"tail_indices": np.asarray(tails[::-1]), "control_point": best_control,
                "nearest_code_distance": tree.query(points)[0],
                "chord_nearest_code_distance": tree.query(np.linspace(start, end, n_points))[0],
                "typical_spacing": typical_spacing(codes)},
    )
