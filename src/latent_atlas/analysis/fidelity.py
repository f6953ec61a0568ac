"""Factor-space fidelity: the exact analogue of FID, on the true generating factors instead of features.

FID compares Inception features of generated and real images, a proxy for what the images show. Here
the oracle reads the generating factors back from every decoded image, so a sampler's output can be
compared with the data's factor distribution itself. The comparison runs in a standardised factor space
(:class:`FactorSpace`) and reports two statistics, each beside its null distribution from data against
data (two disjoint random parts of the data factors, of the sample's and the reference's sizes), so a
reader sees what "indistinguishable from the data" looks like:

* the energy distance (Szekely & Rizzo), multivariate (:func:`energy_distance`);
* the held-out AUC of a classifier telling samples from data (:func:`generation.classifier_two_sample_test`).

:class:`FactorFidelity` fits the space and the null once per dataset and scores any number of samples;
:func:`factor_fidelity` does both for one sample.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

from ..errors import AtlasError
from .generation import classifier_two_sample_test

FACTOR_NAMES = {3: ("var_x", "var_y", "rho"), 4: ("var_x", "var_y", "rho", "df")}
TRANSFORMS = {"var_x": "log", "var_y": "log", "rho": "atanh", "df": "log_clipped"}
MAX_GRID_LEVELS = 100
MAX_POINTS = 2000


def energy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Energy distance between the (M, K) and (N, K) samples: sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|).

    Euclidean distances from ``scipy.spatial.distance.cdist``, means over all pairs including i = j (the
    V-statistic), the same definition as ``scipy.stats.energy_distance`` in one dimension. Zero only
    for equal empirical distributions. Memory: M * N + M^2 + N^2 doubles.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or len(a) == 0 or len(b) == 0:
        raise AtlasError(f"energy distance needs two non-empty (n, K) samples with one K, got {a.shape} and {b.shape}")
    squared = 2.0 * cdist(a, b).mean() - cdist(a, a).mean() - cdist(b, b).mean()
    return float(np.sqrt(max(squared, 0.0)))


def _factor_names(factor_names: tuple[str, ...] | None, k: int) -> tuple[str, ...]:
    names = FACTOR_NAMES.get(k) if factor_names is None else tuple(factor_names)
    if names is None or len(names) != k:
        raise AtlasError(f"factor_names {factor_names} do not name the {k} factor columns")
    unknown = [name for name in names if name not in TRANSFORMS]
    if unknown:
        raise AtlasError(f"unknown factors {unknown}; known: {', '.join(TRANSFORMS)}")
    return names


class FactorSpace:
    """The standardised space factors are compared in, fitted on the data's factors.

    Each factor is first mapped to an unbounded, roughly even scale: log var_x and log var_y (variances
    are scale parameters: the data's grid 0.1 ... 4.9 spans a factor of 49, and a small variance changes
    an image far more than the same absolute change at a large one), atanh rho (Fisher's z: |rho| near
    1 gets room) and log df clipped to the data's df range (df above the light-tailed value looks
    Gaussian on a 36x36 grid, so the oracle's large df estimates all mean "light"). Then each column
    is centred and divided by the data's standard deviation (``center_``, ``scale_``), so that every
    factor weighs the same in the energy distance and the statistics are unit-free.

    Grid data (a column with 3 to ``max_grid_levels`` distinct values, like the seed's 25 x 25 x 19
    grid) is dequantised by :meth:`data_points`: each value moves uniformly within its grid cell (half
    way to each neighbouring level, in the transformed scale; the end cells symmetric), as
    generative-model benchmarks dequantise discrete pixels. Without it a classifier would tell any
    continuous sample from the grid by its gaps alone, a perfect sampler included. Columns with two
    levels (df) or continuous values are left as they are. ``levels_`` keeps each column's grid (or None).
    """

    def __init__(self, factor_names: tuple[str, ...] | None = None, dequantize: bool = True,
                 max_grid_levels: int = MAX_GRID_LEVELS):
        self.factor_names, self.dequantize, self.max_grid_levels = factor_names, dequantize, max_grid_levels

    def _check(self, factors: np.ndarray, what: str) -> np.ndarray:
        factors = np.asarray(factors, dtype=np.float64)
        k = len(self.names_) if hasattr(self, "names_") else (factors.shape[1] if factors.ndim == 2 else -1)
        if factors.ndim != 2 or factors.shape[1] != k or len(factors) == 0:
            raise AtlasError(f"{what} must be a non-empty (n, {k}) array, got shape {factors.shape}")
        if not np.isfinite(factors).all():
            raise AtlasError(f"{what} contain non-finite values")
        return factors

    def _unscaled(self, factors: np.ndarray, what: str) -> np.ndarray:
        out = np.empty_like(factors)
        for j, name in enumerate(self.names_):
            column = factors[:, j]
            kind = TRANSFORMS[name]
            if kind == "atanh":
                if np.abs(column).max() >= 1.0:
                    raise AtlasError(f"{what}: {name} must lie in (-1, 1), got {column[np.abs(column) >= 1][0]}")
                out[:, j] = np.arctanh(column)
            else:
                if column.min() <= 0.0:
                    raise AtlasError(f"{what}: {name} must be positive, got {column.min()}")
                if kind == "log_clipped":
                    column = np.clip(column, *self.clip_[name])
                out[:, j] = np.log(column)
        return out

    def fit(self, data_factors: np.ndarray) -> FactorSpace:
        data_factors = np.asarray(data_factors, dtype=np.float64)
        self.names_ = _factor_names(self.factor_names, data_factors.shape[1] if data_factors.ndim == 2 else -1)
        data_factors = self._check(data_factors, "data factors")
        self.clip_ = {name: (float(data_factors[:, j].min()), float(data_factors[:, j].max()))
                      for j, name in enumerate(self.names_) if TRANSFORMS[name] == "log_clipped"}
        unscaled = self._unscaled(data_factors, "data factors")  # (N, K)
        self.center_ = unscaled.mean(axis=0)
        std = unscaled.std(axis=0)
        self.scale_ = np.where(std > 0, std, 1.0)
        self.levels_: list[np.ndarray | None] = []
        for column in unscaled.T:
            levels = np.unique(column)
            grid = self.dequantize and 3 <= len(levels) <= self.max_grid_levels
            self.levels_.append(levels if grid else None)
        return self

    def transform(self, factors: np.ndarray, what: str = "factors") -> np.ndarray:
        """(n, K) factors -> (n, K) standardised coordinates (no dequantisation)."""
        if not hasattr(self, "names_"):
            raise AtlasError("FactorSpace must be fitted before transforming")
        return (self._unscaled(self._check(factors, what), what) - self.center_) / self.scale_

    def inverse_transform(self, points: np.ndarray) -> np.ndarray:
        """(n, K) standardised coordinates -> (n, K) factors (clipped df stays clipped)."""
        if not hasattr(self, "names_"):
            raise AtlasError("FactorSpace must be fitted before transforming")
        unscaled = np.asarray(points, dtype=np.float64) * self.scale_ + self.center_  # (n, K)
        return np.column_stack([np.tanh(column) if TRANSFORMS[name] == "atanh" else np.exp(column)
                                for name, column in zip(self.names_, unscaled.T)])

    def data_points(self, data_factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(N, K) standardised data factors, grid columns dequantised with ``rng``."""
        if not hasattr(self, "names_"):
            raise AtlasError("FactorSpace must be fitted before transforming")
        unscaled = self._unscaled(self._check(data_factors, "data factors"), "data factors")  # (N, K)
        for j, levels in enumerate(self.levels_):
            if levels is None:
                continue
            middles = 0.5 * (levels[1:] + levels[:-1])
            lower = np.concatenate([[levels[0] - (middles[0] - levels[0])], middles])  # (L,)
            upper = np.concatenate([middles, [levels[-1] + (levels[-1] - middles[-1])]])
            cell = np.clip(np.searchsorted(levels, unscaled[:, j]), 0, len(levels) - 1)
            unscaled[:, j] = rng.uniform(lower[cell], upper[cell])
        return (unscaled - self.center_) / self.scale_


@dataclass(frozen=True)
class NullSummary:
    values: list[float]
    mean: float
    std: float
    q95: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> NullSummary:
        array = np.asarray(values, dtype=np.float64)
        return cls(values=[float(v) for v in array], mean=float(array.mean()),
                   std=float(array.std(ddof=1)) if len(array) > 1 else 0.0,
                   q95=float(np.quantile(array, 0.95)), max=float(array.max()))


@dataclass(frozen=True)
class FidelityResult:
    energy: float  # energy distance between sample and data in the standardised factor space
    energy_null: NullSummary  # the same between two disjoint parts of the data, same sizes
    energy_p_value: float  # (1 + #null >= energy) / (1 + n_null)
    auc: float  # held-out AUC of a classifier telling sample from data (0.5 = indistinguishable)
    auc_low: float
    auc_high: float
    auc_p_value: float  # the classifier test's own Mann-Whitney p-value
    auc_null: NullSummary
    n_sample: int
    n_reference: int
    factor_names: tuple[str, ...]
    space: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["factor_names"] = list(self.factor_names)
        return out


class FactorFidelity:
    """Fit once per dataset (the space and the data-vs-data null), then score samples of that size.

    ``fit(data_factors, sample_size, rng)``: a sample of ``sample_size`` rows (at most ``max_points``,
    and half the data) is compared with a reference of ``n_reference_`` = min(N - m, ``max_points``)
    data rows. The null repeats the comparison between two disjoint random parts of the (dequantised)
    data of sizes m and n: ``n_null`` times for the energy distance (cheap: three cdist calls) and
    ``n_null_auc`` times for the classifier (one boosting fit each). ``score(sample_factors, rng)``
    subsamples larger samples to m rows without replacement and draws a fresh reference.
    """

    def __init__(self, factor_names: tuple[str, ...] | None = None, max_points: int = MAX_POINTS,
                 n_null: int = 20, n_null_auc: int = 5, dequantize: bool = True, max_iter: int = 100):
        self.factor_names, self.max_points, self.dequantize = factor_names, max_points, dequantize
        self.n_null, self.n_null_auc, self.max_iter = n_null, n_null_auc, max_iter

    def _parts(self, rng: np.random.Generator, sizes: tuple[int, ...]) -> list[np.ndarray]:
        data = self.space_.data_points(self.data_factors_, rng)  # (N, K)
        order = rng.permutation(len(data))
        bounds = np.cumsum((0, *sizes))
        return [data[order[lo:hi]] for lo, hi in zip(bounds[:-1], bounds[1:])]

    def fit(self, data_factors: np.ndarray, sample_size: int, rng: np.random.Generator) -> FactorFidelity:
        if self.n_null < 2 or self.n_null_auc < 1:
            raise AtlasError(f"n_null must be at least 2 and n_null_auc at least 1, got {self.n_null}, "
                             f"{self.n_null_auc}")
        self.space_ = FactorSpace(self.factor_names, self.dequantize).fit(data_factors)
        self.data_factors_ = self.space_._check(data_factors, "data factors")
        n_data = len(self.data_factors_)
        self.sample_size_ = min(int(sample_size), self.max_points, n_data // 2)
        self.n_reference_ = min(n_data - self.sample_size_, self.max_points)
        if self.sample_size_ < 4:
            raise AtlasError(f"too few factors to compare: sample size {sample_size}, {n_data} data rows")
        null_energy, null_auc = [], []
        for repeat in range(self.n_null):
            part, reference = self._parts(rng, (self.sample_size_, self.n_reference_))
            null_energy.append(energy_distance(part, reference))
            if repeat < self.n_null_auc:
                null_auc.append(classifier_two_sample_test(reference, part, rng, add_norm=False,
                                                           max_iter=self.max_iter).auc)
        self.energy_null_, self.auc_null_ = NullSummary.of(null_energy), NullSummary.of(null_auc)
        return self

    def score(self, sample_factors: np.ndarray, rng: np.random.Generator) -> FidelityResult:
        if not hasattr(self, "space_"):
            raise AtlasError("FactorFidelity must be fitted before scoring")
        sample = self.space_.transform(sample_factors, "sample factors")  # (M, K)
        if len(sample) < self.sample_size_:
            raise AtlasError(f"the null was fitted for samples of {self.sample_size_} rows, got {len(sample)}")
        sample = sample[np.sort(rng.choice(len(sample), self.sample_size_, replace=False))]  # (m, K)
        (reference,) = self._parts(rng, (self.n_reference_,))
        energy = energy_distance(sample, reference)
        test = classifier_two_sample_test(reference, sample, rng, add_norm=False, max_iter=self.max_iter)
        exceeded = sum(v >= energy for v in self.energy_null_.values)
        space = {"transforms": {n: TRANSFORMS[n] for n in self.space_.names_}, "center": self.space_.center_.tolist(),
                 "scale": self.space_.scale_.tolist(),
                 "dequantized": [n for n, lv in zip(self.space_.names_, self.space_.levels_) if lv is not None]}
        return FidelityResult(
            energy=energy, energy_null=self.energy_null_,
            energy_p_value=(1 + exceeded) / (1 + len(self.energy_null_.values)),
            auc=test.auc, auc_low=test.low, auc_high=test.high, auc_p_value=test.p_value, auc_null=self.auc_null_,
            n_sample=len(sample), n_reference=len(reference), factor_names=self.space_.names_, space=space,
        )


def factor_fidelity(sample_factors: np.ndarray, data_factors: np.ndarray, rng: np.random.Generator,
                    **params: Any) -> FidelityResult:
    """Factor-space fidelity of one sample: ``FactorFidelity(**params).fit(data, len(sample)).score(sample)``.

    ``sample_factors`` (M, K): the factors the oracle recovered from a sampler's decoded images;
    ``data_factors`` (N, K): the dataset's true factors. Scoring several samplers against one dataset,
    fit a :class:`FactorFidelity` once instead: its null costs ``n_null_auc`` classifier fits.
    """
    sample_factors = np.asarray(sample_factors)
    if sample_factors.ndim != 2:
        raise AtlasError(f"sample factors must be an (M, K) array, got shape {sample_factors.shape}")
    return FactorFidelity(**params).fit(data_factors, len(sample_factors), rng).score(sample_factors, rng)
