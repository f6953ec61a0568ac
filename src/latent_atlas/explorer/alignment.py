"""Aligning two runs' latent spaces through the images they share: a map from run A's codes to run B's.

Every dataset image has a code in each run, so the pairs (code in A, code in B) are training data for a
regression from A's latent space to B's. Candidates, each fitted on the training split's pairs:

- ``procrustes``: an orthogonal map with one scale and a shift (``scipy.linalg.orthogonal_procrustes``);
  only for runs of one latent dimension.
- ``affine``: a least-squares affine map (any two dimensions).
- ``knn``: k-nearest-neighbour regression, distance weighted (nonlinear; it cannot leave the codes' hull).
- ``affine_knn``: the affine map plus a kNN regression of its residuals (nonlinear near the codes,
  affine far from them).

``CodeAlignment(method="auto")`` picks the candidate with the best R² on a validation part of the training
split, refits it on the whole training split and scores every candidate on the test split: R² (variance
weighted over B's coordinates) and the distance between the mapped and the true B code in units of B's
median code spacing (the median distance from a code of B to its nearest other code).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.linalg import orthogonal_procrustes
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.neighbors import KNeighborsRegressor, NearestNeighbors

from ..errors import AtlasError

METHODS = ("procrustes", "affine", "knn", "affine_knn")
N_NEIGHBORS = 10
VALIDATION_FRACTION = 0.2


def code_spacing(codes: np.ndarray) -> float:
    """The median distance from each code (N, D) to its nearest other code: the codes' own length scale."""
    codes = np.asarray(codes, dtype=np.float64)
    if len(codes) < 2:
        raise AtlasError("a code spacing needs at least two codes")
    distances, _ = NearestNeighbors(n_neighbors=2).fit(codes).kneighbors(codes)  # (N, 2)
    spacing = float(np.median(distances[:, 1]))
    return spacing if spacing > 0 else float(np.mean(distances[:, 1])) or 1.0


class ScaledProcrustes:
    """z -> scale * (z - mean_a) @ rotation + mean_b, the least-squares orthogonal map with one scale factor."""

    def fit(self, a: np.ndarray, b: np.ndarray) -> ScaledProcrustes:
        if a.shape[1] != b.shape[1]:
            raise AtlasError(f"Procrustes needs one latent dimension in both runs, got {a.shape[1]} and {b.shape[1]}")
        self.mean_a_, self.mean_b_ = a.mean(axis=0), b.mean(axis=0)
        a0, b0 = a - self.mean_a_, b - self.mean_b_  # (N, D) each
        self.rotation_, singular_sum = orthogonal_procrustes(a0, b0)  # (D, D)
        norm = float(np.sum(a0**2))
        self.scale_ = singular_sum / norm if norm > 0 else 1.0
        return self

    def predict(self, codes: np.ndarray) -> np.ndarray:
        return self.scale_ * (codes - self.mean_a_) @ self.rotation_ + self.mean_b_  # (B, D)


class AffineKNN:
    """An affine least-squares map plus a distance-weighted kNN regression of what it leaves over."""

    def __init__(self, n_neighbors: int = N_NEIGHBORS):
        self.n_neighbors = n_neighbors

    def fit(self, a: np.ndarray, b: np.ndarray) -> AffineKNN:
        self.affine_ = LinearRegression().fit(a, b)
        residual = b - self.affine_.predict(a)  # (N, D_b)
        self.knn_ = KNeighborsRegressor(n_neighbors=min(self.n_neighbors, len(a)), weights="distance").fit(a, residual)
        return self

    def predict(self, codes: np.ndarray) -> np.ndarray:
        return self.affine_.predict(codes) + self.knn_.predict(codes)  # (B, D_b)


def make_estimator(method: str, n_neighbors: int = N_NEIGHBORS) -> Any:
    if method == "procrustes":
        return ScaledProcrustes()
    if method == "affine":
        return LinearRegression()
    if method == "knn":
        return _KNN(n_neighbors)
    if method == "affine_knn":
        return AffineKNN(n_neighbors)
    raise AtlasError(f"unknown alignment method {method!r}; choose auto or one of {', '.join(METHODS)}")


class _KNN:
    def __init__(self, n_neighbors: int):
        self.n_neighbors = n_neighbors

    def fit(self, a: np.ndarray, b: np.ndarray) -> _KNN:
        self.knn_ = KNeighborsRegressor(n_neighbors=min(self.n_neighbors, len(a)), weights="distance").fit(a, b)
        return self

    def predict(self, codes: np.ndarray) -> np.ndarray:
        return self.knn_.predict(codes)


@dataclass(frozen=True)
class AlignmentScore:
    """How well one map predicts B's codes from A's on held-out images."""

    method: str
    r2: float  # variance-weighted R² over B's coordinates
    median_error: float  # median ||mapped - true B code|| / B's code spacing
    p90_error: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_map(method: str, predicted: np.ndarray, target: np.ndarray, spacing: float) -> AlignmentScore:
    errors = np.linalg.norm(predicted - target, axis=1) / spacing  # (N,)
    return AlignmentScore(method=method, r2=float(r2_score(target, predicted, multioutput="variance_weighted")),
                          median_error=float(np.median(errors)), p90_error=float(np.percentile(errors, 90)),
                          n=len(target))


def candidate_methods(dim_a: int, dim_b: int) -> tuple[str, ...]:
    return METHODS if dim_a == dim_b else tuple(m for m in METHODS if m != "procrustes")


class CodeAlignment:
    """A map from run A's latent space to run B's, learnt from the codes both give the same images.

    ``fit(codes_a, codes_b, train_idx, test_idx)``: rows of ``codes_a`` (N, D_a) and ``codes_b`` (N, D_b) are
    the same images; the map is fitted on ``train_idx`` only. Learned: ``method_``, ``estimator_``,
    ``selection_`` (validation R² of each candidate, when ``method="auto"``), ``n_train_``, ``scores_``
    (each candidate's ``AlignmentScore`` on the test split, refitted on the whole training split), ``score_``
    (the chosen one's), ``source_spacing_`` and ``target_spacing_``.
    """

    def __init__(self, method: str = "auto", n_neighbors: int = N_NEIGHBORS,
                 validation_fraction: float = VALIDATION_FRACTION, seed: int = 0):
        if method != "auto":
            make_estimator(method)
        if not 0 < validation_fraction < 1:
            raise AtlasError(f"validation_fraction must lie in (0, 1), got {validation_fraction}")
        self.method = method
        self.n_neighbors = n_neighbors
        self.validation_fraction = validation_fraction
        self.seed = seed

    def fit(self, codes_a: np.ndarray, codes_b: np.ndarray, train_idx: np.ndarray,
            test_idx: np.ndarray) -> CodeAlignment:
        a = np.asarray(codes_a, dtype=np.float64)  # (N, D_a)
        b = np.asarray(codes_b, dtype=np.float64)  # (N, D_b)
        train_idx, test_idx = np.asarray(train_idx, dtype=np.int64), np.asarray(test_idx, dtype=np.int64)
        if a.ndim != 2 or b.ndim != 2 or len(a) != len(b):
            raise AtlasError(f"aligning needs one code per image in both runs, got {a.shape} and {b.shape}")
        if len(train_idx) < 4 or len(test_idx) < 1:
            raise AtlasError(f"aligning needs at least 4 training and 1 test image, got {len(train_idx)} and "
                             f"{len(test_idx)}")
        candidates = candidate_methods(a.shape[1], b.shape[1])
        if self.method != "auto" and self.method not in candidates:
            raise AtlasError(f"{self.method} cannot map {a.shape[1]}-D codes to {b.shape[1]}-D codes")
        self.n_train_ = len(train_idx)
        self.source_spacing_ = code_spacing(a)
        self.target_spacing_ = code_spacing(b)
        self.selection_ = {}
        if self.method == "auto":
            order = np.random.default_rng(self.seed).permutation(train_idx)
            n_val = max(1, int(round(self.validation_fraction * len(order))))
            fit_rows, val_rows = order[n_val:], order[:n_val]
            for method in candidates:
                predicted = make_estimator(method, self.n_neighbors).fit(a[fit_rows], b[fit_rows]).predict(a[val_rows])
                self.selection_[method] = score_map(method, predicted, b[val_rows], self.target_spacing_).r2
            self.method_ = max(candidates, key=lambda m: (self.selection_[m], -candidates.index(m)))
        else:
            self.method_ = self.method
        self.scores_ = {}
        for method in candidates:
            estimator = make_estimator(method, self.n_neighbors).fit(a[train_idx], b[train_idx])
            self.scores_[method] = score_map(method, estimator.predict(a[test_idx]), b[test_idx], self.target_spacing_)
            if method == self.method_:
                self.estimator_ = estimator
        self.score_ = self.scores_[self.method_]
        self._source_search = NearestNeighbors(n_neighbors=1).fit(a)
        return self

    def transform(self, codes: np.ndarray) -> np.ndarray:
        """(B, D_a) codes of run A -> (B, D_b) the corresponding codes of run B."""
        return self.estimator_.predict(np.asarray(codes, dtype=np.float64))

    def support(self, codes: np.ndarray) -> np.ndarray:
        """(B, D_a) -> (B,) distance to A's nearest code in units of A's code spacing (large: extrapolating)."""
        distance, _ = self._source_search.kneighbors(np.asarray(codes, dtype=np.float64))
        return distance[:, 0] / self.source_spacing_
