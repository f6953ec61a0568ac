"""Disentanglement scores against the known generating factors, each a pure function with known answers.

* :func:`mutual_information_gap`: MIG (Chen et al. 2018), as disentanglement_lib computes it;
* :func:`sap_score`: SAP (Kumar et al. 2018), continuous-factor form;
* :func:`factor_correlations`: the |Spearman| table between latent axes and factors.

Each is 1 for codes that are (monotone transforms of) independent factors, one axis per factor,
and near 0 for codes unrelated to them.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import mutual_info_score

from ..errors import AtlasError


def _check(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, factors = np.asarray(codes, dtype=np.float64), np.asarray(factors, dtype=np.float64)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors) or len(codes) < 2:
        raise AtlasError(f"codes {codes.shape} and factors {factors.shape} must be (N, D) and (N, K) with N >= 2")
    return codes, factors


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


def mutual_information_matrix(discrete_codes: np.ndarray, discrete_factors: np.ndarray) -> np.ndarray:
    """(D, K) mutual information in nats between each discrete code column and each discrete factor column."""
    return np.array(
        [[mutual_info_score(f, c) for f in discrete_factors.T] for c in discrete_codes.T]
    ).reshape(discrete_codes.shape[1], discrete_factors.shape[1])


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
    names = tuple(factor_names) if factor_names is not None else tuple(f"f{k}" for k in range(factors.shape[1]))
    discrete_factors = discretize_factors(factors, n_bins)
    information = mutual_information_matrix(histogram_discretize(codes, n_bins), discrete_factors)  # (D, K)
    entropy = np.array([mutual_info_score(f, f) for f in discrete_factors.T])  # (K,)
    top = np.sort(information, axis=0)[::-1]  # (D, K), largest first
    gaps = np.divide(top[0] - top[1], entropy, out=np.zeros(len(entropy)), where=entropy > 0)
    return {
        "mig": float(gaps.mean()),
        "gaps": {name: float(g) for name, g in zip(names, gaps)},
        "best_latent": {name: int(i) for name, i in zip(names, information.argmax(axis=0))},
        "mutual_information": information.tolist(),
        "factor_entropy": {name: float(h) for name, h in zip(names, entropy)},
        "n_bins": n_bins,
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


def sap_score(codes: np.ndarray, factors: np.ndarray, factor_names: tuple[str, ...] | None = None) -> dict:
    """SAP: for each factor, the gap between the two largest R^2 = corr(z_d, factor)^2 over latent axes; then the mean.

    This is the continuous-factor form of Kumar et al. (2018), the R^2 of a one-axis linear regression;
    it sees only linear relations, so it rewards axis-aligned, linear codes (MIG does not need linearity).
    """
    codes, factors = _check(codes, factors)
    if codes.shape[1] < 2:
        raise AtlasError("SAP needs at least two latent axes")
    names = tuple(factor_names) if factor_names is not None else tuple(f"f{k}" for k in range(factors.shape[1]))
    r_squared = _correlation_matrix(codes, factors) ** 2  # (D, K)
    top = np.sort(r_squared, axis=0)[::-1]
    gaps = top[0] - top[1]
    return {"sap": float(gaps.mean()), "gaps": {name: float(g) for name, g in zip(names, gaps)}}
