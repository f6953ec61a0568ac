"""Statistics over training seeds: the unit of replication of every claim about a model.

A number measured on one trained run says nothing about the model kind until it is repeated over
seeds: :func:`over_seeds` gives the per-seed values, their mean, spread and a t interval of the mean;
:func:`paired_over_seeds` compares two model kinds trained with the same seeds (AE seed s vs VAE seed
s), with the paired t interval of the mean difference and the verdict of
:func:`latent_atlas.analysis.evidence.paired_difference_verdict` (a difference, equivalence at a stated
margin, or "not detected at n = ..., minimum detectable difference ...").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import ttest_1samp, ttest_rel

from ..errors import AtlasError
from .evidence import no_spread, paired_difference_verdict


def _finite(values: Mapping[int, float | None]) -> dict[int, float]:
    return {int(s): float(v) for s, v in sorted(values.items()) if v is not None and np.isfinite(v)}


def over_seeds(values: Mapping[int, float | None], confidence: float = 0.95) -> dict[str, Any]:
    """Per-seed values (seed -> value; None or NaN are left out), n, mean, sample sd and a t interval of the mean.

    With one seed there is no spread and no interval (None); with none, everything is None. Values equal up to
    rounding (:func:`~latent_atlas.analysis.evidence.no_spread`) have no interval either (None, not [m, m]).
    """
    kept = _finite(values)
    array = np.array(list(kept.values()))
    out: dict[str, Any] = {"per_seed": {str(s): v for s, v in kept.items()}, "n": len(kept),
                           "mean": None, "sd": None, "low": None, "high": None, "confidence": confidence}
    if len(kept) == 0:
        return out
    out["mean"] = float(array.mean())
    if len(kept) >= 2:
        out["sd"] = float(array.std(ddof=1))
        if not no_spread(array):
            interval = ttest_1samp(array, 0.0).confidence_interval(confidence)
            out["low"], out["high"] = float(interval.low), float(interval.high)
    return out


def paired_over_seeds(a: Mapping[int, float | None], b: Mapping[int, float | None], margin: float,
                      names: tuple[str, str] = ("A", "B"), confidence: float = 0.95) -> dict[str, Any]:
    """A vs B over the seeds both have: per-seed differences, the paired t interval of the mean difference,
    and the verdict (difference / equivalence within ``margin`` / not detected, with the minimum
    detectable difference)."""
    a, b = _finite(a), _finite(b)
    seeds = sorted(set(a) & set(b))
    out: dict[str, Any] = {"names": list(names), "seeds": seeds, "margin": margin,
                           "a": over_seeds({s: a[s] for s in seeds}, confidence),
                           "b": over_seeds({s: b[s] for s in seeds}, confidence),
                           "difference": over_seeds({s: a[s] - b[s] for s in seeds}, confidence)}
    if len(seeds) < 2:
        out["verdict"] = {"kind": "too_few", "verdict": f"{len(seeds)} paired training seed(s) cannot decide",
                          "statement": f"only {len(seeds)} paired seed(s): no test over seeds is possible"}
        return out
    x, y = np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds])
    if not no_spread(x - y):
        interval = ttest_rel(x, y).confidence_interval(confidence)
        out["difference"]["low"], out["difference"]["high"] = float(interval.low), float(interval.high)
    out["verdict"] = paired_difference_verdict(x, y, margin=margin, alpha=1 - confidence, names=names)
    return out


def seed_of(run_name: str) -> int:
    """The training seed in a run name ending in ``-s<seed>``."""
    head, _, tail = run_name.rpartition("-s")
    if not head or not tail.isdigit():
        raise AtlasError(f"run name {run_name!r} does not end in -s<seed>")
    return int(tail)
