"""Unsupervised clusters against known labels: do k-means or a Gaussian mixture on the codes find the factors?

:func:`clustering_scores` clusters one feature set (k = the number of classes of each label set) and
scores the clusters against each label set by the adjusted Rand index (0 for chance, 1 for the same
partition) and the normalised mutual information. :func:`clustering_comparison` runs it on the codes,
on the true covariance factors and on the pixels (PCA), against the df labels (Student t data) and
against quantile bins of each factor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.mixture import GaussianMixture
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ..errors import AtlasError

CLUSTER_METHODS = ("kmeans", "gmm")
COVARIANCE_FACTORS = ("var_x", "var_y", "rho")
PIXEL_COMPONENTS = 10


def quantile_bins(values: np.ndarray, n_bins: int = 4) -> np.ndarray:
    """(N,) values -> (N,) int labels 0..n_bins-1 cut at the values' quantiles (ties at an edge go up).

    A factor on a grid of few values gives bins of unequal size; fewer bins than asked come back when
    the edges coincide, so labels are renumbered 0..(distinct bins - 1).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if n_bins < 2:
        raise AtlasError(f"n_bins must be at least 2, got {n_bins}")
    if len(values) == 0 or not np.isfinite(values).all():
        raise AtlasError("values to bin must be a non-empty array of finite numbers")
    edges = np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1)[1:-1])
    return np.unique(np.searchsorted(edges, values, side="right"), return_inverse=True)[1]


def cluster_labels(features: np.ndarray, n_clusters: int, method: str = "kmeans", seed: int = 0) -> np.ndarray:
    """(N, F) features -> (N,) cluster labels from scikit-learn's ``KMeans`` (10 inits) or a full-covariance
    ``GaussianMixture``, seeded by ``seed``.

    Runs on one OpenMP / BLAS thread: the fits are small (a few thousand points, at most ten features),
    and two threads spinning against other processes on a busy 2-core machine run several times slower.
    """
    if method not in CLUSTER_METHODS:
        raise AtlasError(f"unknown clustering method {method!r}; choose one of {', '.join(CLUSTER_METHODS)}")
    with threadpool_limits(1):
        if method == "kmeans":
            return KMeans(n_clusters, n_init=10, random_state=seed).fit_predict(features)
        return GaussianMixture(n_clusters, covariance_type="full", random_state=seed).fit(features).predict(features)


def agreement(true_labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """ARI and NMI between two labellings of the same items."""
    return {"ari": float(adjusted_rand_score(true_labels, predicted)),
            "nmi": float(normalized_mutual_info_score(true_labels, predicted))}


def clustering_scores(
    features: np.ndarray,
    labels: Mapping[str, np.ndarray],
    methods: tuple[str, ...] = CLUSTER_METHODS,
    scale: bool = True,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float | int]]]:
    """Cluster ``features`` (N, F) into as many clusters as each label set has classes; score against it.

    ``labels`` maps a name to (N,) class labels. ``scale`` standardises each feature first (codes and
    factors have arbitrary units; leave pixels unscaled). A clustering is fitted once per method and k,
    and shared by the label sets with that many classes. Returns label name -> method ->
    ``{ari, nmi, n_clusters}``.
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2 or not np.isfinite(features).all():
        raise AtlasError(f"features must be a finite (N, F) array with N >= 2, got shape {features.shape}")
    if scale:
        features = StandardScaler().fit_transform(features)
    fitted: dict[tuple[str, int], np.ndarray] = {}
    result: dict[str, dict[str, dict[str, float | int]]] = {}
    for name, truth in labels.items():
        truth = np.asarray(truth).ravel()
        if len(truth) != len(features):
            raise AtlasError(f"labels {name!r} have {len(truth)} entries for {len(features)} feature rows")
        k = len(np.unique(truth))
        if not 2 <= k <= len(features):
            raise AtlasError(f"labels {name!r} have {k} classes; clustering needs between 2 and {len(features)}")
        result[name] = {}
        for method in methods:
            if (method, k) not in fitted:
                fitted[method, k] = cluster_labels(features, k, method, seed)
            result[name][method] = {**agreement(truth, fitted[method, k]), "n_clusters": k}
    return result


def factor_labels(factors: np.ndarray, factor_names: tuple[str, ...], n_bins: int = 4,
                  binned: tuple[str, ...] = COVARIANCE_FACTORS) -> dict[str, np.ndarray]:
    """The label sets to score clusters against: ``df`` (its own values) when present, and ``<name>_bins``
    (:func:`quantile_bins`) for each factor in ``binned``."""
    factors = np.asarray(factors, dtype=np.float64)
    names = list(factor_names)
    missing = [name for name in binned if name not in names]
    if missing:
        raise AtlasError(f"factors {', '.join(missing)} are not among {', '.join(names)}")
    labels = {}
    if "df" in names:
        labels["df"] = np.unique(factors[:, names.index("df")], return_inverse=True)[1]
    for name in binned:
        labels[f"{name}_bins"] = quantile_bins(factors[:, names.index(name)], n_bins)
    return labels


def clustering_comparison(
    codes: np.ndarray | None,
    factors: np.ndarray,
    factor_names: tuple[str, ...],
    images: np.ndarray,
    n_bins: int = 4,
    pixel_components: int = PIXEL_COMPONENTS,
    max_points: int | None = 4000,
    methods: tuple[str, ...] = CLUSTER_METHODS,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`clustering_scores` on three feature sets, all row-aligned, against :func:`factor_labels`.

    * ``codes`` (N, D), scaled (left out when None);
    * ``factors``: the true covariance factors (var_x, var_y, rho), scaled; df is never a feature, so
      against the df labels this is what the covariance alone separates;
    * ``pixels``: the flattened images on their first ``pixel_components`` principal axes, unscaled.

    At most ``max_points`` rows (the same ones for every feature set), drawn without replacement by
    ``numpy.random.default_rng(seed)``, are clustered (None: all). Returns ``{"n_points": n, "scores":
    features -> label set -> method -> {ari, nmi, n_clusters}}``.
    """
    factors = np.asarray(factors, dtype=np.float64)
    images = np.asarray(images, dtype=np.float32)
    if len(images) != len(factors) or (codes is not None and len(codes) != len(factors)):
        raise AtlasError(f"codes, factors and images must be row-aligned, got {None if codes is None else len(codes)}, "
                         f"{len(factors)} and {len(images)} rows")
    rows = np.arange(len(factors))
    if max_points is not None and len(rows) > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(len(rows), max_points, replace=False))
    labels = factor_labels(factors[rows], factor_names, n_bins)
    covariance = factors[rows][:, [list(factor_names).index(name) for name in COVARIANCE_FACTORS]]
    pixels = images[rows].reshape(len(rows), -1)  # (n, H * W)
    pixels = PCA(n_components=min(pixel_components, *pixels.shape), random_state=seed).fit_transform(pixels)
    feature_sets = {"codes": (None if codes is None else np.asarray(codes)[rows], True),
                    "factors": (covariance, True), "pixels": (pixels, False)}
    scores = {name: clustering_scores(X, labels, methods, scale, seed)
              for name, (X, scale) in feature_sets.items() if X is not None}
    return {"n_points": len(rows), "scores": scores}
