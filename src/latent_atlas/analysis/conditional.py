"""Conditional generation scored by the oracle: does a CVAE draw what it is asked for?

For each requested value of the conditioning factor, the same prior draws z ~ N(0, I) are decoded with that
condition and read back by the oracle. Per requested value:

* match: the fraction of samples whose recovered factor matches the request, with a Wilson interval;
  df (a class): the recovered df falls on the requested class's side of ``df_boundary`` (the geometric mean
  of the two classes' df, the midpoint in the oracle's log-df parametrisation); a continuous factor:
  |recovered - requested| <= tolerance, at each of ``TOLERANCES[name]`` (half a step and one step of the default
  grid, keyed "half_step" and "step");
* chance: the fraction of the data matching the request under the same rule, what a decoder that ignores
  its condition (and draws like the data) would score;
* valid: the oracle's in-distribution valid fraction, and the fraction both valid and matching;
* spread: std and IQR of each unconditioned recovered factor beside the same for the data rows matching the
  request (for df as an unconditioned factor: the heavy-tailed fraction).

Pure functions of arrays; the model and the oracle enter as two callables, ``decode(codes, values)`` and
``judge(images) -> Verdict``, so the scores can be checked against decoders whose answer is known.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import iqr
from statsmodels.stats.proportion import proportion_confint

from ..config import DataConfig
from ..errors import AtlasError
from ..verdicts import Verdict

CONFIDENCE = 0.95
# Per continuous factor: half a step and one step of the default grid (rho 0.1, variances 0.2). The keys name
# the match rules in the results (dotted report keys cannot hold the numbers themselves).
TOLERANCES = {"rho": {"half_step": 0.05, "step": 0.1}, "var_x": {"half_step": 0.1, "step": 0.2},
              "var_y": {"half_step": 0.1, "step": 0.2}}
DF_CLASSES = ("heavy", "light")
CLASS_KEY = "class"  # the match key for df, which has no tolerance


def df_boundary(data: DataConfig) -> float:
    """The df between the two tail classes: their geometric mean (20 for df 2 and 200)."""
    return math.sqrt(data.df_heavy * data.df_light)


def df_class(df: np.ndarray, data: DataConfig) -> np.ndarray:
    """(N,) df values (recovered or true) -> (N,) "heavy" / "light": the side of ``df_boundary`` of the class
    with the smaller / larger df."""
    heavy_below = data.df_heavy < data.df_light
    below = np.asarray(df, dtype=np.float64) < df_boundary(data)
    return np.where(below == heavy_below, "heavy", "light")


def requested_levels(name: str, data: DataConfig) -> list[Any]:
    """The conditions to ask for: both df classes, or every value of a continuous factor's grid."""
    if name == "df":
        return list(DF_CLASSES)
    if name not in TOLERANCES:
        raise AtlasError(f"unknown condition {name!r}; choose one of df, {', '.join(TOLERANCES)}")
    return [float(v) for v in np.unique(getattr(data, name).grid())]


def requested_value(name: str, level: Any, data: DataConfig) -> float:
    """The factor value a level stands for: the class's df for df, the level itself otherwise."""
    if name == "df":
        if level not in DF_CLASSES:
            raise AtlasError(f"unknown df class {level!r}; choose heavy or light")
        return data.df_heavy if level == "heavy" else data.df_light
    return float(level)


def matches(name: str, level: Any, values: np.ndarray, data: DataConfig) -> dict[str, np.ndarray]:
    """(N,) factor values -> {match key: (N,) bool}: df class equality, or |value - level| <= each tolerance."""
    values = np.asarray(values, dtype=np.float64)
    if name == "df":
        return {CLASS_KEY: df_class(values, data) == level}
    return {key: np.abs(values - float(level)) <= tolerance + 1e-12 for key, tolerance in TOLERANCES[name].items()}


def proportion(hits: np.ndarray, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """(N,) bool -> count, fraction and its Wilson interval (None fraction for no samples)."""
    hits = np.asarray(hits, dtype=bool)
    n, k = int(hits.size), int(hits.sum())
    if n == 0:
        return {"n": 0, "k": 0, "fraction": None, "low": None, "high": None}
    low, high = proportion_confint(k, n, alpha=1.0 - confidence, method="wilson")
    return {"n": n, "k": k, "fraction": k / n, "low": float(low), "high": float(high)}


def spread(values: np.ndarray, name: str, data: DataConfig) -> dict[str, Any]:
    """(N,) values of one factor -> std and IQR (df: the heavy-tailed fraction); None entries for no values."""
    values = np.asarray(values, dtype=np.float64)
    if name == "df":
        return {"n": int(values.size),
                "heavy_fraction": float(np.mean(df_class(values, data) == "heavy")) if values.size else None}
    if values.size == 0:
        return {"n": 0, "std": None, "iqr": None}
    return {"n": int(values.size), "std": float(np.std(values, ddof=1)) if values.size > 1 else 0.0,
            "iqr": float(iqr(values))}


def score_level(name: str, level: Any, recovered: np.ndarray, valid: np.ndarray, data_factors: np.ndarray,
                factor_names: Sequence[str], data: DataConfig, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The scores of one requested level from the samples' recovered factors (N, K) and validity (N,), and the
    data's factors (M, K) (columns ``factor_names``)."""
    names = list(factor_names)
    if name not in names:
        raise AtlasError(f"unknown factor {name!r}; the factors are {', '.join(names)}")
    column = names.index(name)
    valid = np.asarray(valid, dtype=bool)
    sample_hits = matches(name, level, recovered[:, column], data)
    data_hits = matches(name, level, data_factors[:, column], data)
    # The data rows "of this condition": those matching it under the tightest rule.
    of_level = next(iter(data_hits.values()))
    return {
        "requested": level,
        "value": requested_value(name, level, data),
        "match": {key: proportion(hits, confidence) for key, hits in sample_hits.items()},
        "valid_and_match": {key: proportion(hits & valid, confidence) for key, hits in sample_hits.items()},
        "chance": {key: float(hits.mean()) if hits.size else None for key, hits in data_hits.items()},
        "valid": proportion(valid, confidence),
        "spread": {other: {"samples": spread(recovered[:, k], other, data),
                           "data": spread(data_factors[of_level, k], other, data)}
                   for k, other in enumerate(names) if other != name},
    }


def mean_spread(levels: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, float | None]]]:
    """{factor: {"samples" | "data": {statistic: mean over the levels}}} of ``score_level``'s spreads (None
    entries skipped; None where no level has a value)."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for level in levels:
        for factor, sides in level["spread"].items():
            for side, stats in sides.items():
                for stat, value in stats.items():
                    if stat != "n":
                        out.setdefault(factor, {}).setdefault(side, {}).setdefault(stat, []).append(value)
    return {factor: {side: {stat: (float(np.mean([v for v in values if v is not None]))
                                   if any(v is not None for v in values) else None)
                            for stat, values in stats.items()}
                     for side, stats in sides.items()}
            for factor, sides in out.items()}


def conditional_generation(decode: Callable[[np.ndarray, np.ndarray], np.ndarray],
                           judge: Callable[[np.ndarray], Verdict], name: str, data: DataConfig,
                           data_factors: np.ndarray, factor_names: Sequence[str], latent_dim: int, n_samples: int,
                           rng: np.random.Generator, n_shown: int = 8, confidence: float = CONFIDENCE,
                           levels: Sequence[Any] | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Score a conditional decoder at every requested level of ``name`` (``requested_levels`` by default).

    ``decode(codes (N, D), values (N,))`` gives (N, H, W) images for the factor ``values`` asked for;
    ``judge(images)`` the oracle's verdict. The same ``n_samples`` prior draws serve every level, so the rows
    of shown samples differ only by their condition. Returns the JSON results and arrays: per level
    ``<i>/images`` (the first ``n_shown``, float16), ``<i>/factors`` and ``<i>/valid`` (all samples).
    """
    if n_samples < 1:
        raise AtlasError(f"n_samples must be at least 1, got {n_samples}")
    levels = requested_levels(name, data) if levels is None else list(levels)
    codes = rng.standard_normal((n_samples, latent_dim))  # (N, D), shared by every level
    data_factors = np.asarray(data_factors, dtype=np.float64)
    results: dict[str, Any] = {"condition": name, "n_samples": int(n_samples), "confidence": confidence,
                               "tolerances": dict(TOLERANCES.get(name, {})),
                               "df_boundary": df_boundary(data) if name == "df" else None, "levels": []}
    arrays: dict[str, np.ndarray] = {"levels": np.asarray([str(level) for level in levels], dtype=np.str_)}
    for i, level in enumerate(levels):
        values = np.full(n_samples, requested_value(name, level, data))
        images = decode(codes, values)
        verdict = judge(images)
        if tuple(verdict.factor_names) != tuple(factor_names):
            raise AtlasError(f"the oracle recovers {', '.join(verdict.factor_names)} but the data's factors are "
                             f"{', '.join(factor_names)}")
        results["levels"].append(score_level(name, level, verdict.factors, verdict.valid, data_factors,
                                             factor_names, data, confidence))
        arrays[f"{i}/images"] = np.asarray(images[:n_shown], dtype=np.float16)
        arrays[f"{i}/factors"] = verdict.factors
        arrays[f"{i}/valid"] = verdict.valid
    keys = list(results["levels"][0]["match"]) if results["levels"] else []
    results["mean_match"] = {key: float(np.mean([lv["match"][key]["fraction"] for lv in results["levels"]]))
                             for key in keys}
    results["mean_valid"] = float(np.mean([lv["valid"]["fraction"] for lv in results["levels"]]))
    results["mean_spread"] = mean_spread(results["levels"])
    results["mean_chance"] = {key: float(np.mean([lv["chance"][key] for lv in results["levels"]]))
                              if all(lv["chance"][key] is not None for lv in results["levels"]) else None
                              for key in keys}
    return results, arrays
