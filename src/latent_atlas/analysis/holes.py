"""Holes in latent space: where the codes are not, and how much of the prior N(0, I) falls there.

Two kinds of hole, as in the seed study and its background reading:

* empty regions *inside* the codes' convex hull, far from every code (the seed's "empty space" the
  AE decodes badly), found by :func:`empty_region_points`;
* regions the prior N(0, I) covers but the aggregate posterior q(z) = mean_i N(z; mu_i, sigma_i^2)
  does not (the "prior holes" that make sampling a VAE produce non-heatmaps), measured by
  :func:`prior_hole_stats`.

Validity as a function of the distance from the codes, the fair way to compare models, comes from
:func:`distance_binned_points` (hull points in bins of nearest-code distance, in units of each model's
median code spacing or, for the VAE, its posterior standard deviation) and :func:`distance_bin_summary`.

"Far" is always relative to the codes' own spacing: the ``quantile`` (0.99 by default) of the
distances from each code to its nearest other code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import ConvexHull, Delaunay, QhullError, cKDTree
from scipy.stats import binomtest
from threadpoolctl import threadpool_limits

from ..errors import AtlasError
from .neighbours import as_codes, code_spacing, distance_to_codes, spacing_threshold

HULL_MAX_DIM = 3
DISTANCE_BIN_EDGES = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)  # nearest-code distance bins, in units of the code scale
POINTS_PER_BIN = 200
MAX_CANDIDATES = 1_000_000
_CANDIDATE_BATCH = 20_000
_DENSITY_CHUNK = 512
LOG_2PI = float(np.log(2.0 * np.pi))


class HullSampler:
    """Uniform points in the convex hull of the codes, by rejection from the bounding box.

    ``fit(codes)`` triangulates the hull (``Delaunay`` on the ``ConvexHull`` vertices only: the same
    region with far fewer simplices); ``sample(n, rng)`` draws box candidates and keeps those for which
    ``find_simplex`` finds a simplex. Both run with OpenBLAS held to one thread: the triangulation's
    barycentric transforms are thousands of tiny LAPACK calls, which take seconds instead of
    milliseconds when a multi-threaded OpenBLAS shares a busy 2-core machine. With D > 3 the hull is
    that of the codes' projection on their first three principal axes, and the points are mapped back
    through the PCA (so they lie in the affine span of those axes). With D = 1 the hull is [min, max].
    """

    def fit(self, codes: np.ndarray) -> HullSampler:
        codes = as_codes(codes, min_count=2)
        self.dim_ = codes.shape[1]
        self.pca_ = None
        if self.dim_ > HULL_MAX_DIM:
            from sklearn.decomposition import PCA

            self.pca_ = PCA(n_components=HULL_MAX_DIM).fit(codes)
            codes = self.pca_.transform(codes)  # (N, 3)
        self.low_, self.high_ = codes.min(axis=0), codes.max(axis=0)
        self.triangulation_ = None
        if codes.shape[1] > 1:
            try:
                with threadpool_limits(1, user_api="blas"):
                    self.triangulation_ = Delaunay(codes[ConvexHull(codes).vertices])
                    _ = self.triangulation_.transform  # the barycentric transforms, computed here once
            except QhullError:
                raise AtlasError(
                    f"the codes span fewer than {codes.shape[1]} dimensions, so their convex hull has no volume"
                ) from None
        return self

    def contains(self, points: np.ndarray) -> np.ndarray:
        """(M,) bool: the (M, D) points lie in the hull (D > 3: their projection on the first three principal axes)."""
        points = as_codes(points, "points", min_count=0)
        if points.shape[1] != self.dim_:
            raise AtlasError(f"points have {points.shape[1]} coordinates but the hull {self.dim_}")
        projected = self.pca_.transform(points) if self.pca_ is not None else points  # (M, min(D, 3))
        if self.triangulation_ is None:
            return ((projected >= self.low_) & (projected <= self.high_)).all(axis=1)
        with threadpool_limits(1, user_api="blas"):
            return self.triangulation_.find_simplex(projected) >= 0

    def sample(self, n_candidates: int, rng: np.random.Generator) -> np.ndarray:
        """(M, D) uniform points in the hull, M <= n_candidates: the box candidates that fell inside."""
        candidates = rng.uniform(self.low_, self.high_, size=(n_candidates, len(self.low_)))  # (B, min(D, 3))
        if self.triangulation_ is not None:
            with threadpool_limits(1, user_api="blas"):
                candidates = candidates[self.triangulation_.find_simplex(candidates) >= 0]
        return self.pca_.inverse_transform(candidates) if self.pca_ is not None else candidates


def _check_quantile(quantile: float) -> None:
    if not 0.0 < quantile <= 1.0:
        raise AtlasError(f"distance_quantile must lie in (0, 1], got {quantile}")


def empty_volume_fraction(
    codes: np.ndarray,
    n_candidates: int = 50_000,
    rng: np.random.Generator | None = None,
    distance_quantile: float = 0.99,
    confidence: float = 0.95,
    threshold: float | None = None,
) -> dict[str, float | int | None]:
    """The fraction of the codes' hull volume farther from every code than the ``distance_quantile`` spacing.

    A scale-free measure of holes: uniform hull points (:class:`HullSampler`, from ``n_candidates``
    box draws) judged like :func:`empty_region_points`, summarised by :func:`valid_fraction` (so with a
    Wilson interval; ``n`` is the number of hull points). A uniform random scatter of codes gives about
    1 - distance_quantile (a regular grid less); codes bunched on curves and sheets leave much more of
    their hull empty. A given ``threshold`` (a distance in the codes' units) replaces the quantile, so
    that two models can be judged by one yardstick, e.g. the same multiple of each one's
    ``compare.code_scale``.
    """
    codes = as_codes(codes, min_count=2)
    _check_quantile(distance_quantile)
    rng = rng if rng is not None else np.random.default_rng(0)
    threshold = spacing_threshold(codes, distance_quantile) if threshold is None else threshold
    inside = HullSampler().fit(codes).sample(n_candidates, rng)
    return {**valid_fraction(distance_to_codes(inside, codes) > threshold, confidence), "threshold": threshold}


def prior_points(n_points: int, latent_dim: int, rng: np.random.Generator) -> np.ndarray:
    """(n_points, latent_dim) draws from the VAE prior N(0, I)."""
    return rng.standard_normal((n_points, latent_dim))


def valid_fraction(valid: np.ndarray, confidence: float = 0.95) -> dict[str, float | int | None]:
    """The fraction of True entries with its Wilson score interval; fraction and bounds are None when n is 0."""
    valid = np.asarray(valid, dtype=bool).ravel()
    n, k = int(valid.size), int(valid.sum())
    if n == 0:
        return {"fraction": None, "low": None, "high": None, "n": 0, "confidence": confidence}
    interval = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return {"fraction": k / n, "low": float(interval.low), "high": float(interval.high), "n": n,
            "confidence": confidence}


def _logsumexp_rows(values: np.ndarray) -> np.ndarray:
    """log sum_j exp(values[i, j]) per row, overwriting ``values``: scipy's logsumexp gives the same
    numbers but copies the (B, N) block several times, five times slower in this loop."""
    top = values.max(axis=1, keepdims=True)  # (B, 1)
    np.exp(np.subtract(values, top, out=values), out=values)
    return np.log(values.sum(axis=1)) + top[:, 0]


def log_aggregate_posterior(points: np.ndarray, mean: np.ndarray, logvar: np.ndarray,
                            leave_out: np.ndarray | None = None) -> np.ndarray:
    """log q(z) for q(z) = (1/N) sum_i N(z; mu_i, diag exp(logvar_i)), at (M, D) points -> (M,).

    ``leave_out`` (M,) gives, for each point, a component to drop (dividing by N - 1 instead): pass
    the indices of codes evaluated at their own means, so that a code is not credited with the peak of
    its own posterior.
    """
    points, mean, logvar = (np.asarray(a, dtype=np.float64) for a in (points, mean, logvar))
    leave_out = None if leave_out is None else np.asarray(leave_out, dtype=np.int64)
    n, dim = mean.shape
    precision = np.exp(-logvar)  # (N, D)
    constant = (mean**2 * precision).sum(axis=1) + logvar.sum(axis=1) + dim * LOG_2PI  # (N,)
    # sum_d (z_d - mu_d)^2 / var_d + log det + D log 2 pi = [z^2, z, 1] . [1 / var, -2 mu / var, constant]:
    # one matrix product per chunk.
    weights = np.column_stack([precision, -2.0 * mean * precision, constant])  # (N, 2D + 1)
    out = np.empty(len(points))
    for lo in range(0, len(points), _DENSITY_CHUNK):
        z = points[lo : lo + _DENSITY_CHUNK]  # (B, D)
        squared = np.column_stack([z**2, z, np.ones(len(z))]) @ weights.T  # (B, N)
        log_components = np.multiply(squared, -0.5, out=squared)
        if leave_out is not None:
            log_components[np.arange(len(z)), leave_out[lo : lo + len(z)]] = -np.inf
        out[lo : lo + len(z)] = _logsumexp_rows(log_components)
    return out - np.log(n if leave_out is None else n - 1)


def log_standard_normal(points: np.ndarray) -> np.ndarray:
    """log N(z; 0, I) at (M, D) points -> (M,)."""
    points = np.asarray(points, dtype=np.float64)
    return -0.5 * ((points**2).sum(axis=1) + points.shape[1] * LOG_2PI)


# -- validity as a function of the distance from the codes ---------------------------------------------


def posterior_sigma_scale(logvar: np.ndarray) -> np.ndarray:
    """(N,) each code's mean posterior standard deviation, mean_d exp(logvar_d / 2): the VAE's own length unit."""
    logvar = as_codes(logvar, "logvar")
    return np.exp(0.5 * logvar).mean(axis=1)


def _code_scale(codes: np.ndarray, scale: float | np.ndarray | None) -> np.ndarray:
    """(N,) per-code length unit: the median code spacing when ``scale`` is None, a constant, or given per code."""
    if scale is None:
        scale = float(np.median(code_spacing(codes)))
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (len(codes),)) if np.ndim(scale) == 0 else \
        np.asarray(scale, dtype=np.float64)
    if scale.shape != (len(codes),) or not np.all(np.isfinite(scale) & (scale > 0)):
        raise AtlasError(f"scale must be a positive number or one positive number per code ({len(codes)}), "
                         f"got shape {scale.shape}")
    return scale


def scaled_distances(points: np.ndarray, codes: np.ndarray, scale: float | np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For (M, D) points: distance to the nearest code (M,), that code's index (M,), and the distance in units of
    ``scale`` at that code (M,) (default: the median code spacing; pass :func:`posterior_sigma_scale` for the
    VAE's posterior standard deviations)."""
    codes = as_codes(codes, min_count=2)
    points = as_codes(points, "points", min_count=0)
    if points.shape[1] != codes.shape[1]:
        raise AtlasError(f"points have {points.shape[1]} coordinates but the codes {codes.shape[1]}")
    unit = _code_scale(codes, scale)
    distance, nearest = cKDTree(codes).query(points, k=1)
    return distance, nearest, distance / unit[nearest]


def _check_edges(edges) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0) \
            or edges[0] < 0:
        raise AtlasError(f"bin edges must be >= 2 finite, increasing, non-negative numbers, got {edges.tolist()}")
    return edges


def bin_distances(scaled_distance: np.ndarray, edges=DISTANCE_BIN_EDGES) -> np.ndarray:
    """(M,) bin of each scaled distance: i when edges[i] <= d < edges[i + 1], -1 outside every bin."""
    edges = _check_edges(edges)
    index = np.searchsorted(edges, np.asarray(scaled_distance, dtype=np.float64), side="right") - 1
    return np.where((index >= 0) & (index < len(edges) - 1), index, -1)


@dataclass(frozen=True, eq=False)
class DistanceBinnedPoints:
    points: np.ndarray  # (M, D) latent points to decode, grouped by bin
    bin_index: np.ndarray  # (M,) bin of each point
    distance: np.ndarray  # (M,) to the nearest code, in the codes' units
    scaled_distance: np.ndarray  # (M,) distance / the scale at the nearest code
    nearest: np.ndarray  # (M,) index of the nearest code
    edges: np.ndarray  # (B + 1,) bin edges in scale units
    unit: str
    n_candidates: int  # hull points drawn to fill the bins

    def counts(self) -> np.ndarray:
        return np.bincount(self.bin_index, minlength=len(self.edges) - 1)


def distance_binned_points(
    codes: np.ndarray,
    rng: np.random.Generator,
    n_per_bin: int = POINTS_PER_BIN,
    edges=DISTANCE_BIN_EDGES,
    scale: float | np.ndarray | None = None,
    unit: str = "median code spacing",
    max_candidates: int = MAX_CANDIDATES,
) -> DistanceBinnedPoints:
    """Up to ``n_per_bin`` points inside the codes' convex hull for each bin of nearest-code distance.

    Distances are in units of ``scale`` (:func:`scaled_distances`; default the median code spacing, so AE and
    VAE are compared at matched normalised distances). Candidates are uniform in the hull
    (:class:`HullSampler`, batches of 20,000) and each is kept while its bin has room: within a bin the points
    are uniform over the part of the hull at that distance, a population defined by the geometry alone (stepping
    off random codes instead would over-represent dense regions and depend on a step-length rule). Quotas fill
    every bin whose share of the hull is at least about n_per_bin / max_candidates; a bin that would need more
    than ``max_candidates`` draws at its rate so far (counted optimistically, hits + 1) is given up at once, and
    comes back short (see ``counts()``). Per bin, 200 points give a 95 % Wilson
    interval of about ±7 % at a valid fraction of 0.5 and ±4 % at 0.9 (``valid_fraction``).
    """
    codes = as_codes(codes, min_count=2)
    edges = _check_edges(edges)
    if int(n_per_bin) != n_per_bin or n_per_bin < 1:
        raise AtlasError(f"n_per_bin must be a positive integer, got {n_per_bin!r}")
    unit_per_code = _code_scale(codes, scale)
    tree = cKDTree(codes)
    sampler = HullSampler().fit(codes)
    n_bins = len(edges) - 1
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    room = np.full(n_bins, int(n_per_bin))
    hits = np.zeros(n_bins)
    drawn = 0
    while room.any() and drawn < max_candidates:
        size = min(_CANDIDATE_BATCH, max_candidates - drawn)
        drawn += size
        candidates = sampler.sample(size, rng)  # (B', D)
        distance, nearest = tree.query(candidates, k=1)
        index = bin_distances(distance / unit_per_code[nearest], edges)
        order = np.argsort(index, kind="stable")  # candidates grouped by bin, in drawing order within a bin
        starts = np.searchsorted(index[order], np.arange(n_bins))
        ends = np.searchsorted(index[order], np.arange(n_bins), side="right")
        take = np.concatenate([order[s : s + min(e - s, r)] for s, e, r in zip(starts, ends, room)])
        room -= np.bincount(index[take], minlength=n_bins)
        hits += ends - starts
        kept.append((candidates[take], index[take], distance[take], nearest[take]))
        room[drawn + room * drawn / (hits + 1) > max_candidates] = 0  # out of reach at its (optimistic) rate
    points, index, distance, nearest = (np.concatenate(parts) for parts in zip(*kept))
    order = np.argsort(index, kind="stable")
    points, index, distance, nearest = points[order], index[order], distance[order], nearest[order]
    return DistanceBinnedPoints(points=points, bin_index=index, distance=distance,
                                scaled_distance=distance / unit_per_code[nearest], nearest=nearest, edges=edges,
                                unit=unit, n_candidates=drawn)


def distance_bin_summary(bin_index: np.ndarray, valid: np.ndarray, edges=DISTANCE_BIN_EDGES,
                         residual: np.ndarray | None = None, unit: str = "median code spacing",
                         quantiles: tuple[float, ...] = (0.1, 0.5, 0.9), confidence: float = 0.95) -> dict[str, Any]:
    """Per distance bin: n, the valid fraction with its Wilson interval (:func:`valid_fraction`) and, when
    ``residual`` is given, its quantiles. Points with bin -1 (outside every bin) are left out."""
    edges = _check_edges(edges)
    bin_index = np.asarray(bin_index).ravel()
    valid = np.asarray(valid).ravel()
    if valid.dtype != bool or valid.shape != bin_index.shape:
        raise AtlasError(f"valid must be a boolean array matching bin_index {bin_index.shape}, got "
                         f"{valid.dtype} {valid.shape}")
    if residual is not None:
        residual = np.asarray(residual, dtype=np.float64).ravel()
        if residual.shape != bin_index.shape:
            raise AtlasError(f"residual {residual.shape} does not match bin_index {bin_index.shape}")
    bins = []
    for i in range(len(edges) - 1):
        members = bin_index == i
        row: dict[str, Any] = {"from": float(edges[i]), "to": float(edges[i + 1]),
                               **valid_fraction(valid[members], confidence)}
        if residual is not None and members.any():
            values = np.quantile(residual[members], quantiles)
            row["residual_quantiles"] = {f"q{round(100 * q):02d}": float(v) for q, v in zip(quantiles, values)}
        elif residual is not None:
            row["residual_quantiles"] = None
        bins.append(row)
    return {"unit": unit, "edges": edges.tolist(), "bins": bins, "n_outside": int((bin_index == -1).sum())}
