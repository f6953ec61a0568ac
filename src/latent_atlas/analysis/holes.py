"""Holes in latent space: where the codes are not, and how much of the prior N(0, I) falls there.

Two kinds of hole, as in the seed study and its background reading:

* empty regions *inside* the codes' convex hull, far from every code (the seed's "empty space" the
  AE decodes badly), found by :func:`empty_region_points`;
* regions the prior N(0, I) covers but the aggregate posterior q(z) = mean_i N(z; mu_i, sigma_i^2)
  does not (the "prior holes" that make sampling a VAE produce non-heatmaps), measured by
  :func:`prior_hole_stats`.

"Far" is always relative to the codes' own spacing: the ``quantile`` (0.99 by default) of the
distances from each code to its nearest other code.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, Delaunay, QhullError, cKDTree
from scipy.stats import binomtest
from threadpoolctl import threadpool_limits

from ..errors import AtlasError
from .neighbours import as_codes, code_spacing, distance_to_codes, spacing_threshold

HULL_MAX_DIM = 3
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


def empty_region_points(
    codes: np.ndarray,
    n_points: int = 200,
    rng: np.random.Generator | None = None,
    distance_quantile: float = 0.99,
    max_tries: int = 1_000_000,
    threshold: float | None = None,
) -> np.ndarray:
    """Uniform points inside the codes' convex hull whose nearest code is unusually far: ``(n, D)``, n <= n_points.

    Points come from :class:`HullSampler` (D > 3: the hull of the first three principal axes, mapped
    back) and are kept when their distance to the nearest code, measured in all D dimensions, exceeds the
    ``distance_quantile`` of the code-to-nearest-other-code distances (:func:`spacing_threshold`).
    A given ``threshold`` (a distance in the codes' units) replaces that quantile. Sampling stops after
    ``max_tries`` box candidates, so fewer than ``n_points`` (possibly none) come back when the hull has
    few holes.
    """
    codes = as_codes(codes, min_count=2)
    _check_quantile(distance_quantile)
    rng = rng if rng is not None else np.random.default_rng(0)
    threshold = spacing_threshold(codes, distance_quantile) if threshold is None else threshold
    tree = cKDTree(codes)
    sampler = HullSampler().fit(codes)
    found: list[np.ndarray] = [np.zeros((0, codes.shape[1]))]
    n_found = tried = 0
    while n_found < n_points and tried < max_tries:
        size = min(_CANDIDATE_BATCH, max_tries - tried)
        tried += size
        inside = sampler.sample(size, rng)  # (B', D)
        far = inside[tree.query(inside, k=1)[0] > threshold]
        found.append(far)
        n_found += len(far)
    return np.concatenate(found)[:n_points]


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


def prior_hole_stats(
    codes: np.ndarray,
    logvar: np.ndarray | None,
    prior_samples: np.ndarray,
    quantile: float = 0.99,
    n_reference: int = 2000,
    rng: np.random.Generator | None = None,
) -> dict[str, float | int]:
    """How much of the prior falls where the codes are not.

    Distance-based (both models; codes are the posterior means or the AE codes, unscaled, since the
    prior fixes the scale):

    * ``spacing_threshold``: the ``quantile`` (0.99) of code-to-nearest-other-code distances;
    * ``prior_far_fraction``: fraction of prior draws whose nearest code is farther than that
      (by construction about 1 - quantile of the codes themselves are);
    * ``prior_nearest_median`` / ``code_spacing_median``: median nearest-code distance of the prior
      draws and median code spacing, and ``nearest_ratio`` = their quotient.

    Density-based (VAE only, when ``logvar`` is given), with q(z) = (1/N) sum_i N(z; mu_i, sigma_i^2)
    evaluated by logsumexp:

    * ``log_q_prior_mean``: mean log q at the prior draws;
    * ``log_q_codes_mean``: mean leave-one-out log q at the codes (each code without its own component),
      over at most ``n_reference`` codes drawn without replacement by ``rng`` (all N^2 pairs take
      seconds at N = 12,000; 2,000 give the mean and the 1% quantile to within a few hundredths);
    * ``prior_low_density_fraction``: fraction of prior draws where log q is below the 1 - quantile
      (0.01) quantile of those codes' leave-one-out log q;
    * ``kl_prior_to_aggregate``: the Monte Carlo estimate mean_j [log p(z_j) - log q(z_j)] of KL(p || q)
      over the prior draws z_j ~ p = N(0, I), in nats: prior mass that q leaves uncovered.
    """
    codes = as_codes(codes, min_count=2)
    prior_samples = np.asarray(prior_samples, dtype=np.float64)
    if prior_samples.ndim != 2 or prior_samples.shape[1] != codes.shape[1]:
        raise AtlasError(f"prior samples {prior_samples.shape} do not match codes of dimension {codes.shape[1]}")
    spacing = code_spacing(codes)
    threshold = float(np.quantile(spacing, quantile))
    prior_nearest = distance_to_codes(prior_samples, codes)
    stats: dict[str, float | int] = {
        "n_codes": len(codes),
        "n_prior": len(prior_samples),
        "quantile": quantile,
        "spacing_threshold": threshold,
        "prior_far_fraction": float((prior_nearest > threshold).mean()),
        "prior_nearest_median": float(np.median(prior_nearest)),
        "code_spacing_median": float(np.median(spacing)),
        "nearest_ratio": float(np.median(prior_nearest) / max(np.median(spacing), np.finfo(float).tiny)),
    }
    if logvar is None:
        return stats
    log_q_prior = log_aggregate_posterior(prior_samples, codes, logvar)
    rng = rng if rng is not None else np.random.default_rng(0)
    reference = np.sort(rng.choice(len(codes), size=min(n_reference, len(codes)), replace=False))
    log_q_codes = log_aggregate_posterior(codes[reference], codes, logvar, leave_out=reference)
    stats.update(
        log_q_prior_mean=float(log_q_prior.mean()),
        log_q_codes_mean=float(log_q_codes.mean()),
        n_reference=len(reference),
        prior_low_density_fraction=float((log_q_prior < np.quantile(log_q_codes, 1.0 - quantile)).mean()),
        kl_prior_to_aggregate=float((log_standard_normal(prior_samples) - log_q_prior).mean()),
    )
    return stats
