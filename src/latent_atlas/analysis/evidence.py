"""Threshold-free evidence for comparing validity between two groups.

A valid/invalid verdict at one threshold hides how close the call was. For two groups of shape residuals
(any scale-free residual where larger is worse and "shape ok" means ``residual <= threshold``) this module gives
the tools below. The image-level ones (``compare_validity`` and what it bundles) treat images as the units: right
for two given runs, or two regions of one run; two *model kinds* are compared over training seeds instead
(:func:`stability_over_seeds`, :func:`paired_difference_verdict`, ``study.aggregates``).

* :func:`ecdf_curves`: each group's empirical CDF (``scipy.stats.ecdf``) on one common grid;
* :func:`validity_curve`: the valid fraction as a function of the threshold (0.25x to 4x the operating point,
  log-spaced, the operating point included), with Wilson intervals;
* :func:`rank_comparison`: Mann-Whitney U and its AUC form P(residual_A > residual_B) + P(tie) / 2, with a
  DeLong interval (see the function for why DeLong);
* :func:`conclusion_stability`: does the sign of the difference of valid fractions change anywhere in a
  plausible band of thresholds (0.5x to 2x), and where is the difference significant, for two samples of images
  (two runs); :func:`stability_over_seeds` asks the same over training seeds (two model kinds);
* :func:`difference_verdict` / :func:`paired_difference_verdict`: "A > B", "B > A", "equivalent within
  ±m" (TOST) or "not detected at n = ..., minimum detectable difference ..."; :func:`adjust_family` decides a
  family of paired verdicts on Holm-adjusted p-values.

Every function returns JSON-able dicts (floats, ints, strings, lists, None; never NaN).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import expit, logit
from scipy.stats import bootstrap, ecdf, mannwhitneyu, norm, rankdata, ttest_rel
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower, TTestPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    test_proportions_2indep,
    tost_proportions_2indep,
)
from statsmodels.stats.weightstats import ttost_paired

from ..errors import AtlasError
from .holes import valid_fraction

CURVE_RANGE = (0.25, 4.0)  # the threshold curve spans these multiples of the operating point
PLAUSIBLE_BAND = (0.5, 2.0)  # thresholds within which a conclusion should not flip
PROPORTION_METHOD = "agresti-caffo"
ECDF_POINTS = 200
CURVE_POINTS = 25
BAND_POINTS = 9
SPREAD_TOLERANCE = 1e-9  # relative: values closer than this are equal (see no_spread)


def _sample(values, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise AtlasError(f"{name} must be a non-empty array of finite numbers, got {values.size} values")
    return values


def _mask(mask, size: int, name: str) -> np.ndarray:
    if mask is None:
        return np.ones(size, dtype=bool)
    mask = np.asarray(mask).ravel()
    if mask.shape != (size,) or mask.dtype != bool:
        raise AtlasError(f"{name} must be a boolean array of {size} entries, got {mask.dtype} {mask.shape}")
    return mask


def _operating_point(value: float) -> float:
    if not (np.isfinite(value) and value > 0):
        raise AtlasError(f"operating_point must be a positive threshold, got {value!r}")
    return float(value)


def _float_or_none(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"  # 0.0495 must not read as 0.05


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 0.5:
        raise AtlasError(f"alpha must lie in (0, 0.5), got {alpha!r}")


def _check_margin(margin: float) -> None:
    if not (np.isfinite(margin) and margin > 0):
        raise AtlasError(f"the equivalence margin must be positive, got {margin!r}")


def _names(names: Sequence[str]) -> tuple[str, str]:
    if len(names) != 2 or names[0] == names[1]:
        raise AtlasError(f"names must be two different labels, got {names!r}")
    return str(names[0]), str(names[1])


# -- distributions -----------------------------------------------------------------------------------


def common_grid(samples: Sequence[np.ndarray], n_points: int = ECDF_POINTS, log: bool = True,
                include: Sequence[float] = ()) -> np.ndarray:
    """(n,) ascending grid spanning every sample: log-spaced between the smallest positive and the largest value
    (residuals span orders of magnitude), linear when ``log`` is False or nothing is positive. ``include`` adds
    exact values (an operating point) to the grid."""
    if int(n_points) != n_points or n_points < 2:
        raise AtlasError(f"n_points must be an integer >= 2, got {n_points!r}")
    pooled = np.concatenate([_sample(s, "each sample") for s in samples])
    positive = pooled[pooled > 0]
    low, high = pooled.min(), pooled.max()
    if log and positive.size and positive.max() > positive.min():
        grid = np.geomspace(positive.min(), positive.max(), int(n_points))
    else:
        grid = np.linspace(low, high if high > low else low + 1.0, int(n_points))
    return np.unique(np.r_[grid, np.asarray(include, dtype=np.float64)])


def ecdf_curves(groups: Mapping[str, np.ndarray], grid: np.ndarray | None = None, n_points: int = ECDF_POINTS,
                include: Sequence[float] = ()) -> dict[str, Any]:
    """Each group's empirical CDF P(residual <= x) (``scipy.stats.ecdf``) evaluated on one common grid.

    Returns {"grid": [...], "groups": {name: {"n", "cdf": [...], "median", "p90", "p99"}}}.
    """
    if len(groups) == 0:
        raise AtlasError("ecdf_curves needs at least one group")
    samples = {name: _sample(values, f"residuals of {name!r}") for name, values in groups.items()}
    grid = common_grid(list(samples.values()), n_points, include=include) if grid is None else np.asarray(grid, float)
    out: dict[str, Any] = {"grid": grid.tolist(), "groups": {}}
    for name, values in samples.items():
        median, p90, p99 = np.quantile(values, [0.5, 0.9, 0.99])
        out["groups"][name] = {"n": int(values.size), "cdf": ecdf(values).cdf.evaluate(grid).tolist(),
                               "median": float(median), "p90": float(p90), "p99": float(p99)}
    return out


def threshold_multipliers(low: float = CURVE_RANGE[0], high: float = CURVE_RANGE[1],
                          n_points: int = CURVE_POINTS) -> np.ndarray:
    """(m,) log-spaced multiples of the operating point from ``low`` to ``high``, 1 always among them."""
    if not 0 < low <= 1 <= high:
        raise AtlasError(f"the threshold range must satisfy 0 < low <= 1 <= high, got ({low!r}, {high!r})")
    if int(n_points) != n_points or n_points < 1:
        raise AtlasError(f"n_points must be a positive integer, got {n_points!r}")
    return np.unique(np.r_[np.geomspace(low, high, int(n_points)), 1.0])


def validity_curve(residuals: np.ndarray, operating_point: float, in_range: np.ndarray | None = None,
                   multipliers: np.ndarray | None = None, confidence: float = 0.95) -> dict[str, Any]:
    """The valid fraction, (residual <= t) & in_range, as a curve over thresholds t = multiplier x operating point.

    ``in_range`` (optional, bool per residual) is the part of validity that does not depend on the shape
    threshold. Each point carries its Wilson interval (:func:`holes.valid_fraction`); ``operating_index`` marks
    the operating point on the curve.
    """
    residuals = _sample(residuals, "residuals")
    in_range = _mask(in_range, residuals.size, "in_range")
    operating_point = _operating_point(operating_point)
    multipliers = threshold_multipliers() if multipliers is None else np.unique(np.r_[multipliers, 1.0])
    thresholds = operating_point * multipliers
    points = [valid_fraction((residuals <= t) & in_range, confidence) for t in thresholds]
    index = int(np.flatnonzero(multipliers == 1.0)[0])
    return {
        "operating_point": operating_point,
        "operating_index": index,
        "multipliers": multipliers.tolist(),
        "thresholds": thresholds.tolist(),
        "fraction": [p["fraction"] for p in points],
        "low": [p["low"] for p in points],
        "high": [p["high"] for p in points],
        "n": int(residuals.size),
        "n_in_range": int(in_range.sum()),
        "confidence": confidence,
        "at_operating_point": points[index],
    }


# -- rank statistic ----------------------------------------------------------------------------------


def delong_placements(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's placement values: for each a_i the share of b below it (ties count 1/2), and for each b_j the share
    of a above it. Both average to the AUC P(A > B) + P(A = B) / 2. From mid-ranks: the pooled rank of a_i minus
    its rank within a counts the b below it."""
    pooled = rankdata(np.r_[a, b])  # (n_a + n_b,)
    below_a = pooled[: a.size] - rankdata(a)  # (n_a,)
    below_b = pooled[a.size :] - rankdata(b)  # (n_b,) a below each b_j
    return below_a / b.size, 1.0 - below_b / a.size


def _auc_statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    result = mannwhitneyu(a, b, axis=axis, method="asymptotic")
    return result.statistic / (a.shape[axis] * b.shape[axis])


def rank_comparison(residuals_a: np.ndarray, residuals_b: np.ndarray, confidence: float = 0.95,
                    method: str = "delong", n_resamples: int = 2000,
                    rng: np.random.Generator | int | None = None) -> dict[str, Any]:
    """Mann-Whitney U between two residual samples and its AUC form, U / (n_a n_b) = P(A > B) + P(A = B) / 2.

    AUC 0.5: neither group's residuals tend to be larger; above 0.5: group A's residuals are larger (worse). The
    p-value is ``scipy.stats.mannwhitneyu``'s two-sided one. The interval:

    * ``"delong"`` (default): DeLong et al. (1988)'s variance of the U statistic from its placement values
      (exact for the estimator, ties included, no resampling, so deterministic and O(n log n)), turned into an
      interval on the logit scale so it stays inside (0, 1) and covers better near the ends. Hanley-McNeil
      assumes a particular shape of both distributions, which residuals do not follow. At perfect separation
      (AUC 0 or 1) the variance is 0 and the interval collapses to the point, as a bootstrap's would.
    * ``"bootstrap"``: ``scipy.stats.bootstrap`` (BCa, each group resampled independently, ``n_resamples``,
      seeded by ``rng``); seconds rather than microseconds, kept as a check of the DeLong interval.
    """
    a, b = _sample(residuals_a, "residuals_a"), _sample(residuals_b, "residuals_b")
    if not 0 < confidence < 1:
        raise AtlasError(f"confidence must lie in (0, 1), got {confidence!r}")
    test = mannwhitneyu(a, b, alternative="two-sided")
    auc = float(test.statistic) / (a.size * b.size)
    if method == "delong":
        placements_a, placements_b = delong_placements(a, b)
        variance = (placements_a.var(ddof=1) / a.size if a.size > 1 else 0.0) + (
            placements_b.var(ddof=1) / b.size if b.size > 1 else 0.0)
        standard_error = float(np.sqrt(variance))
        if 0 < auc < 1:
            half = norm.ppf(0.5 + confidence / 2) * standard_error / (auc * (1 - auc))
            low, high = expit(logit(auc) - half), expit(logit(auc) + half)
        else:
            low = high = auc
    elif method == "bootstrap":
        if not 0 < auc < 1 or np.ptp(np.r_[a, b]) == 0:  # every resample gives the same AUC: BCa is undefined
            low = high = auc
            standard_error = 0.0
        else:
            result = bootstrap((a, b), _auc_statistic, n_resamples=n_resamples, confidence_level=confidence,
                               vectorized=True, rng=np.random.default_rng(rng))
            low, high = result.confidence_interval
            standard_error = float(result.standard_error)
    else:
        raise AtlasError(f"method must be 'delong' or 'bootstrap', got {method!r}")
    return {
        "u": float(test.statistic),
        "auc": auc,
        "auc_low": float(low),
        "auc_high": float(high),
        "standard_error": standard_error,
        "p_value": _float_or_none(test.pvalue),
        "n_a": int(a.size),
        "n_b": int(b.size),
        "confidence": confidence,
        "interval": method,
        "meaning": "P(residual of A > residual of B) + P(tie) / 2; above 0.5 means A's residuals are larger",
    }


# -- two proportions ---------------------------------------------------------------------------------


def _counts(valid, name: str) -> tuple[int, int]:
    valid = np.asarray(valid).ravel()
    if valid.dtype != bool or valid.size == 0:
        raise AtlasError(f"{name} must be a non-empty boolean array, got {valid.dtype} {valid.shape}")
    return int(valid.sum()), int(valid.size)


def _quiet():
    """statsmodels' result objects divide by zero on the way when a proportion is 0 or 1; the numbers it returns
    (Agresti-Caffo adds one success and one failure per group) are still right."""
    return np.errstate(divide="ignore", invalid="ignore")


def proportion_difference(count_a: int, n_a: int, count_b: int, n_b: int, alpha: float = 0.05) -> dict[str, Any]:
    """p_a - p_b with its (1 - alpha) interval and the two-sided test of equality (statsmodels'
    ``confint_proportions_2indep`` / ``test_proportions_2indep``, Agresti-Caffo: defined at 0 % and 100 %, where
    the score method fails and the Wald one degenerates, with good small-sample coverage)."""
    _check_alpha(alpha)
    if not (0 <= count_a <= n_a and 0 <= count_b <= n_b and n_a > 0 and n_b > 0):
        raise AtlasError(f"counts must satisfy 0 <= count <= n, n > 0; got {count_a}/{n_a} and {count_b}/{n_b}")
    with _quiet():
        test = test_proportions_2indep(count_a, n_a, count_b, n_b, method=PROPORTION_METHOD)
        low, high = confint_proportions_2indep(count_a, n_a, count_b, n_b, method=PROPORTION_METHOD, alpha=alpha)
    return {
        "fraction_a": count_a / n_a, "fraction_b": count_b / n_b, "n_a": int(n_a), "n_b": int(n_b),
        "difference": count_a / n_a - count_b / n_b, "low": float(low), "high": float(high),
        "confidence": 1 - alpha, "p_value": _float_or_none(test.pvalue), "method": PROPORTION_METHOD,
    }


def equivalence_proportions(count_a: int, n_a: int, count_b: int, n_b: int, margin: float,
                            alpha: float = 0.05) -> dict[str, Any]:
    """TOST for |p_a - p_b| < margin (statsmodels ``tost_proportions_2indep``, Agresti-Caffo). ``equivalent``:
    both one-sided nulls rejected at ``alpha``, i.e. the (1 - 2 alpha) interval of the difference lies within
    ±margin."""
    _check_alpha(alpha)
    _check_margin(margin)
    difference = proportion_difference(count_a, n_a, count_b, n_b, alpha=2 * alpha)
    with _quiet():
        tost = tost_proportions_2indep(count_a, n_a, count_b, n_b, -margin, margin, method=PROPORTION_METHOD)
    p_value = _float_or_none(tost.pvalue)
    return {"margin": float(margin), "alpha": alpha, "p_value": p_value,
            "equivalent": bool(p_value is not None and p_value < alpha),
            "difference": difference["difference"], "interval_1_minus_2alpha": [difference["low"], difference["high"]],
            "method": PROPORTION_METHOD}


def minimum_detectable_difference(n_a: int, n_b: int, baseline: float, alpha: float = 0.05,
                                  power: float = 0.8) -> dict[str, Any]:
    """The smallest difference of two proportions a two-sided test at ``alpha`` detects with ``power``.

    statsmodels' ``NormalIndPower`` solves for Cohen's h = 2 asin(sqrt(p_a)) - 2 asin(sqrt(p_b)) at these n;
    h is turned into proportions around ``baseline`` both ways (``up``: baseline to a larger p, ``down``: to a
    smaller one; None where that leaves [0, 1]). ``mdd`` is the larger feasible one: a true difference at least
    that large, either way, would have been detected with probability ``power``.
    """
    _check_alpha(alpha)
    if not (0 < power < 1 and 0 <= baseline <= 1 and n_a > 0 and n_b > 0):
        raise AtlasError(f"need 0 < power < 1, 0 <= baseline <= 1, n > 0; got {power!r}, {baseline!r}, {n_a}, {n_b}")
    h = float(NormalIndPower().solve_power(effect_size=None, nobs1=n_a, alpha=alpha, power=power,
                                           ratio=n_b / n_a, alternative="two-sided"))
    phi = 2 * np.arcsin(np.sqrt(baseline))
    up = float(np.sin((phi + h) / 2) ** 2 - baseline) if phi + h <= np.pi else None
    down = float(baseline - np.sin((phi - h) / 2) ** 2) if phi - h >= 0 else None
    feasible = [d for d in (up, down) if d is not None]
    return {"mdd": max(feasible) if feasible else None, "up": up, "down": down, "cohens_h": h,
            "baseline": float(baseline), "n_a": int(n_a), "n_b": int(n_b), "alpha": alpha, "power": power}


def difference_verdict(valid_a: np.ndarray, valid_b: np.ndarray, margin: float = 0.05, alpha: float = 0.05,
                       power: float = 0.8, names: Sequence[str] = ("A", "B")) -> dict[str, Any]:
    """One sentence for "is group A's valid fraction different from B's?", from two boolean arrays.

    In order: a significant two-sided difference gives "A > B" / "B > A"; otherwise a TOST at ``margin`` that
    shows equivalence gives "equivalent within ±margin"; otherwise "not detected at n = n_a / n_b", with the
    minimum detectable difference at ``power`` (around the pooled fraction). ``kind`` is the machine-readable
    form: "a_greater", "b_greater", "equivalent", "not_detected".
    """
    name_a, name_b = _names(names)
    (count_a, n_a), (count_b, n_b) = _counts(valid_a, "valid_a"), _counts(valid_b, "valid_b")
    difference = proportion_difference(count_a, n_a, count_b, n_b, alpha)
    equivalence = equivalence_proportions(count_a, n_a, count_b, n_b, margin, alpha)
    detectable = minimum_detectable_difference(n_a, n_b, (count_a + count_b) / (n_a + n_b), alpha, power)
    p = difference["p_value"]
    estimate = (f"{difference['difference']:+.3f} ({100 * (1 - alpha):g} % CI {difference['low']:+.3f} to "
                f"{difference['high']:+.3f})")
    if p is not None and p < alpha:
        kind = "a_greater" if difference["difference"] > 0 else "b_greater"
        verdict = f"{name_a} > {name_b}" if kind == "a_greater" else f"{name_b} > {name_a}"
        statement = f"{verdict}: difference {estimate}, p = {_p(p)}"
    elif equivalence["equivalent"]:
        kind, verdict = "equivalent", f"equivalent within ±{margin:g}"
        statement = f"{verdict}: difference {estimate}, TOST p = {_p(equivalence['p_value'])}"
    else:
        kind = "not_detected"
        mdd = detectable["mdd"]
        verdict = f"not detected at n = {n_a} / {n_b}" + (f", MDD {mdd:.3f}" if mdd is not None else "")
        statement = (f"{verdict} (power {power:g}, alpha {alpha:g}): difference {estimate}, p = {_p(p)}; "
                     f"not equivalent within ±{margin:g} (TOST p = {_p(equivalence['p_value'])})")
    return {"kind": kind, "verdict": verdict, "statement": statement, "names": [name_a, name_b],
            "difference": difference, "equivalence": equivalence, "minimum_detectable": detectable}


# -- paired values (one per training seed) -----------------------------------------------------------


def no_spread(values) -> bool:
    """True when the values are all equal up to floating-point rounding, so no interval or test of them exists:
    their range is at most ``SPREAD_TOLERANCE`` times their largest magnitude (or 1). Differences of fractions
    that are equal in exact arithmetic (5/12 - 4/12 and 3/12 - 2/12) differ in their last bits, and a t test of
    them would report p = 1e-32."""
    values = np.asarray(values, dtype=np.float64).ravel()
    return bool(np.ptp(values) <= SPREAD_TOLERANCE * max(1.0, float(np.abs(values).max())))


def paired_difference_verdict(values_a: np.ndarray, values_b: np.ndarray, margin: float, alpha: float = 0.05,
                              power: float = 0.8, names: Sequence[str] = ("A", "B")) -> dict[str, Any]:
    """The same sentence for paired values, e.g. one valid fraction per training seed for each model.

    A paired t test (``scipy.stats.ttest_rel``) for a difference, a paired TOST (statsmodels ``ttost_paired``)
    at ``margin`` for equivalence, and ``TTestPower`` for the minimum detectable mean difference (Cohen's d_z
    at these n times the differences' *observed* standard deviation, itself uncertain with n - 1 degrees of
    freedom). When every difference is the same number (:func:`no_spread`) no test is possible and ``kind`` is
    "constant". :func:`adjust_family` re-decides a family of such verdicts on Holm-adjusted p-values.
    """
    name_a, name_b = _names(names)
    _check_alpha(alpha)
    _check_margin(margin)
    a, b = _sample(values_a, "values_a"), _sample(values_b, "values_b")
    if a.shape != b.shape or a.size < 2:
        raise AtlasError(f"paired values need two arrays of one length >= 2, got {a.size} and {b.size}")
    differences = a - b
    mean, spread = float(differences.mean()), float(differences.std(ddof=1))
    base = {"names": [name_a, name_b], "n": int(a.size), "mean_difference": mean, "sd_difference": spread,
            "margin": float(margin), "alpha": alpha}
    if no_spread(differences):
        verdict = f"every one of the {a.size} paired differences is {mean:+.3g}"
        return {**base, "kind": "constant", "verdict": verdict, "statement": verdict + "; no test is possible",
                "p_value": None, "tost_p_value": None, "mdd": None}
    effect = float(TTestPower().solve_power(effect_size=None, nobs=a.size, alpha=alpha, power=power,
                                            alternative="two-sided"))
    return _decide_paired({**base, "p_value": float(ttest_rel(a, b).pvalue),
                           "tost_p_value": float(ttost_paired(a, b, -margin, margin)[0]), "mdd": effect * spread,
                           "power": power})


def _decide_paired(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with kind, verdict and statement decided from its p-values: the family's Holm-adjusted ones
    when it has them (``p_adjusted``), its own otherwise. In order: a difference, equivalence, not detected."""
    name_a, name_b = result["names"]
    alpha, margin, n = result["alpha"], result["margin"], result["n"]
    adjusted = "p_adjusted" in result
    p = result["p_adjusted"] if adjusted else result["p_value"]
    tost_p = result["tost_p_adjusted"] if adjusted else result["tost_p_value"]
    estimate = f"mean difference {result['mean_difference']:+.3g} (sd {result['sd_difference']:.3g}, n = {n})"
    t_text = f"paired t p = {_p(result['p_value'])}" + (f", Holm {_p(p)}" if adjusted else "")
    tost_text = f"TOST p = {_p(result['tost_p_value'])}" + (f", Holm {_p(tost_p)}" if adjusted else "")
    family = ("" if not adjusted else f" (alone in its family '{result['family']}': no adjustment)"
              if result["family_size"] == 1 else
              f" (Holm-adjusted over the {result['family_size']} tests of family '{result['family']}')")
    if p < alpha:
        kind = "a_greater" if result["mean_difference"] > 0 else "b_greater"
        verdict = f"{name_a} > {name_b}" if kind == "a_greater" else f"{name_b} > {name_a}"
        statement = f"{verdict}: {estimate}, {t_text}{family}"
    elif tost_p < alpha:
        kind, verdict = "equivalent", f"equivalent within ±{margin:g}"
        statement = f"{verdict}: {estimate}, paired {tost_text}{family}"
    else:
        kind, verdict = "not_detected", f"not detected at n = {n} pairs, MDD {result['mdd']:.3g}"
        statement = (f"{verdict} at the observed sd (power {result['power']:g}, alpha {alpha:g}): {estimate}, "
                     f"{t_text}; not equivalent within ±{margin:g} ({tost_text}){family}")
    return {**result, "kind": kind, "verdict": verdict, "statement": statement}


def adjust_family(verdicts: Sequence[dict[str, Any]], family: str, method: str = "holm") -> list[dict[str, Any]]:
    """A family of :func:`paired_difference_verdict` results (the tests of one question, e.g. valid decodes in
    each distance bin) re-decided on p-values adjusted for the family's multiplicity: the paired t p-values and,
    separately, the TOST p-values, with statsmodels' ``multipletests`` (Holm's step-down by default: the
    family-wise error rate stays at alpha). Verdicts without a test ("constant", "too few") pass unchanged and
    do not count. Each tested verdict gains ``p_adjusted``, ``tost_p_adjusted``, ``family``, ``family_size`` and
    ``adjustment``."""
    tested = [i for i, v in enumerate(verdicts) if v.get("p_value") is not None and v.get("tost_p_value") is not None]
    out = [dict(v) for v in verdicts]
    if not tested:
        return out
    alphas = {verdicts[i]["alpha"] for i in tested}
    if len(alphas) != 1:
        raise AtlasError(f"a family is adjusted at one alpha, got {sorted(alphas)}")
    p_adjusted = multipletests([verdicts[i]["p_value"] for i in tested], alpha=alphas.pop(), method=method)[1]
    tost_adjusted = multipletests([verdicts[i]["tost_p_value"] for i in tested], method=method)[1]
    for i, p, tost_p in zip(tested, p_adjusted, tost_adjusted):
        out[i] = _decide_paired({**verdicts[i], "p_adjusted": float(p), "tost_p_adjusted": float(tost_p),
                                 "family": family, "family_size": len(tested), "adjustment": method})
    return out


# -- does the conclusion depend on the threshold? ----------------------------------------------------


def conclusion_stability(residuals_a: np.ndarray, residuals_b: np.ndarray, operating_point: float,
                         in_range_a: np.ndarray | None = None, in_range_b: np.ndarray | None = None,
                         band: tuple[float, float] = PLAUSIBLE_BAND, n_thresholds: int = BAND_POINTS,
                         alpha: float = 0.05, names: Sequence[str] = ("A", "B")) -> dict[str, Any]:
    """The sign of valid_fraction_A - valid_fraction_B at thresholds log-spaced over ``band`` x operating point.

    At each threshold: both fractions, their difference, its sign (+1, -1, 0) and the Agresti-Caffo two-sided
    p-value (:func:`proportion_difference`). ``flips``: both signs occur in the band; ``significant_flip``: both
    signs occur among the thresholds where the difference is significant at ``alpha`` (the conclusion really
    reverses). ``statement`` says which of these holds, in words.
    """
    name_a, name_b = _names(names)
    a, b = _sample(residuals_a, "residuals_a"), _sample(residuals_b, "residuals_b")
    in_a, in_b = _mask(in_range_a, a.size, "in_range_a"), _mask(in_range_b, b.size, "in_range_b")
    operating_point = _operating_point(operating_point)
    multipliers = threshold_multipliers(band[0], band[1], n_thresholds)
    rows = []
    for threshold in operating_point * multipliers:
        valid_a, valid_b = (a <= threshold) & in_a, (b <= threshold) & in_b
        test = proportion_difference(int(valid_a.sum()), a.size, int(valid_b.sum()), b.size, alpha)
        rows.append({"threshold": float(threshold), "fraction_a": test["fraction_a"],
                     "fraction_b": test["fraction_b"], "difference": test["difference"],
                     "sign": int(np.sign(test["difference"])), "p_value": test["p_value"],
                     "significant": bool(test["p_value"] is not None and test["p_value"] < alpha)})
    return {"names": [name_a, name_b], "band": [float(band[0]), float(band[1])], "operating_point": operating_point,
            "alpha": alpha, "thresholds": rows, **_band_summary(rows, band, (name_a, name_b))}


def _band_summary(rows: list[dict[str, Any]], band: Sequence[float], names: tuple[str, str], unit: str = ""
                  ) -> dict[str, Any]:
    """flips, significant_flip, n_significant and the statement of a band's rows (each with sign, significant)."""
    name_a, name_b = names
    signs = {row["sign"] for row in rows} - {0}
    significant_signs = {row["sign"] for row in rows if row["significant"]} - {0}
    n_significant = sum(row["significant"] for row in rows)
    flips, significant_flip = len(signs) == 2, len(significant_signs) == 2
    if significant_flip:
        statement = (f"the conclusion reverses within {band[0]:g}x to {band[1]:g}x the operating point: "
                     f"{name_a} > {name_b} significantly{unit} at some thresholds and {name_b} > {name_a} at others")
    elif flips:
        statement = (f"the sign of the difference changes within {band[0]:g}x to {band[1]:g}x the operating point "
                     f"(significant{unit} at {n_significant} of {len(rows)} thresholds, never both ways)")
    elif signs:
        leader = f"{name_a} > {name_b}" if signs == {1} else f"{name_b} > {name_a}"
        statement = (f"{leader} at every threshold from {band[0]:g}x to {band[1]:g}x the operating point "
                     f"(significant{unit} at {n_significant} of {len(rows)})")
    else:
        statement = f"equal valid fractions at every threshold from {band[0]:g}x to {band[1]:g}x the operating point"
    return {"flips": flips, "significant_flip": significant_flip, "n_significant": n_significant,
            "statement": statement}


def stability_over_seeds(fractions_a: np.ndarray, fractions_b: np.ndarray, thresholds: np.ndarray,
                         band: tuple[float, float] = PLAUSIBLE_BAND, alpha: float = 0.05,
                         names: Sequence[str] = ("A", "B")) -> dict[str, Any]:
    """:func:`conclusion_stability` with the training seed as the unit: (S, T) valid fractions of each model's
    run of seed s (rows paired by seed) at thresholds (T,).

    At each threshold: each model's mean fraction over seeds, the mean paired difference, its sign, how many
    seeds' differences share that sign, and the paired t test over seeds (``scipy.stats.ttest_rel``; None with
    fewer than 2 seeds or no spread, :func:`no_spread`). Images of one run, and points of one path, are not
    independent replicates of a model kind; seeds are. The p-values are a sensitivity check across correlated
    thresholds, not a family of further claims.
    """
    name_a, name_b = _names(names)
    _check_alpha(alpha)
    a, b = np.asarray(fractions_a, dtype=np.float64), np.asarray(fractions_b, dtype=np.float64)
    thresholds = np.asarray(thresholds, dtype=np.float64).ravel()
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] != thresholds.size or a.shape[0] == 0:
        raise AtlasError(f"need two (seeds, {thresholds.size}) arrays of valid fractions, got {a.shape} and {b.shape}")
    rows = []
    for threshold, column_a, column_b in zip(thresholds, a.T, b.T):
        differences = column_a - column_b
        constant = no_spread(differences)
        mean = float(differences.mean())
        # a mean within rounding of 0 (fractions of 12 decodes: 1/12 - 1/12 + 0 ...) has no sign
        sign = 0 if abs(mean) <= SPREAD_TOLERANCE * max(1.0, float(np.abs(differences).max())) else int(np.sign(mean))
        p = None if len(differences) < 2 or constant else float(ttest_rel(column_a, column_b).pvalue)
        rows.append({"threshold": float(threshold), "fraction_a": float(column_a.mean()),
                     "fraction_b": float(column_b.mean()), "difference": mean, "sign": sign,
                     "seeds_agreeing": int(np.sum(np.sign(differences) == sign)) if sign else 0,
                     "p_value": p, "significant": bool(p is not None and p < alpha)})
    unanimous = sum(row["sign"] != 0 and row["seeds_agreeing"] == len(a) for row in rows)
    summary = _band_summary(rows, band, (name_a, name_b), unit=" over seeds")
    summary["statement"] += f"; every one of the {len(a)} seeds agrees in sign at {unanimous} of {len(rows)}"
    return {"names": [name_a, name_b], "band": [float(band[0]), float(band[1])], "alpha": alpha,
            "n_seeds": int(len(a)), "thresholds": rows, "unanimous": unanimous, **summary}


def compare_validity(residuals_a: np.ndarray, residuals_b: np.ndarray, operating_point: float,
                     in_range_a: np.ndarray | None = None, in_range_b: np.ndarray | None = None,
                     names: Sequence[str] = ("A", "B"), margin: float = 0.05, alpha: float = 0.05,
                     band: tuple[float, float] = PLAUSIBLE_BAND) -> dict[str, Any]:
    """Everything the report shows for one validity comparison: ECDFs of the residuals, both threshold curves,
    the rank statistic, the threshold band check and the verdict at the operating point."""
    name_a, name_b = _names(names)
    a, b = _sample(residuals_a, "residuals_a"), _sample(residuals_b, "residuals_b")
    in_a, in_b = _mask(in_range_a, a.size, "in_range_a"), _mask(in_range_b, b.size, "in_range_b")
    operating_point = _operating_point(operating_point)
    return {
        "names": [name_a, name_b],
        "operating_point": operating_point,
        "ecdf": ecdf_curves({name_a: a, name_b: b}, include=(operating_point,)),
        "threshold_curves": {name_a: validity_curve(a, operating_point, in_a),
                             name_b: validity_curve(b, operating_point, in_b)},
        "rank": rank_comparison(a, b),
        "stability": conclusion_stability(a, b, operating_point, in_a, in_b, band, alpha=alpha, names=names),
        "verdict": difference_verdict((a <= operating_point) & in_a, (b <= operating_point) & in_b, margin, alpha,
                                      names=names),
    }
