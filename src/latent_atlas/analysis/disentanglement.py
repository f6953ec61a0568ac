"""Disentanglement scores against the known generating factors, each a pure function with known answers.

Scores for continuous factors and codes identified only up to rotation:

* :func:`quantile_mig`, :func:`mig_bin_sensitivity`: MIG (Chen et al. 2018) with equal-mass bins, and how
  it moves with the bin count;
* :func:`dci`: disentanglement, completeness and held-out informativeness (Eastwood & Williams 2018)
  from a Lasso or a tree ensemble; :func:`dci_from_importance` is the part that reads an importance matrix;
* :func:`explicitness`: held-out R^2 of k-nearest-neighbour regression from the codes to each factor;
* :func:`factorvae_score` (Kim & Mnih 2018) on interventional batches from :func:`interventional_batches`;
* :func:`continuous_metrics`: MIG, DCI and explicitness in one JSON-able dict, with which of them are
  invariant to a rotation of the codes (:data:`ROTATION_INVARIANCE`).

Older scores kept for the study until it is rewired:

* :func:`mutual_information_gap`: MIG with equal-width bins, as disentanglement_lib computes it (a few
  outlying codes squeeze every other code into one bin);
* :func:`sap_score`: SAP (Kumar et al. 2018), continuous-factor form;
* :func:`factor_correlations`: the |Spearman| table between latent axes and factors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import sklearn
from scipy.stats import entropy, rankdata
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.linear_model import Lasso
from sklearn.metrics import mutual_info_score, r2_score
from sklearn.neighbors import KNeighborsRegressor
from sklearn.preprocessing import StandardScaler

from ..errors import AtlasError

MIG_BINS = 20
MIG_SENSITIVITY_BINS = (5, 10, 20, 40)
LASSO_NOISE_Z = 4.0  # Lasso alpha = LASSO_NOISE_Z / sqrt(n_train) on standardised codes and factors
TREES = 30
TREE_MIN_LEAF = 5
TREE_TRAIN_ROWS = 3000
EXPLICITNESS_NEIGHBOURS = 10
FACTORVAE_VOTES = 600
FACTORVAE_BATCH = 32

ROTATION_INVARIANCE = {
    "mig": {"invariant": False, "why": "mutual information of single latent axes, binned axis by axis"},
    "dci_lasso.disentanglement": {"invariant": False, "why": "reads the weights of each latent axis"},
    "dci_lasso.completeness": {"invariant": False, "why": "reads the weights of each latent axis"},
    "dci_lasso.informativeness": {
        "invariant": True,
        "why": "a linear fit is unchanged by any invertible linear map of the codes; only the small "
               "L1 penalty is not, so it is invariant up to that shrinkage",
    },
    "dci_trees.disentanglement": {"invariant": False, "why": "reads the importance of each latent axis"},
    "dci_trees.completeness": {"invariant": False, "why": "reads the importance of each latent axis"},
    "dci_trees.informativeness": {"invariant": False, "why": "trees split along latent axes"},
    "explicitness": {"invariant": True, "why": "Euclidean nearest neighbours do not change under rotation"},
    "factorvae": {"invariant": False, "why": "votes for the latent axis of least variance"},
}


def _check(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, factors = np.asarray(codes, dtype=np.float64), np.asarray(factors, dtype=np.float64)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors) or len(codes) < 2:
        raise AtlasError(f"codes {codes.shape} and factors {factors.shape} must be (N, D) and (N, K) with N >= 2")
    if not (np.isfinite(codes).all() and np.isfinite(factors).all()):
        raise AtlasError("codes and factors must be finite (found NaN or infinity)")
    return codes, factors


def _names(factor_names: tuple[str, ...] | None, n_factors: int) -> tuple[str, ...]:
    if factor_names is None:
        return tuple(f"f{k}" for k in range(n_factors))
    if len(factor_names) != n_factors:
        raise AtlasError(f"{len(factor_names)} factor names for {n_factors} factor columns")
    return tuple(factor_names)


def _check_split(train_idx: np.ndarray, test_idx: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    train_idx, test_idx = np.asarray(train_idx), np.asarray(test_idx)
    for name, index in (("train_idx", train_idx), ("test_idx", test_idx)):
        if index.ndim != 1 or len(index) < 2 or not np.issubdtype(index.dtype, np.integer):
            raise AtlasError(f"{name} must be a 1-D integer index array with at least 2 entries")
        if index.min() < 0 or index.max() >= n:
            raise AtlasError(f"{name} has indices outside 0..{n - 1}")
    if np.intersect1d(train_idx, test_idx).size:
        raise AtlasError("train_idx and test_idx overlap: held-out scores need disjoint rows")
    return train_idx, test_idx


def _check_bins(n_bins: int) -> int:
    if int(n_bins) != n_bins or n_bins < 2:
        raise AtlasError(f"n_bins must be an integer >= 2, got {n_bins}")
    return int(n_bins)


def histogram_discretize(values: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """(N, C) -> (N, C) int labels 1..n_bins: each column cut into equal-width bins, as disentanglement_lib does."""
    values = np.asarray(values, dtype=np.float64)
    return np.stack(
        [np.digitize(column, np.histogram_bin_edges(column, n_bins)[:-1]) for column in values.T], axis=1
    )


def discretize_factors(factors: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Factors as int labels: their own values when a column takes at most ``n_bins`` of them, else histogram bins."""
    columns = []
    for column in np.asarray(factors, dtype=np.float64).T:
        values, labels = np.unique(column, return_inverse=True)
        columns.append(labels if len(values) <= n_bins else histogram_discretize(column[:, None], n_bins)[:, 0])
    return np.stack(columns, axis=1)


def _rank_columns(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) -> dense ranks (1..distinct values) and minimum ranks (1..N) of each column, ties shared."""
    columns = np.ascontiguousarray(values.T)  # (C, N): each column's sort runs on contiguous memory
    return (rankdata(columns, method="dense", axis=1).T.astype(np.int64),
            rankdata(columns, method="min", axis=1).T.astype(np.int64))


def _bin_ranks(dense: np.ndarray, lowest: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-mass labels from ranks: a column with at most ``n_bins`` values keeps them, others bin by rank."""
    keep = dense.max(axis=0) <= n_bins  # (C,)
    return np.where(keep, dense - 1, (lowest - 1) * n_bins // len(lowest))  # (N, C)


def quantile_discretize(values: np.ndarray, n_bins: int = MIG_BINS) -> np.ndarray:
    """(N, C) -> (N, C) int labels from 0: equal-mass bins per column.

    A column that takes at most ``n_bins`` distinct values keeps them (one label per value); in any
    other column a value of rank r (1..N, tied values share the lowest rank of their group) gets label
    floor((r - 1) n_bins / N), so the bins hold N / n_bins values each and ties stay together. The
    labels depend only on ranks: an increasing map of a column leaves them unchanged, and m outlying
    values shift any other value's rank by at most m, so its label by at most one bin.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise AtlasError(f"values must be a non-empty (N, C) array, got shape {values.shape}")
    return _bin_ranks(*_rank_columns(values), _check_bins(n_bins))


def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,), (N,) non-negative int labels -> (max a + 1, max b + 1) table of counts."""
    rows, cols = int(a.max()) + 1, int(b.max()) + 1
    return np.bincount(a * cols + b, minlength=rows * cols).reshape(rows, cols)


def mutual_information_matrix(discrete_codes: np.ndarray, discrete_factors: np.ndarray) -> np.ndarray:
    """(D, K) mutual information in nats between each discrete code column and each discrete factor column."""
    codes = np.stack([np.unique(c, return_inverse=True)[1] for c in discrete_codes.T], axis=1)  # (N, D) from 0
    factors = np.stack([np.unique(f, return_inverse=True)[1] for f in discrete_factors.T], axis=1)  # (N, K)
    with sklearn.config_context(skip_parameter_validation=True):  # the tables are built right here
        information = [[mutual_info_score(None, None, contingency=_contingency(c, f)) for f in factors.T]
                       for c in codes.T]
    return np.array(information).reshape(codes.shape[1], factors.shape[1])


def _gap_summary(discrete_codes: np.ndarray, discrete_factors: np.ndarray, names: tuple[str, ...]) -> dict:
    information = mutual_information_matrix(discrete_codes, discrete_factors)  # (D, K)
    factor_entropy = np.array([entropy(np.unique(f, return_counts=True)[1]) for f in discrete_factors.T])  # (K,)
    top = np.sort(information, axis=0)[::-1]  # (D, K), largest first
    gaps = np.divide(top[0] - top[1], factor_entropy, out=np.zeros(len(factor_entropy)), where=factor_entropy > 0)
    return {
        "mig": float(gaps.mean()),
        "gaps": {name: float(g) for name, g in zip(names, gaps)},
        "best_latent": {name: int(i) for name, i in zip(names, information.argmax(axis=0))},
        "mutual_information": information.tolist(),
        "factor_entropy": {name: float(h) for name, h in zip(names, factor_entropy)},
    }


def mutual_information_gap(
    codes: np.ndarray, factors: np.ndarray, n_bins: int = 20, factor_names: tuple[str, ...] | None = None
) -> dict:
    """MIG: for each factor, (largest - second largest MI over latent axes) / H(factor); then the mean.

    Codes are cut into ``n_bins`` equal-width bins per axis; factors keep their own values when they
    take at most ``n_bins`` of them (grid factors), else they are binned the same way. Factors that take
    one value (zero entropy) get a gap of 0. Needs at least two latent axes.
    """
    codes, factors = _check(codes, factors)
    if codes.shape[1] < 2:
        raise AtlasError("MIG needs at least two latent axes")
    names = _names(factor_names, factors.shape[1])
    summary = _gap_summary(histogram_discretize(codes, n_bins), discretize_factors(factors, n_bins), names)
    return {**summary, "n_bins": n_bins}


def _check_mig(codes: np.ndarray, factors: np.ndarray, factor_names: tuple[str, ...] | None):
    codes, factors = _check(codes, factors)
    if codes.shape[1] < 2:
        raise AtlasError("MIG needs at least two latent axes")
    return codes, factors, _names(factor_names, factors.shape[1])


def _ranked_mig(code_ranks: tuple, factor_ranks: tuple, n_bins: int, names: tuple[str, ...]) -> dict:
    n_bins = _check_bins(n_bins)
    summary = _gap_summary(_bin_ranks(*code_ranks, n_bins), _bin_ranks(*factor_ranks, n_bins), names)
    return {**summary, "n_bins": n_bins, "binning": "quantile"}


def quantile_mig(
    codes: np.ndarray, factors: np.ndarray, n_bins: int = MIG_BINS, factor_names: tuple[str, ...] | None = None
) -> dict:
    """MIG with equal-mass bins: per factor, (largest - second largest MI over latent axes) / H(factor); the mean.

    Codes and factors are both cut by :func:`quantile_discretize` (a factor with at most ``n_bins``
    values keeps them). Codes that are increasing maps of the factors, one axis each, score 1 less the
    plug-in estimator's bias (about (n_bins - 1)^2 / 2N nats on the second-best axis). Factors with one
    value get a gap of 0. Needs at least two latent axes. Not invariant to a rotation of the codes.
    """
    codes, factors, names = _check_mig(codes, factors, factor_names)
    return _ranked_mig(_rank_columns(codes), _rank_columns(factors), n_bins, names)


def mig_bin_sensitivity(
    codes: np.ndarray,
    factors: np.ndarray,
    bins: tuple[int, ...] = MIG_SENSITIVITY_BINS,
    factor_names: tuple[str, ...] | None = None,
) -> dict:
    """Quantile MIG at each bin count in ``bins``: the overall score and each factor's gap, and their range."""
    codes, factors, names = _check_mig(codes, factors, factor_names)
    if len(bins) == 0:
        raise AtlasError("bins must name at least one bin count")
    code_ranks, factor_ranks = _rank_columns(codes), _rank_columns(factors)
    results = [_ranked_mig(code_ranks, factor_ranks, n, names) for n in bins]
    scores = [r["mig"] for r in results]
    return {
        "bins": [int(n) for n in bins],
        "mig": scores,
        "gaps": {name: [r["gaps"][name] for r in results] for name in names},
        "range": float(max(scores) - min(scores)),
    }


def dci_from_importance(importance: np.ndarray, factor_names: tuple[str, ...] | None = None) -> dict:
    """Disentanglement and completeness (Eastwood & Williams 2018) of a (D, K) importance matrix R.

    Disentanglement of axis d is 1 - H_K(R[d] / sum R[d]) (entropy in base K); completeness of factor
    k is 1 - H_D(R[:, k] / sum R[:, k]). The overall scores weight axes (factors) by their share of the
    total importance, as disentanglement_lib does. Rows or columns with no importance score 0 (so do
    both totals when R is all zero). Needs D >= 2 and K >= 2.
    """
    importance = np.abs(np.asarray(importance, dtype=np.float64))
    if importance.ndim != 2 or min(importance.shape) < 2 or not np.isfinite(importance).all():
        raise AtlasError(f"importance must be a finite (D, K) matrix with D, K >= 2, got shape {importance.shape}")
    n_latents, n_factors = importance.shape
    names = _names(factor_names, n_factors)
    per_latent, per_factor = importance.sum(axis=1), importance.sum(axis=0)  # (D,), (K,)
    disentanglement, completeness = np.zeros(n_latents), np.zeros(n_factors)
    used, explained = per_latent > 0, per_factor > 0
    disentanglement[used] = 1.0 - entropy(importance[used].T, base=n_factors)
    completeness[explained] = 1.0 - entropy(importance[:, explained], base=n_latents)
    total = importance.sum()
    weights_latent = per_latent / total if total > 0 else np.zeros(n_latents)
    weights_factor = per_factor / total if total > 0 else np.zeros(n_factors)
    return {
        "disentanglement": float(weights_latent @ disentanglement),
        "completeness": float(weights_factor @ completeness),
        "disentanglement_per_latent": disentanglement.tolist(),
        "completeness_per_factor": {name: float(c) for name, c in zip(names, completeness)},
        "importance": importance.tolist(),
    }


def lasso_alpha(n_train: int) -> float:
    """The Lasso penalty for ``n_train`` standardised rows: 4 / sqrt(n_train).

    On standardised data a weight is zero unless its code's partial correlation with the factor
    exceeds alpha, and a null correlation has standard error about 1 / sqrt(n): so codes unrelated
    to a factor get zero weight (they would otherwise make DCI of random codes look perfect), while a
    real weight shrinks by only alpha (0.041 at 9,500 rows).
    """
    return LASSO_NOISE_Z / np.sqrt(n_train)


def _lasso_importance(train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray):
    """Lasso on standardised codes and factors: (D, K) |weights| and (N_test, K) predictions in factor units."""
    codes_scaler, factor_scaler = StandardScaler().fit(train_codes), StandardScaler().fit(train_factors)
    model = Lasso(alpha=lasso_alpha(len(train_codes)), max_iter=10_000).fit(
        codes_scaler.transform(train_codes), factor_scaler.transform(train_factors)
    )
    weights = np.atleast_2d(model.coef_)  # (K, D)
    predictions = model.predict(codes_scaler.transform(test_codes)).reshape(len(test_codes), -1)  # (N_test, K)
    return np.abs(weights).T, factor_scaler.inverse_transform(predictions)


def _tree_importance(train_codes: np.ndarray, train_factors: np.ndarray, test_codes: np.ndarray, seed: int):
    """One extra-trees forest per factor: (D, K) impurity importances and (N_test, K) predictions."""
    importance, predictions = [], []
    for k in range(train_factors.shape[1]):
        forest = ExtraTreesRegressor(
            n_estimators=TREES, min_samples_leaf=TREE_MIN_LEAF, max_features=1.0, random_state=seed
        ).fit(train_codes, train_factors[:, k])
        importance.append(forest.feature_importances_)
        predictions.append(forest.predict(test_codes))
    return np.stack(importance, axis=1), np.stack(predictions, axis=1)


def _held_out_r2(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(N, K), (N, K) -> (K,) R^2 of each factor."""
    return np.asarray(r2_score(true, predicted, multioutput="raw_values"))


def dci(
    codes: np.ndarray,
    factors: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    regressor: Literal["lasso", "trees"] = "lasso",
    factor_names: tuple[str, ...] | None = None,
    seed: int = 0,
) -> dict:
    """DCI (Eastwood & Williams 2018) with informativeness as held-out R^2 per factor and their mean.

    ``regressor="lasso"``: scikit-learn ``Lasso`` with alpha = :func:`lasso_alpha` on codes and
    factors standardised on the training rows; importance = |weight|. ``"trees"``: per factor an
    ``ExtraTreesRegressor`` with 30 trees, ``min_samples_leaf=5``, all axes tried at each split,
    fitted to at most 3,000 training rows drawn without replacement by ``seed``; importance =
    impurity importance. Fitted on ``train_idx``,
    R^2 on ``test_idx``. Needs at least two latent axes and two factors, none constant on the
    training rows.
    """
    codes, factors = _check(codes, factors)
    train_idx, test_idx = _check_split(train_idx, test_idx, len(codes))
    names = _names(factor_names, factors.shape[1])
    if codes.shape[1] < 2 or factors.shape[1] < 2:
        raise AtlasError(f"DCI needs at least two latent axes and two factors, got {codes.shape[1]} and "
                         f"{factors.shape[1]}")
    if np.any(np.ptp(factors[train_idx], axis=0) == 0):
        constant = [n for n, p in zip(names, np.ptp(factors[train_idx], axis=0)) if p == 0]
        raise AtlasError(f"factor(s) {', '.join(constant)} constant on the training rows: DCI cannot fit them")
    if regressor == "lasso":
        importance, predictions = _lasso_importance(codes[train_idx], factors[train_idx], codes[test_idx])
        settings = {"regressor": "lasso", "alpha": lasso_alpha(len(train_idx)), "standardised": True}
    elif regressor == "trees":
        rng = np.random.default_rng(seed)
        rows = train_idx if len(train_idx) <= TREE_TRAIN_ROWS else rng.choice(train_idx, TREE_TRAIN_ROWS, replace=False)
        importance, predictions = _tree_importance(codes[rows], factors[rows], codes[test_idx], seed)
        settings = {"regressor": "extra_trees", "n_estimators": TREES, "min_samples_leaf": TREE_MIN_LEAF,
                    "train_rows": int(len(rows)), "seed": int(seed)}
    else:
        raise AtlasError(f"unknown DCI regressor {regressor!r}; use 'lasso' or 'trees'")
    r2 = _held_out_r2(factors[test_idx], predictions)  # (K,)
    return {
        **dci_from_importance(importance, names),
        "informativeness": float(r2.mean()),
        "informativeness_per_factor": {name: float(v) for name, v in zip(names, r2)},
        "settings": {**settings, "n_train": int(len(train_idx)), "n_test": int(len(test_idx))},
    }


def explicitness(
    codes: np.ndarray,
    factors: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    factor_names: tuple[str, ...] | None = None,
    n_neighbors: int = EXPLICITNESS_NEIGHBOURS,
) -> dict:
    """Held-out R^2 of k-nearest-neighbour regression (Euclidean, uniform weights) from codes to each factor.

    Nonlinear and local, so any smooth one-to-one encoding scores near 1; Euclidean distances make it
    invariant to rotating, translating or uniformly scaling the codes (not to scaling one axis).
    Random codes score slightly below 0 (about -1 / n_neighbors).
    """
    codes, factors = _check(codes, factors)
    train_idx, test_idx = _check_split(train_idx, test_idx, len(codes))
    names = _names(factor_names, factors.shape[1])
    if not 1 <= n_neighbors <= len(train_idx):
        raise AtlasError(f"n_neighbors must be between 1 and the {len(train_idx)} training rows, got {n_neighbors}")
    model = KNeighborsRegressor(n_neighbors=n_neighbors).fit(codes[train_idx], factors[train_idx])
    r2 = _held_out_r2(factors[test_idx], model.predict(codes[test_idx]).reshape(len(test_idx), -1))  # (K,)
    return {
        "explicitness": float(r2.mean()),
        "per_factor": {name: float(v) for name, v in zip(names, r2)},
        "settings": {"regressor": "knn", "n_neighbors": int(n_neighbors),
                     "n_train": int(len(train_idx)), "n_test": int(len(test_idx))},
    }


def factorvae_score(
    batch_codes: np.ndarray,
    fixed_factor: np.ndarray,
    global_scale: np.ndarray,
    n_factors: int | None = None,
    *,
    train_fraction: float = 0.5,
    active: np.ndarray | None = None,
    factor_names: tuple[str, ...] | None = None,
) -> dict:
    """FactorVAE score (Kim & Mnih 2018): accuracy of a majority-vote classifier on held-out votes.

    ``batch_codes`` (V, B, D) are the codes of V batches, batch v made with factor ``fixed_factor[v]``
    held fixed; ``global_scale`` (D,) is each axis' standard deviation over the whole data set. Each
    batch votes (argmin over active axes of the batch variance of codes / global_scale, fixed factor);
    the classifier maps each axis to the factor it got most votes for among the first
    ``round(V * train_fraction)`` votes (ties to the lower factor index, axes with no votes to
    factor 0) and is scored on the remaining votes. Axes with zero global scale, or off in
    ``active`` (D,) bool, never get a vote. Chance is 1 / n_factors.
    """
    batch_codes = np.asarray(batch_codes, dtype=np.float64)
    fixed_factor, global_scale = np.asarray(fixed_factor), np.asarray(global_scale, dtype=np.float64)
    if batch_codes.ndim != 3 or batch_codes.shape[1] < 2 or not np.isfinite(batch_codes).all():
        raise AtlasError(f"batch_codes must be finite (V, B, D) with batches of at least 2, got {batch_codes.shape}")
    n_votes, _, n_latents = batch_codes.shape
    if n_votes < 2:
        raise AtlasError(f"FactorVAE needs at least 2 votes (batches), got {n_votes}")
    if fixed_factor.shape != (n_votes,) or not np.issubdtype(fixed_factor.dtype, np.integer) or fixed_factor.min() < 0:
        raise AtlasError(f"fixed_factor must be ({n_votes},) non-negative factor indices, got {fixed_factor.shape}")
    n_factors = int(fixed_factor.max()) + 1 if n_factors is None else int(n_factors)
    if fixed_factor.max() >= n_factors:
        raise AtlasError(f"fixed_factor has index {fixed_factor.max()} but there are {n_factors} factors")
    if global_scale.shape != (n_latents,) or not np.isfinite(global_scale).all() or global_scale.min() < 0:
        raise AtlasError(f"global_scale must be ({n_latents},) finite non-negative scales, got {global_scale.shape}")
    active = np.ones(n_latents, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    if active.shape != (n_latents,):
        raise AtlasError(f"active must be a ({n_latents},) bool mask, got shape {active.shape}")
    active = active & (global_scale > 0)
    if not active.any():
        raise AtlasError("FactorVAE needs at least one active latent axis with a positive global scale")
    n_train = int(round(n_votes * train_fraction))
    if not 1 <= n_train < n_votes:
        raise AtlasError(f"train_fraction {train_fraction} leaves no training or no held-out votes of {n_votes}")
    names = _names(factor_names, n_factors)
    scale = np.where(active, global_scale, 1.0)  # (D,)
    variances = np.var(batch_codes / scale, axis=1, ddof=1)  # (V, D)
    votes = np.where(active, variances, np.inf).argmin(axis=1)  # (V,)
    counts = np.zeros((n_latents, n_factors), dtype=np.int64)  # (D, K) training votes
    np.add.at(counts, (votes[:n_train], fixed_factor[:n_train]), 1)
    classifier = counts.argmax(axis=1)  # (D,)
    correct = classifier[votes] == fixed_factor  # (V,)
    held_out = np.arange(n_votes) >= n_train
    per_factor = {
        name: float(correct[held_out & (fixed_factor == k)].mean()) if np.any(held_out & (fixed_factor == k)) else None
        for k, name in enumerate(names)
    }
    return {
        "factorvae": float(correct[held_out].mean()),
        "train_accuracy": float(correct[~held_out].mean()),
        "chance": 1.0 / n_factors,
        "per_factor": per_factor,
        "latent_to_factor": [names[k] if counts[d].any() else None for d, k in enumerate(classifier)],
        "votes": counts.tolist(),
        "active": active.tolist(),
        "n_train_votes": n_train,
        "n_eval_votes": int(n_votes - n_train),
        "batch_size": int(batch_codes.shape[1]),
    }


def uniform_box_sampler(low: np.ndarray, high: np.ndarray) -> Callable[[int, np.random.Generator], np.ndarray]:
    """A ``sample_factors(n, rng) -> (n, K)`` that draws every factor independently, uniformly in [low, high]."""
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    if low.ndim != 1 or low.shape != high.shape or not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise AtlasError(f"low {low.shape} and high {high.shape} must be finite (K,) bounds")
    if np.any(high < low):
        raise AtlasError("every high bound must be at least its low bound")

    def sample(n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(low, high, size=(n, len(low)))  # (n, K)

    return sample


def interventional_batches(
    sample_factors: Callable[[int, np.random.Generator], np.ndarray],
    render: Callable[[np.ndarray], np.ndarray],
    encode: Callable[[np.ndarray], np.ndarray],
    n_votes: int,
    batch_size: int,
    rng: np.random.Generator,
    chunk_images: int = 8192,
) -> tuple[np.ndarray, np.ndarray]:
    """Batches with one factor held fixed, rendered and encoded: ((V, B, D) codes, (V,) fixed factor index).

    For each of ``n_votes`` batches: a factor index uniformly at random, ``batch_size`` factor rows from
    ``sample_factors``, and the fixed factor set in all of them to one more draw of ``sample_factors``
    (so with :func:`uniform_box_sampler`, a value uniform over the data's range). ``render(factors)``
    gives the images and ``encode(images)`` their (n, D) codes (for a project model:
    ``lambda images: inference.encode(model, images)[0]``). Images go through in chunks of about
    ``chunk_images``; every random draw happens first, so the chunk size does not change the result.
    """
    if n_votes < 2 or batch_size < 2:
        raise AtlasError(f"need at least 2 votes and batches of at least 2, got {n_votes} and {batch_size}")
    factors = np.asarray(sample_factors(n_votes * batch_size, rng), dtype=np.float64)  # (V * B, K)
    if factors.ndim != 2 or len(factors) != n_votes * batch_size:
        raise AtlasError(f"sample_factors({n_votes * batch_size}, rng) returned shape {factors.shape}, not (n, K)")
    n_factors = factors.shape[1]
    factors = factors.reshape(n_votes, batch_size, n_factors)  # (V, B, K)
    fixed_factor = rng.integers(n_factors, size=n_votes)  # (V,)
    fixed_values = np.asarray(sample_factors(n_votes, rng), dtype=np.float64)[np.arange(n_votes), fixed_factor]
    factors[np.arange(n_votes), :, fixed_factor] = fixed_values[:, None]
    per_chunk = max(1, chunk_images // batch_size)
    chunks = []
    for start in range(0, n_votes, per_chunk):
        part = factors[start : start + per_chunk].reshape(-1, n_factors)  # (m * B, K)
        codes = np.asarray(encode(render(part)), dtype=np.float64)
        if codes.ndim != 2 or len(codes) != len(part):
            raise AtlasError(f"encode returned shape {codes.shape} for {len(part)} images, not (n, D)")
        chunks.append(codes.reshape(-1, batch_size, codes.shape[1]))
    return np.concatenate(chunks), fixed_factor


def interventional_factorvae(
    sample_factors: Callable[[int, np.random.Generator], np.ndarray],
    render: Callable[[np.ndarray], np.ndarray],
    encode: Callable[[np.ndarray], np.ndarray],
    global_scale: np.ndarray,
    rng: np.random.Generator,
    n_votes: int = FACTORVAE_VOTES,
    batch_size: int = FACTORVAE_BATCH,
    factor_names: tuple[str, ...] | None = None,
    active: np.ndarray | None = None,
) -> dict:
    """:func:`interventional_batches` then :func:`factorvae_score` (half the votes train, half are held out).

    ``global_scale`` (D,) is the per-axis standard deviation of the model's codes of the whole data
    set, e.g. ``latents.codes.std(axis=0)``.
    """
    batch_codes, fixed_factor = interventional_batches(sample_factors, render, encode, n_votes, batch_size, rng)
    n_factors = len(factor_names) if factor_names is not None else None
    score = factorvae_score(batch_codes, fixed_factor, global_scale, n_factors, active=active,
                            factor_names=factor_names)
    return {**score, "intervention": "per batch one factor, chosen uniformly, is held at one draw of "
                                     "sample_factors; the other factors are drawn by sample_factors"}


def continuous_metrics(
    codes: np.ndarray,
    factors: np.ndarray,
    factor_names: tuple[str, ...],
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    seed: int = 0,
) -> dict:
    """Quantile MIG (20 bins, and at 5, 10, 20, 40), DCI with a Lasso and with extra trees, and explicitness.

    MIG uses every row; the regressors fit on ``train_idx`` and score R^2 on ``test_idx``; ``seed``
    draws the trees' training subsample and seeds the forests. ``rotation_invariance`` says which
    scores a rotation of the codes leaves unchanged. The FactorVAE score needs the model and the
    renderer: see :func:`interventional_factorvae`.
    """
    codes, factors = _check(codes, factors)
    names = _names(factor_names, factors.shape[1])
    return {
        "mig": quantile_mig(codes, factors, MIG_BINS, names),
        "mig_bins": mig_bin_sensitivity(codes, factors, MIG_SENSITIVITY_BINS, names),
        "dci_lasso": dci(codes, factors, train_idx, test_idx, "lasso", names, seed),
        "dci_trees": dci(codes, factors, train_idx, test_idx, "trees", names, seed),
        "explicitness": explicitness(codes, factors, train_idx, test_idx, names),
        "rotation_invariance": {key: dict(claim) for key, claim in ROTATION_INVARIANCE.items()},
    }


def _correlation_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, D), (N, K) -> (D, K) Pearson correlations; 0 where a column is constant."""
    a, b = a - a.mean(axis=0), b - b.mean(axis=0)
    norms = np.outer(np.linalg.norm(a, axis=0), np.linalg.norm(b, axis=0))  # (D, K)
    return np.divide(a.T @ b, norms, out=np.zeros(norms.shape), where=norms > 0)


def factor_correlations(codes: np.ndarray, factors: np.ndarray, factor_names: tuple[str, ...]) -> dict:
    """|Spearman| rank correlation between each latent axis (rows) and each factor (columns)."""
    codes, factors = _check(codes, factors)
    if len(factor_names) != factors.shape[1]:
        raise AtlasError(f"{len(factor_names)} factor names for {factors.shape[1]} factor columns")
    table = np.abs(_correlation_matrix(rankdata(codes, axis=0), rankdata(factors, axis=0)))  # (D, K)
    return {
        "latent_names": [f"z{d}" for d in range(codes.shape[1])],
        "factor_names": list(factor_names),
        "abs_spearman": table.tolist(),
        "best_latent": {name: int(i) for name, i in zip(factor_names, table.argmax(axis=0))},
    }
