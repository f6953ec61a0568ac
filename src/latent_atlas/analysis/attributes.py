"""Attribute vectors ("latent arithmetic" done properly): a code-space direction per factor, judged by the oracle.

:class:`AttributeDirections` estimates, from codes and their true factors, the direction in code space
along which one factor changes by one standard deviation:

* ``method="regression"``: a linear regression of the codes on the standardised factors (scikit-learn
  ``LinearRegression``, all factors at once); factor k's direction is its coefficient column, the change
  of the code per SD of factor k with the other factors held fixed;
* ``method="quantile_means"``: the classical attribute vector, the mean code of the images in the top
  ``quantile`` of factor k minus that of the bottom ``quantile``, divided by the difference of the two
  groups' mean standardised factor (so also per SD; the other factors are not held fixed).

:func:`evaluate_directions` moves held-out codes along each direction (z + alpha * v), decodes them,
reads the factors back with the oracle and reports how much the intended factor moved (per unit alpha,
in its SDs; 1 is the promise of the direction) and how far the others drifted, beside random directions
of the same norm as the null.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.linear_model import LinearRegression

from ..errors import AtlasError
from .imputation import Recover, oracle_factors
from .neighbours import as_codes

ATTRIBUTE_METHODS = ("regression", "quantile_means")
DEFAULT_ALPHAS = (-1.0, -0.5, 0.5, 1.0)


class AttributeDirections:
    """One code-space direction per factor, in code units per SD of the factor (module docstring)."""

    def __init__(self, method: str = "regression", quantile: float = 0.25):
        if method not in ATTRIBUTE_METHODS:
            raise AtlasError(f"unknown attribute method {method!r}; choose one of {', '.join(ATTRIBUTE_METHODS)}")
        if not 0.0 < quantile <= 0.5:
            raise AtlasError(f"quantile must lie in (0, 0.5], got {quantile}")
        self.method = method
        self.quantile = quantile

    def fit(self, codes: np.ndarray, factors: np.ndarray, factor_names: tuple[str, ...] | None = None
            ) -> AttributeDirections:
        codes = as_codes(codes, min_count=2)
        factors = as_codes(factors, "factors", min_count=2)
        if len(codes) != len(factors):
            raise AtlasError(f"codes ({len(codes)}) and factors ({len(factors)}) must have the same rows")
        names = tuple(factor_names) if factor_names is not None else tuple(f"f{k}" for k in range(factors.shape[1]))
        if len(names) != factors.shape[1]:
            raise AtlasError(f"{len(names)} factor names for {factors.shape[1]} factor columns")
        scale = factors.std(axis=0)
        if (scale == 0).any():
            raise AtlasError(f"factors {[n for n, s in zip(names, scale) if s == 0]} are constant: no direction")
        self.factor_names_ = names
        self.factor_mean_, self.factor_scale_ = factors.mean(axis=0), scale
        standardised = (factors - self.factor_mean_) / scale  # (N, K)
        if self.method == "regression":
            regression = LinearRegression().fit(standardised, codes)
            self.directions_ = regression.coef_.T.copy()  # (K, D)
            self.r2_ = float(regression.score(standardised, codes))
        else:
            self.directions_ = np.stack([self._mean_difference(codes, column) for column in standardised.T])
        return self

    def _mean_difference(self, codes: np.ndarray, factor: np.ndarray) -> np.ndarray:
        low = factor <= np.quantile(factor, self.quantile)
        high = factor >= np.quantile(factor, 1.0 - self.quantile)
        if not low.any() or not high.any() or (low & high).all():
            raise AtlasError("the factor's top and bottom quantile groups coincide: no direction")
        step = factor[high].mean() - factor[low].mean()
        return (codes[high].mean(axis=0) - codes[low].mean(axis=0)) / step

    def direction(self, name: str) -> np.ndarray:
        """(D,) the direction of one factor."""
        if name not in self.factor_names_:
            raise AtlasError(f"unknown factor {name!r}; directions exist for {', '.join(self.factor_names_)}")
        return self.directions_[self.factor_names_.index(name)]


def _direction_summary(change: np.ndarray, alphas: np.ndarray, k: int) -> dict[str, Any]:
    """Scores of one direction from (A, M, K) factor changes in SDs at the (A,) step sizes, intended factor k."""
    intended = change[:, :, k]  # (A, M)
    slope = float((alphas[:, None] * intended).sum() / (alphas**2).sum() / intended.shape[1])
    agreement = float((np.sign(intended) == np.sign(alphas)[:, None]).mean())
    drift = (np.abs(change) / np.abs(alphas)[:, None, None]).mean(axis=(0, 1))  # (K,) mean |change| per unit alpha
    others_drift = float(np.delete(drift, k).mean()) if len(drift) > 1 else 0.0
    moved = abs(slope) + others_drift
    return {"slope": slope, "sign_agreement": agreement, "drift": drift, "others_drift": others_drift,
            "selectivity": abs(slope) / moved if moved > 0 else 0.0}


def evaluate_directions(
    attributes: AttributeDirections,
    codes: np.ndarray,
    decode: Callable[[np.ndarray], np.ndarray],
    recover: Recover,
    alphas: tuple[float, ...] = DEFAULT_ALPHAS,
    n_random: int = 16,
    max_codes: int | None = 64,
    null_codes: int = 8,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Move held-out ``codes`` (M, D) along each fitted direction and read the factors back.

    For factor k with direction v_k and each alpha, the codes z + alpha * v_k are decoded
    (``decode(codes) -> images``) and read by ``recover(images)`` (an (N, K) array in the fitted factors'
    order, or a result with ``.factors`` and ``.factor_names``, e.g. ``HeatmapOracle.recover``). Changes
    are taken against the oracle's reading of the decoded unshifted codes (so reconstruction error is not
    counted as movement) and expressed in SDs of each factor (the fit's ``factor_scale_``). Per factor:

    * ``slope``: least-squares change of factor k per unit alpha, pooled over codes (1 = as promised);
      ``slope_units`` the same in the factor's own units;
    * ``sign_agreement``: fraction of (code, alpha) where factor k moved the way alpha points;
    * ``others_drift``: mean |change| per unit |alpha| of the other factors (SDs), ``drift`` per factor;
    * ``selectivity``: |slope| / (|slope| + others_drift), 1 when only the intended factor moves;
    * ``null``: the same for ``n_random`` directions uniform on the sphere of |v_k|'s norm, each applied
      to the same ``null_codes`` of the codes (drawn by ``rng``): median and 95th percentile of |slope|, median
      ``others_drift``, sign agreement and selectivity, and ``slope_exceeded`` / ``selectivity_exceeded``,
      the fraction of random directions whose |slope| / selectivity reaches the direction's (a random
      direction may move the factor more, but then it moves the others too);
    * ``valid_fraction`` of the direction's shifted decodes when the oracle gives a verdict.

    At most ``max_codes`` codes (drawn by ``rng`` without replacement) are used. The work is
    M + K x len(alphas) x (M + n_random x null_codes) decodes and oracle fits: 2,368 with the defaults
    and three factors. Returns ``{"n_codes", "n_null_codes", "alphas", "factors": factor name -> the
    scores above}``.
    """
    codes = as_codes(codes)
    rng = rng if rng is not None else np.random.default_rng(0)
    directions = attributes.directions_  # (K, D)
    if codes.shape[1] != directions.shape[1]:
        raise AtlasError(f"codes have {codes.shape[1]} dimensions, the directions {directions.shape[1]}")
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or len(alphas) == 0 or (alphas == 0).any():
        raise AtlasError(f"alphas must be a non-empty list of non-zero step sizes, got {alphas.tolist()}")
    if n_random < 0 or null_codes < 1:
        raise AtlasError(f"n_random must be >= 0 and null_codes >= 1, got {n_random} and {null_codes}")
    if max_codes is not None and len(codes) > max_codes:
        codes = codes[np.sort(rng.choice(len(codes), max_codes, replace=False))]
    names = attributes.factor_names_
    n_factors, dim = directions.shape
    n_codes, n_null, n_alphas = len(codes), min(null_codes, len(codes)), len(alphas)
    random = rng.standard_normal((n_factors, n_random, dim))  # (K, R, D)
    random *= np.linalg.norm(directions, axis=1)[:, None, None] / np.linalg.norm(random, axis=2, keepdims=True)
    steps = alphas[:, None, None]  # (A, 1, 1)
    along = codes + steps * directions[:, None, None, :]  # (K, A, M, D)
    null_rows = np.sort(rng.choice(n_codes, n_null, replace=False))  # a random subset: codes may come sorted
    across = codes[null_rows] + steps * random[:, :, None, None, :]  # (K, R, A, M0, D)
    points = np.concatenate([codes, along.reshape(-1, dim), across.reshape(-1, dim)])
    recovered, valid = oracle_factors(recover, decode(points), names)
    base, recovered = recovered[:n_codes], recovered[n_codes:] / attributes.factor_scale_
    base = base / attributes.factor_scale_
    split = n_factors * n_alphas * n_codes
    change = recovered[:split].reshape(n_factors, n_alphas, n_codes, n_factors) - base  # (K, A, M, K)
    null_change = recovered[split:].reshape(n_factors, n_random, n_alphas, n_null, n_factors) - base[null_rows]
    result: dict[str, dict[str, Any]] = {}
    for k, name in enumerate(names):
        summary = _direction_summary(change[k], alphas, k)
        null = [_direction_summary(null_change[k, r], alphas, k) for r in range(n_random)]
        null_slopes = np.abs([s["slope"] for s in null])
        entry = {
            "slope": summary["slope"],
            "slope_units": summary["slope"] * float(attributes.factor_scale_[k]),
            "sign_agreement": summary["sign_agreement"],
            "others_drift": summary["others_drift"],
            "selectivity": summary["selectivity"],
            "drift": {other: float(d) for other, d in zip(names, summary["drift"]) if other != name},
            "direction_norm": float(np.linalg.norm(directions[k])),
            "null": {"n": n_random, "abs_slope_median": None, "abs_slope_p95": None, "others_drift_median": None,
                     "sign_agreement_median": None, "selectivity_median": None, "slope_exceeded": None,
                     "selectivity_exceeded": None},
        }
        if n_random:
            null_selectivity = np.array([s["selectivity"] for s in null])
            entry["null"].update(
                abs_slope_median=float(np.median(null_slopes)),
                abs_slope_p95=float(np.percentile(null_slopes, 95)),
                others_drift_median=float(np.median([s["others_drift"] for s in null])),
                sign_agreement_median=float(np.median([s["sign_agreement"] for s in null])),
                selectivity_median=float(np.median(null_selectivity)),
                slope_exceeded=float((null_slopes >= abs(summary["slope"])).mean()),
                selectivity_exceeded=float((null_selectivity >= summary["selectivity"]).mean()),
            )
        if valid is not None:
            span = n_alphas * n_codes
            entry["valid_fraction"] = float(valid[n_codes + k * span : n_codes + (k + 1) * span].mean())
        result[name] = entry
    return {"n_codes": n_codes, "n_null_codes": n_null, "alphas": alphas.tolist(), "factors": result}
