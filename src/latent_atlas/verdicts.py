"""What the oracle says about each image: shape, range and novelty, each its own field.

- **shape**: is the image a heatmap of the family at all? ``shape_residual`` = ||image - fitted||_F / ||fitted||_F,
  the residual relative to the fitted heatmap's norm, and ``shape_ok = shape_residual <= shape_threshold`` (the
  threshold comes from the corruption benchmark's rule, ``latent_atlas.corruptions``, never from a model).
- **range**: do the recovered factors lie inside the data's factor box (``FactorBox``, with stated margins)?
  A perfect heatmap can still be an extrapolation.
- **novelty**: the Frobenius distance to the nearest training image, its index in the dataset and its factors.

An image is *in-distribution valid* when ``shape_ok & in_range``; ``failure`` says which check fails
("", "shape", "range" or "shape+range").
"""

from __future__ import annotations

import csv
import functools
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from .config import DataConfig, FactorRange
from .errors import AtlasError

FAILURES = ("", "shape", "range", "shape+range")
SINGLE_VALUE_MARGIN = 0.1  # oracle units, each side of a factor that takes one value: 10 % for a variance
DF_MARGIN = 0.5 * math.log(2.0)  # log df, below the heaviest tails in the data: df 2 -> 1.41


def unconstrained(name: str, values: Any) -> np.ndarray:
    """Factor values -> the oracle's parametrisation: atanh for rho, log for variances and df."""
    values = np.asarray(values, dtype=np.float64)
    return np.arctanh(values) if name == "rho" else np.log(values)


def constrained(name: str, theta: Any) -> np.ndarray:
    theta = np.asarray(theta, dtype=np.float64)
    return np.tanh(theta) if name == "rho" else np.exp(theta)


def _end_margins(name: str, values: np.ndarray) -> tuple[float, float]:
    """Half the first and half the last step of the ascending values, in the oracle's parametrisation."""
    theta = unconstrained(name, values)
    if len(theta) == 1:
        return SINGLE_VALUE_MARGIN, SINGLE_VALUE_MARGIN
    return 0.5 * float(theta[1] - theta[0]), 0.5 * float(theta[-1] - theta[-2])


def _support(factor_range: FactorRange, config: DataConfig) -> np.ndarray:
    """The values a covariance factor takes: its grid, or for random sampling the grid of the same size.

    Random sampling draws ``n_samples`` points uniformly in the box; the equivalent grid has
    ``round(n_samples ** (1 / 3))`` evenly spaced values per factor (22.8 -> 23 for the default 11,875).
    """
    if config.sampling == "grid":
        return np.unique(factor_range.grid())
    if factor_range.low == factor_range.high:
        return np.array([factor_range.low])
    per_factor = max(2, round(config.n_samples ** (1.0 / 3.0)))
    return np.linspace(factor_range.low, factor_range.high, per_factor)


@dataclass(frozen=True)
class FactorBox:
    """The data's factor box with margins; ``low`` and ``high`` are inclusive bounds in factor units.

    ``from_config`` puts the margin at half a grid step at each end, measured in the oracle's own
    parametrisation (log variance, atanh rho): on the default grid, variances 0.1 ... 4.9 in steps of 0.2
    give [0.0577, 5.003] (an additive half step of 0.1 would let var 0.02 pass) and rho -0.95 ... 0.85
    gives [-0.972, 0.885]. A random (non-grid) dataset uses the grid of the same size (``_support``); a
    factor with a single value gets ``SINGLE_VALUE_MARGIN`` each side. df (Student t) is not a grid: the
    data's df values are two tail classes (2 and 200 by default). Lighter tails than the lightest class
    are indistinguishable on the grid (df 200 and df 10,000 heatmaps differ by a shape residual of 0.003,
    half a variance step at var 1 by 0.04), so df has no upper bound; tails heavier than the heaviest
    class get a margin of a factor sqrt(2) (``DF_MARGIN`` in log df: df 2 -> 1.41, a shape change of
    about 0.07, like half a variance step), so df 1 (Cauchy) is out of range.
    """

    names: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    data_low: tuple[float, ...]
    data_high: tuple[float, ...]

    def __post_init__(self) -> None:
        k = len(self.names)
        if not all(len(bounds) == k for bounds in (self.low, self.high, self.data_low, self.data_high)):
            raise AtlasError(f"a factor box needs one bound per factor ({k}) in low, high, data_low and data_high")
        if any(not lo <= hi for lo, hi in zip(self.low, self.high)):
            raise AtlasError(f"a factor box needs low <= high for every factor, got {self.low} and {self.high}")

    @classmethod
    def from_config(cls, config: DataConfig) -> FactorBox:
        low, high, data_low, data_high = [], [], [], []
        for name in ("var_x", "var_y", "rho"):
            values = _support(getattr(config, name), config)
            below, above = _end_margins(name, values)
            theta_low, theta_high = unconstrained(name, [values[0], values[-1]])
            low.append(float(constrained(name, theta_low - below)))
            high.append(float(constrained(name, theta_high + above)))
            data_low.append(float(values[0]))
            data_high.append(float(values[-1]))
        if config.kind == "student_t":
            heaviest, lightest = sorted((config.df_heavy, config.df_light))
            low.append(float(heaviest * math.exp(-DF_MARGIN)))
            high.append(math.inf)
            data_low.append(float(heaviest))
            data_high.append(float(lightest))
        return cls(config.factor_names, tuple(low), tuple(high), tuple(data_low), tuple(data_high))

    def outside(self, factors: np.ndarray) -> np.ndarray:
        """(N, K) factors -> (N, K) bool: which factor of which row lies outside its bounds (NaN counts as outside)."""
        factors = np.atleast_2d(np.asarray(factors, dtype=np.float64))
        if factors.ndim != 2 or factors.shape[1] != len(self.names):
            raise AtlasError(f"factors must have shape (N, {len(self.names)}) for a box over "
                             f"{', '.join(self.names)}, got {factors.shape}")
        return ~((factors >= np.array(self.low)) & (factors <= np.array(self.high)))

    def contains(self, factors: np.ndarray) -> np.ndarray:
        """(N, K) factors -> (N,) bool: every factor within its bounds."""
        return ~self.outside(factors).any(axis=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; an infinite bound is written as None."""
        def finite(values: tuple[float, ...]) -> list[float | None]:
            return [v if math.isfinite(v) else None for v in values]

        return {"names": list(self.names), "low": finite(self.low), "high": finite(self.high),
                "data_low": finite(self.data_low), "data_high": finite(self.data_high)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FactorBox:
        try:
            low = tuple(-math.inf if v is None else float(v) for v in d["low"])
            high = tuple(math.inf if v is None else float(v) for v in d["high"])
            return cls(tuple(str(n) for n in d["names"]), low, high, tuple(float(v) for v in d["data_low"]),
                       tuple(float(v) for v in d["data_high"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise AtlasError(f"unreadable factor box: {type(exc).__name__} {exc}") from None

    def describe(self) -> str:
        """One line: each factor's accepted interval and the data's own."""
        parts = [f"{name} [{lo:.4g}, {hi:.4g}] (data {dlo:.4g}..{dhi:.4g})"
                 for name, lo, hi, dlo, dhi in zip(self.names, self.low, self.high, self.data_low, self.data_high)]
        return "; ".join(parts)


@dataclass(frozen=True, eq=False)
class NoveltyReference:
    """Rows ``index`` of an image pool (the training split of a dataset) to measure novelty against.

    ``nearest`` is an exact nearest-neighbour search (scikit-learn, brute force, built on first use); the
    reported distance is recomputed directly for the neighbour found, so it is exact rather than a
    difference of squared norms. Ties go to the first reference row.
    """

    pool: np.ndarray  # (N_pool, H, W) images, e.g. a dataset's
    index: np.ndarray  # (M,) int64 rows of the pool to search, e.g. the training split
    factors: np.ndarray  # (N_pool, K) factors of the pool

    def __post_init__(self) -> None:
        if len(self.index) == 0:
            raise AtlasError("novelty needs at least one reference (training) image")
        if len(self.factors) != len(self.pool) or self.index.min() < 0 or self.index.max() >= len(self.pool):
            raise AtlasError("a novelty reference needs one factor row per pool image and indices inside the pool")

    @classmethod
    def from_dataset(cls, dataset: Any) -> NoveltyReference:
        """The dataset's training split (``dataset.images[dataset.train_idx]``); nothing is copied until used."""
        return cls(dataset.images, np.asarray(dataset.train_idx, dtype=np.int64), dataset.factors)

    @classmethod
    def from_arrays(cls, images: np.ndarray, factors: np.ndarray) -> NoveltyReference:
        """Every one of ``images`` (M, H, W), indexed 0..M-1."""
        return cls(np.asarray(images), np.arange(len(images), dtype=np.int64), np.asarray(factors, dtype=np.float64))

    @functools.cached_property
    def _flat(self) -> np.ndarray:
        return np.asarray(self.pool[self.index], dtype=np.float64).reshape(len(self.index), -1)  # (M, P)

    @functools.cached_property
    def _search(self) -> NearestNeighbors:
        return NearestNeighbors(n_neighbors=1, algorithm="brute").fit(self._flat)

    def nearest(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, H, W) images -> distance (N,), pool index (N,) and factors (N, K) of the nearest reference."""
        images = np.asarray(images, dtype=np.float64)
        flat = images.reshape(len(images), int(np.prod(images.shape[1:])))  # (N, P), N = 0 included
        if flat.shape[1] != self._flat.shape[1]:
            raise AtlasError(f"images have {flat.shape[1]} pixels but the reference images {self._flat.shape[1]}")
        if len(flat) == 0:
            return np.empty(0), np.empty(0, dtype=np.int64), np.empty((0, self.factors.shape[1]))
        row = self._search.kneighbors(flat, return_distance=False)[:, 0]  # (N,)
        distance = np.linalg.norm(flat - self._flat[row], axis=1)
        index = self.index[row]
        return distance, index, np.asarray(self.factors[index], dtype=np.float64)


def _read_only(array: np.ndarray) -> np.ndarray:
    """``array``, made read-only: a cached result that a caller changed in place would change it for everyone."""
    array = np.asarray(array)
    array.flags.writeable = False
    return array


def _failure(shape_ok: np.ndarray, in_range: np.ndarray) -> np.ndarray:
    return np.asarray(FAILURES, dtype=np.str_)[(~shape_ok).astype(int) + 2 * (~in_range).astype(int)]


@dataclass(frozen=True, eq=False)
class Verdict:
    """The oracle's verdict on N images. ``shape_ok``, ``in_range``, ``valid`` and ``failure`` follow from the
    stored residuals, threshold, box and factors (computed once each, and read-only).
    Novelty is NaN (index -1) where it was not computed."""

    factor_names: tuple[str, ...]
    factors: np.ndarray  # (N, K) factors of the nearest heatmap of the family
    residual: np.ndarray  # (N,) ||image - fitted||_F
    shape_residual: np.ndarray  # (N,) ||image - fitted||_F / ||fitted||_F
    shape_threshold: float
    box: FactorBox
    novelty: np.ndarray  # (N,) ||image - nearest training image||_F
    nearest_index: np.ndarray  # (N,) int64 index into the dataset
    nearest_factors: np.ndarray  # (N, K)

    def __len__(self) -> int:
        return len(self.residual)

    @functools.cached_property
    def shape_ok(self) -> np.ndarray:
        return _read_only(self.shape_residual <= self.shape_threshold)

    @functools.cached_property
    def outside(self) -> np.ndarray:
        """(N, K) bool: which recovered factor lies outside the box."""
        return _read_only(self.box.outside(self.factors))

    @functools.cached_property
    def in_range(self) -> np.ndarray:
        return _read_only(~self.outside.any(axis=1))

    @functools.cached_property
    def valid(self) -> np.ndarray:
        """In-distribution valid: a heatmap of the family (shape) whose factors lie in the data's box (range)."""
        return _read_only(self.shape_ok & self.in_range)

    @functools.cached_property
    def failure(self) -> np.ndarray:
        """(N,) str: "" (valid), "shape", "range" or "shape+range"."""
        return _read_only(_failure(self.shape_ok, self.in_range))

    @property
    def has_novelty(self) -> bool:
        return bool(np.all(self.nearest_index >= 0))

    def factor(self, name: str) -> np.ndarray:
        if name not in self.factor_names:
            raise AtlasError(f"unknown factor {name!r}; the oracle recovers {', '.join(self.factor_names)}")
        return self.factors[:, self.factor_names.index(name)]

    def subset(self, rows: Any) -> Verdict:
        """The verdict on some of the images (a slice, an index array or a boolean mask)."""
        return Verdict(self.factor_names, self.factors[rows], self.residual[rows], self.shape_residual[rows],
                       self.shape_threshold, self.box, self.novelty[rows], self.nearest_index[rows],
                       self.nearest_factors[rows])

    def summary(self) -> dict[str, Any]:
        """JSON-able: counts, fractions passing each check, failures by kind, medians."""
        n = len(self)

        def fraction(mask: np.ndarray) -> float | None:
            return float(mask.mean()) if n else None

        def median(values: np.ndarray) -> float | None:
            finite = values[np.isfinite(values)]
            return float(np.median(finite)) if finite.size else None

        failures = self.failure
        return {
            "n": n,
            "shape_threshold": self.shape_threshold,
            "shape_ok": fraction(self.shape_ok),
            "in_range": fraction(self.in_range),
            "valid": fraction(self.valid),
            "failures": {name or "none": int(np.sum(failures == name)) for name in FAILURES},
            "out_of_range_by_factor": dict(zip(self.factor_names, self.outside.sum(axis=0).tolist())),
            "median_shape_residual": median(self.shape_residual),
            "median_residual": median(self.residual),
            "median_novelty": median(self.novelty),
            "box": self.box.to_dict(),
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for an .npz (no pickles): the stored fields, the box, and the derived checks for readers."""
        box = self.box
        return {
            "factor_names": np.asarray(self.factor_names, dtype=np.str_),
            "factors": self.factors,
            "residual": self.residual,
            "shape_residual": self.shape_residual,
            "shape_threshold": np.asarray(self.shape_threshold, dtype=np.float64),
            "box_low": np.asarray(box.low), "box_high": np.asarray(box.high),
            "box_data_low": np.asarray(box.data_low), "box_data_high": np.asarray(box.data_high),
            "novelty": self.novelty,
            "nearest_index": self.nearest_index,
            "nearest_factors": self.nearest_factors,
            "shape_ok": self.shape_ok,
            "in_range": self.in_range,
            "valid": self.valid,
            "failure": self.failure,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Verdict:
        try:
            names = tuple(str(s) for s in arrays["factor_names"])
            box = FactorBox(names, *(tuple(float(v) for v in arrays[key])
                                     for key in ("box_low", "box_high", "box_data_low", "box_data_high")))
            verdict = cls(names, np.asarray(arrays["factors"], dtype=np.float64),
                          np.asarray(arrays["residual"], dtype=np.float64),
                          np.asarray(arrays["shape_residual"], dtype=np.float64),
                          float(arrays["shape_threshold"]), box, np.asarray(arrays["novelty"], dtype=np.float64),
                          np.asarray(arrays["nearest_index"], dtype=np.int64),
                          np.asarray(arrays["nearest_factors"], dtype=np.float64))
        except (KeyError, TypeError, ValueError) as exc:
            raise AtlasError(f"unreadable verdict arrays: {type(exc).__name__} {exc}") from None
        n, k = len(verdict.residual), len(names)
        shapes = {"factors": (n, k), "shape_residual": (n,), "novelty": (n,), "nearest_index": (n,),
                  "nearest_factors": (n, k)}
        wrong = [key for key, shape in shapes.items() if getattr(verdict, key).shape != shape]
        if wrong:
            raise AtlasError(f"unreadable verdict arrays: {', '.join(wrong)} do not match {n} images of {k} factors")
        return verdict

    def to_csv(self) -> str:
        """One row per image: index, factors, residuals, the checks, failure, novelty and the nearest image."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["index", *self.factor_names, "residual", "shape_residual", "shape_ok", "in_range", "valid",
                         "failure", "novelty", "nearest_index", *(f"nearest_{name}" for name in self.factor_names)])
        flags = np.array(["false", "true"])
        shape_ok, in_range, valid = (flags[mask.astype(int)] for mask in (self.shape_ok, self.in_range, self.valid))
        failures = self.failure
        for n in range(len(self)):
            writer.writerow([n, *map(repr, self.factors[n].tolist()), repr(float(self.residual[n])),
                             repr(float(self.shape_residual[n])), shape_ok[n], in_range[n], valid[n],
                             failures[n], repr(float(self.novelty[n])), int(self.nearest_index[n]),
                             *map(repr, self.nearest_factors[n].tolist())])
        return buffer.getvalue()
