"""The corruption benchmark: labelled images that fix the oracle's shape threshold before any model is judged.

Every image starts from a clean heatmap at random continuous factors drawn from the data's box (a Latin
hypercube over each factor's min..max; df by the data's own rule for Student t), rendered by the
generator. Each corruption kind has graded severities in physical terms (``KINDS``: sd of the ellipse,
peak fractions, pixels, df); the mildest grade(s) of each kind are declared **benign** a priori (the
image stays a heatmap to the eye and its factors move little), the rest **corrupt**. The labels were
fixed from what the benchmark's own images show; no model's decode was looked at, and no model enters.

**The rule** (``choose_threshold``): the shape threshold is the candidate, from a fixed grid of round
values (the R20 series 1.00, 1.12, 1.25, ..., 8.00, 9.00 times 10^-3, 10^-2 and 10^-1, and 1), that
maximises Youden's J = TPR - FPR on the benchmark, where a positive is an image of a corrupt grade, a
negative a clean image or one of a benign grade, and an image is flagged when its shape residual exceeds
the threshold; ties go to the larger candidate. Every (kind, grade) cell and the clean cell hold
``N_PER_CELL`` images, so each kind weighs the same. The seed (``BENCHMARK_SEED``) and size are fixed,
so the threshold is a deterministic function of the data config's grid, factor box and family
(``shape_threshold_for``), whichever models are compared.

Why Youden's J and not "the largest threshold detecting every corrupt cell at >= 95 %": some corruptions
are nearly invisible to any residual by construction (a 50/50 blend of two close Gaussians is almost a
Gaussian; a faint extra blob carries little energy), so a rule bound to the hardest cell pushes the
threshold towards zero and rejects benign images wholesale; J weighs misses and false alarms over all
kinds at once. Round candidates and exact integer comparison of J keep the answer from wobbling between
CPUs: a residual would have to fall within float noise of a candidate to change a count. J is flat near
its maximum (``plausible_band``: the candidates within one standard error of the operating point's J),
so the benchmark places the line only to within that band; the Latin hypercube and 50 images per cell
keep the answer the same for most benchmark seeds (``benchmarks/corruption_roc.py`` prints the spread).
``evaluate`` reports the ROC (scikit-learn) per kind and grade and the detection rate of every cell.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.stats import qmc
from sklearn.metrics import roc_auc_score, roc_curve

from .config import DataConfig
from .data.factors import degrees_of_freedom
from .data.heatmaps import grid_axis, normalised_density, render_heatmaps
from .errors import AtlasError
from .oracle import covariance_matrices, recover_shape
from .verdicts import constrained, unconstrained

BENCHMARK_SEED = 0
N_PER_CELL = 50
_R20 = (1.0, 1.12, 1.25, 1.4, 1.6, 1.8, 2.0, 2.24, 2.5, 2.8, 3.15, 3.55, 4.0, 4.5, 5.0, 5.6, 6.3, 7.1, 8.0, 9.0)
CANDIDATES = tuple(round(m * 10.0 ** e, 6) for e in (-3, -2, -1) for m in _R20) + (1.0,)
EXTRA_BLOB_PIXELS = 1.5  # sd of the extra blob, in pixels
COVARIANCE_NAMES = ("var_x", "var_y", "rho")
CLEAN = "clean"


@dataclass(frozen=True)
class CorruptionKind:
    name: str
    severities: tuple[float, ...]  # mildest first
    n_benign: int  # the first n_benign severities are benign a priori, the rest corrupt
    unit: str
    description: str
    gaussian_only: bool = False


KINDS: tuple[CorruptionKind, ...] = (
    CorruptionKind("shift", (0.1, 0.5, 1.0, 2.0), 1, "sd of the ellipse along the shift",
                   "the centre moved, in a random direction, by this many of the ellipse's sd in that direction"),
    CorruptionKind("blend", (0.2, 0.5, 1.0, 2.0), 2, "distance in (log var_x, log var_y, atanh rho)",
                   "a 50/50 blend of the heatmap and one whose factors lie this far in a random direction, "
                   "max-normalised"),
    CorruptionKind("extra_blob", (0.03, 0.1, 0.25, 0.5), 1, "peak of the extra blob",
                   f"a round blob of sd {EXTRA_BLOB_PIXELS} pixels and this height added where the heatmap is "
                   "dark"),
    CorruptionKind("blur", (0.2, 0.5, 1.0, 2.0), 1, "kernel sd / the ellipse's minor sd",
                   "a Gaussian blur (not renormalised: the peak drops as a blurring decoder's does)"),
    CorruptionKind("noise", (0.005, 0.02, 0.05, 0.1), 1, "noise sd / peak",
                   "additive white Gaussian noise"),
    CorruptionKind("amplitude", (0.95, 0.85, 0.7, 0.5), 1, "peak height",
                   "the image multiplied by this factor"),
    CorruptionKind("offset", (0.005, 0.02, 0.05, 0.1), 2, "background level / peak",
                   "a uniform background: c + (1 - c) * heatmap"),
    CorruptionKind("clip", (0.95, 0.8, 0.6, 0.4), 1, "clipping level / peak",
                   "the top clipped at this level and the image max-normalised again (a plateau)"),
    CorruptionKind("ring", (0.25, 1.0, 1.5, 2.5), 1, "ring radius in sd",
                   "the density profile moved out to a ring of this Mahalanobis radius"),
    CorruptionKind("square", (2.5, 4.0, 8.0, 16.0), 1, "exponent p of |u|^p + |v|^p",
                   "a superellipse on the ellipse's principal axes: p = 2 is the ellipse, large p a rectangle"),
    CorruptionKind("cross", (1.7, 1.2, 0.8, 0.5), 1, "exponent p of |u|^p + |v|^p",
                   "a superellipse with p < 2: a diamond (p = 1), then a four-armed cross"),
    CorruptionKind("two_blobs", (0.5, 2.0, 3.0, 5.0), 1, "separation in sd",
                   "two copies of the heatmap this far apart along a random direction, max-normalised"),
    CorruptionKind("heavy_tail", (20.0, 5.0, 2.0), 1, "Student t df",
                   "a Student t density with this df and the same covariance, shown to the Gaussian oracle",
                   gaussian_only=True),
)
KIND_BY_NAME = {kind.name: kind for kind in KINDS}


def kinds_for(family: str) -> tuple[CorruptionKind, ...]:
    """The kinds that apply to a family (heavy tails are a corruption only for the Gaussian oracle)."""
    return tuple(kind for kind in KINDS if family == "gaussian" or not kind.gaussian_only)


@dataclass(frozen=True)
class _Canvas:
    """The grid the images live on."""

    axis: np.ndarray  # (S,)
    x: np.ndarray  # (S, S): x[i, j] = axis[j]
    y: np.ndarray  # (S, S): y[i, j] = axis[i]

    @classmethod
    def build(cls, axis: np.ndarray) -> _Canvas:
        x, y = np.meshgrid(axis, axis)
        return cls(axis, x, y)

    @property
    def spacing(self) -> float:
        return float(self.axis[1] - self.axis[0])


def _offsets(canvas: _Canvas, centre: np.ndarray) -> np.ndarray:
    """(B, 2) centres -> (B, S, S, 2) offsets (x - cx, y - cy) of every pixel."""
    return np.stack([canvas.x[None] - centre[:, 0, None, None], canvas.y[None] - centre[:, 1, None, None]], axis=-1)


def _quadratic_form(cov: np.ndarray, canvas: _Canvas, centre: np.ndarray) -> np.ndarray:
    """(B, 2, 2) covariances, (B, 2) centres -> (B, S, S) Mahalanobis squared distance to the centre."""
    d = _offsets(canvas, centre)  # (B, S, S, 2)
    return np.einsum("bijk,bkl,bijl->bij", d, np.linalg.inv(cov), d)


def _principal_coordinates(cov: np.ndarray, canvas: _Canvas) -> tuple[np.ndarray, np.ndarray]:
    """(B, 2, 2) -> whitened coordinates (u, v), each (B, S, S), along the ellipse's principal axes."""
    values, vectors = np.linalg.eigh(cov)  # (B, 2), (B, 2, 2)
    d = _offsets(canvas, np.zeros((len(cov), 2)))  # (B, S, S, 2)
    projected = np.einsum("bijk,bkl->bijl", d, vectors) / np.sqrt(values)[:, None, None, :]
    return projected[..., 0], projected[..., 1]


def _profile(s: np.ndarray, df: np.ndarray | None) -> np.ndarray:
    """The family's density as a function of a squared radius s (B, S, S), max-normalised."""
    return normalised_density(s, df)


def _directions(rng: np.random.Generator, n: int) -> np.ndarray:
    angle = rng.uniform(0.0, 2.0 * np.pi, n)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)  # (B, 2)


def _sd_along(cov: np.ndarray, direction: np.ndarray) -> np.ndarray:
    return np.sqrt(np.einsum("bk,bkl,bl->b", direction, cov, direction))  # (B,)


def _max_normalised(images: np.ndarray) -> np.ndarray:
    return images / images.max(axis=(1, 2), keepdims=True)


@dataclass(frozen=True)
class _Batch:
    """Clean heatmaps to corrupt: their factors (B, K), covariances and images."""

    factors: np.ndarray  # (B, K)
    df: np.ndarray | None  # (B,)
    cov: np.ndarray  # (B, 2, 2)
    clean: np.ndarray  # (B, S, S) float64
    canvas: _Canvas


def _shift(b: _Batch, severity: float, rng: np.random.Generator) -> np.ndarray:
    direction = _directions(rng, len(b.cov))
    centre = severity * _sd_along(b.cov, direction)[:, None] * direction
    return _profile(_quadratic_form(b.cov, b.canvas, centre), b.df)


def _blend(b: _Batch, severity: float, rng: np.random.Generator) -> np.ndarray:
    direction = rng.normal(size=(len(b.cov), 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    theta = np.column_stack([unconstrained(name, b.factors[:, k]) for k, name in enumerate(COVARIANCE_NAMES)])
    moved = theta + severity * direction  # (B, 3)
    other = [constrained(name, moved[:, k]) for k, name in enumerate(COVARIANCE_NAMES)]
    second = render_heatmaps(*other, b.canvas.axis, b.df).astype(np.float64)
    return _max_normalised(0.5 * b.clean + 0.5 * second)


def _extra_blob(b: _Batch, severity: float, rng: np.random.Generator) -> np.ndarray:
    side = len(b.canvas.axis)
    inner = np.abs(b.canvas.x) <= 0.8 * b.canvas.axis[-1]
    inner &= np.abs(b.canvas.y) <= 0.8 * b.canvas.axis[-1]
    images = b.clean.copy()
    sd = EXTRA_BLOB_PIXELS * b.canvas.spacing
    for n, clean in enumerate(b.clean):
        dark = np.flatnonzero(inner & (clean < 0.05))
        where = rng.choice(dark) if dark.size else np.flatnonzero(inner)[np.argmin(clean[inner])]
        cx, cy = b.canvas.axis[where % side], b.canvas.axis[where // side]
        images[n] += severity * np.exp(-((b.canvas.x - cx) ** 2 + (b.canvas.y - cy) ** 2) / (2 * sd * sd))
    return images / np.maximum(images.max(axis=(1, 2), keepdims=True), 1.0)


def _blur(b: _Batch, severity: float, rng: np.random.Generator) -> np.ndarray:
    minor_sd = np.sqrt(np.linalg.eigvalsh(b.cov)[:, 0])  # (B,)
    kernel = severity * minor_sd / b.canvas.spacing  # (B,) in pixels
    return np.stack([gaussian_filter(clean, sigma, mode="nearest") for clean, sigma in zip(b.clean, kernel)])


def _noise(b: _Batch, severity: float, rng: np.random.Generator) -> np.ndarray:
    return b.clean + rng.normal(0.0, severity, b.clean.shape)


def _amplitude(b: _Batch, severity: float, rng: np.random.Generator) -> np.ndarray:
    return severity * b.clean


def _offset(b: _Batch, severity: float, rng: np.random.Generator) -> np.ndarray:
    return severity + (1.0 - severity) * b.clean


def _clip(b: _Batch, severity: float, rng: np.random.Generator) -> np.ndarray:
    return np.minimum(b.clean, severity) / severity


def _ring(b: _Batch, severity: float, rng: np.random.Generator) -> np.ndarray:
    radius = np.sqrt(_quadratic_form(b.cov, b.canvas, np.zeros((len(b.cov), 2))))
    return _profile((radius - severity) ** 2, b.df)


def _superellipse(b: _Batch, severity: float, rng: np.random.Generator) -> np.ndarray:
    u, v = _principal_coordinates(b.cov, b.canvas)
    return _profile((np.abs(u) ** severity + np.abs(v) ** severity) ** (2.0 / severity), b.df)


def _two_blobs(b: _Batch, severity: float, rng: np.random.Generator) -> np.ndarray:
    direction = _directions(rng, len(b.cov))
    half = 0.5 * severity * _sd_along(b.cov, direction)[:, None] * direction  # (B, 2)
    pair = _profile(_quadratic_form(b.cov, b.canvas, half), b.df) + _profile(_quadratic_form(b.cov, b.canvas, -half), b.df)
    return _max_normalised(pair)


def _heavy_tail(b: _Batch, severity: float, rng: np.random.Generator) -> np.ndarray:
    var_x, var_y, rho = b.factors[:, 0], b.factors[:, 1], b.factors[:, 2]
    return render_heatmaps(var_x, var_y, rho, b.canvas.axis, np.full(len(var_x), severity)).astype(np.float64)


_APPLY: dict[str, Callable[[_Batch, float, np.random.Generator], np.ndarray]] = {
    "shift": _shift, "blend": _blend, "extra_blob": _extra_blob, "blur": _blur, "noise": _noise,
    "amplitude": _amplitude, "offset": _offset, "clip": _clip, "ring": _ring, "square": _superellipse,
    "cross": _superellipse, "two_blobs": _two_blobs, "heavy_tail": _heavy_tail,
}


def clean_factors(config: DataConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, K) factors drawn uniformly from the data's box (each factor between its min and max), df by the data's rule.

    The covariance factors are a Latin hypercube sample (scipy.stats.qmc): uniform like independent draws,
    but stratified, so that a few dozen images cover the box evenly and the benchmark's statistics vary
    little from seed to seed.
    """
    unit = qmc.LatinHypercube(d=3, rng=rng).random(n)  # (n, 3) in [0, 1)
    low = np.array([getattr(config, name).low for name in COVARIANCE_NAMES])
    high = np.array([getattr(config, name).high for name in COVARIANCE_NAMES])
    table = low + unit * (high - low)
    if config.kind == "student_t":
        table = np.column_stack([table, degrees_of_freedom(table[:, 0], table[:, 1], config, rng)])
    return table


def corrupt(kind: str, severity: float, factors: np.ndarray, axis: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Corrupt the clean heatmaps of ``factors`` (B, K) (columns var_x, var_y, rho[, df]) on the grid ``axis``."""
    if kind not in _APPLY:
        raise AtlasError(f"unknown corruption kind {kind!r}; choose one of {', '.join(_APPLY)}")
    factors = np.atleast_2d(np.asarray(factors, dtype=np.float64))
    df = factors[:, 3] if factors.shape[1] == 4 else None
    clean = render_heatmaps(factors[:, 0], factors[:, 1], factors[:, 2], axis, df).astype(np.float64)
    batch = _Batch(factors, df, covariance_matrices(factors), clean, _Canvas.build(np.asarray(axis, dtype=np.float64)))
    return _APPLY[kind](batch, float(severity), rng)


@dataclass(frozen=True, eq=False)
class Benchmark:
    """Labelled images: each row one image, its kind ("clean" or a corruption), grade (0 for clean, 1 the
    mildest), severity in the kind's unit, label (True: corrupt a priori) and the clean heatmap's factors."""

    images: np.ndarray  # (M, H, W) float64
    kind: np.ndarray  # (M,) str
    grade: np.ndarray  # (M,) int64
    severity: np.ndarray  # (M,) float64
    label: np.ndarray  # (M,) bool
    factors: np.ndarray  # (M, K)
    family: str
    axis: np.ndarray  # (S,)

    def __len__(self) -> int:
        return len(self.label)

    def cells(self) -> list[tuple[str, int]]:
        """(kind, grade) pairs in benchmark order."""
        seen: dict[tuple[str, int], None] = {}
        for kind, grade in zip(self.kind.tolist(), self.grade.tolist()):
            seen.setdefault((kind, grade), None)
        return list(seen)


def make_benchmark(config: DataConfig, rng: np.random.Generator, n_per_cell: int = N_PER_CELL) -> Benchmark:
    """The benchmark on the config's grid for its family: ``n_per_cell`` clean images, then ``n_per_cell``
    images for every (kind, grade) of ``kinds_for(config.kind)``, each from its own clean factors.

    One child generator per kind (``rng.spawn``, in ``KINDS`` order) plus one for the clean cell, and per
    grade one for the clean factors and one for the corruption's own randomness, so the images of one kind
    do not depend on which other kinds apply, and both families share the covariance factors of each cell.
    """
    if not isinstance(rng, np.random.Generator):
        raise AtlasError("the benchmark needs a numpy.random.Generator (e.g. numpy.random.default_rng(0))")
    if n_per_cell < 1:
        raise AtlasError(f"the benchmark needs at least one image per cell, got {n_per_cell}")
    axis = grid_axis(config.grid_size, config.extent)
    children = rng.spawn(len(KINDS) + 1)
    factors = clean_factors(config, n_per_cell, children[0])
    df = factors[:, 3] if config.kind == "student_t" else None
    parts = [(render_heatmaps(*factors[:, :3].T, axis, df).astype(np.float64), CLEAN, 0, 0.0, False, factors)]
    for kind, child in zip(KINDS, children[1:]):
        if kind.gaussian_only and config.kind != "gaussian":
            continue
        for grade, (severity, cell) in enumerate(zip(kind.severities, child.spawn(len(kind.severities))), start=1):
            factor_rng, corruption_rng = cell.spawn(2)
            base = clean_factors(config, n_per_cell, factor_rng)
            images = corrupt(kind.name, severity, base, axis, corruption_rng)
            parts.append((images, kind.name, grade, severity, grade > kind.n_benign, base))
    count = [len(p[0]) for p in parts]
    return Benchmark(
        images=np.concatenate([p[0] for p in parts]),
        kind=np.repeat(np.array([p[1] for p in parts], dtype=np.str_), count),
        grade=np.repeat(np.array([p[2] for p in parts], dtype=np.int64), count),
        severity=np.repeat(np.array([p[3] for p in parts], dtype=np.float64), count),
        label=np.repeat(np.array([p[4] for p in parts], dtype=bool), count),
        factors=np.concatenate([p[5] for p in parts]),
        family=config.kind,
        axis=axis,
    )


def shape_residuals(benchmark: Benchmark) -> np.ndarray:
    """(M,) the oracle's shape residual of every benchmark image, for the benchmark's family."""
    return recover_shape(benchmark.images, benchmark.axis, benchmark.family)[2]


def choose_threshold(scores: np.ndarray, labels: np.ndarray, candidates: tuple[float, ...] = CANDIDATES) -> float:
    """The rule: the candidate maximising Youden's J = TPR - FPR, flagging ``scores > threshold``; ties -> larger.

    ``labels`` True marks a positive (corrupt) image. Needs both classes.
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise AtlasError(f"scores and labels must be 1-D arrays of one length, got {scores.shape} and {labels.shape}")
    if labels.all() or not labels.any():
        raise AtlasError("choosing a threshold needs both corrupt and acceptable images")
    if not np.all(np.isfinite(scores)):
        raise AtlasError("scores contain NaN or infinite values")
    grid = np.asarray(sorted(candidates), dtype=np.float64)  # (C,)
    flagged = scores[:, None] > grid[None, :]  # (M, C)
    true_positives, false_positives = flagged[labels].sum(axis=0), flagged[~labels].sum(axis=0)  # (C,) each
    scaled = true_positives * int((~labels).sum()) - false_positives * int(labels.sum())  # J * P * N, exact integers
    best = np.flatnonzero(scaled == scaled.max())[-1]
    return float(grid[best])


def youden_curve(scores: np.ndarray, labels: np.ndarray, candidates: tuple[float, ...] = CANDIDATES) -> dict[str, list[float]]:
    """TPR, FPR, J and the standard error of J (binomial, TPR and FPR independent) at each candidate threshold."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    grid = np.asarray(sorted(candidates), dtype=np.float64)
    flagged = scores[:, None] > grid[None, :]  # (M, C)
    tpr, fpr = flagged[labels].mean(axis=0), flagged[~labels].mean(axis=0)
    se = np.sqrt(tpr * (1 - tpr) / labels.sum() + fpr * (1 - fpr) / (~labels).sum())
    return {"threshold": grid.tolist(), "tpr": tpr.tolist(), "fpr": fpr.tolist(), "youden_j": (tpr - fpr).tolist(),
            "se": se.tolist()}


def plausible_band(scores: np.ndarray, labels: np.ndarray, threshold: float,
                   candidates: tuple[float, ...] = CANDIDATES) -> tuple[float, float]:
    """The smallest and largest candidate whose J lies within one standard error of J at ``threshold``: thresholds
    the benchmark cannot tell apart from the operating point (for threshold-free evidence)."""
    curve = youden_curve(scores, labels, candidates)
    at = curve["threshold"].index(threshold)
    close = np.flatnonzero(np.asarray(curve["youden_j"]) >= curve["youden_j"][at] - curve["se"][at])
    return curve["threshold"][close.min()], curve["threshold"][close.max()]


_IGNORED_FIELDS = ("seed", "test_fraction", "sampling", "n_samples")  # the benchmark draws its own factors


def _config_key(config: DataConfig) -> str:
    """The config as JSON without the fields the benchmark does not read (any new field counts, to be safe)."""
    return json.dumps({k: v for k, v in config.to_dict().items() if k not in _IGNORED_FIELDS}, sort_keys=True)


@functools.lru_cache(maxsize=16)
def _cached_threshold(key: str, seed: int, n_per_cell: int) -> float:
    config = DataConfig(**json.loads(key))
    benchmark = make_benchmark(config, np.random.default_rng(seed), n_per_cell)
    return choose_threshold(shape_residuals(benchmark), benchmark.label)


def shape_threshold_for(config: DataConfig, seed: int = BENCHMARK_SEED, n_per_cell: int = N_PER_CELL) -> float:
    """The shape threshold the rule gives for this data config: the one code path for study, explorer and CLI.

    Deterministic (fixed seed and size) and cached per config within a process.
    """
    return _cached_threshold(_config_key(config), int(seed), int(n_per_cell))


def _detected(scores: np.ndarray, threshold: float) -> np.ndarray:
    return scores > threshold


def evaluate(benchmark: Benchmark, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """ROC and AUC (scikit-learn) pooled, per kind and per corrupt grade, and detection per cell at ``threshold``.

    Per kind and per grade, the positives are that kind's (grade's) corrupt images and the negatives are
    all acceptable images (clean and every benign grade), as in the pooled ROC. JSON-able, with ``roc``
    holding (fpr, tpr) lists for plotting.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != benchmark.label.shape:
        raise AtlasError(f"need one score per benchmark image ({len(benchmark)}), got {scores.shape}")
    negatives = ~benchmark.label
    detected = _detected(scores, threshold)

    def roc(mask: np.ndarray) -> tuple[float, list[float], list[float]]:
        rows = mask | negatives
        fpr, tpr, _ = roc_curve(benchmark.label[rows], scores[rows])
        return float(roc_auc_score(benchmark.label[rows], scores[rows])), fpr.tolist(), tpr.tolist()

    pooled_auc, fpr, tpr = roc(benchmark.label)
    per_kind, curves, cells = {}, {"pooled": {"fpr": fpr, "tpr": tpr}}, []
    for name in dict.fromkeys(benchmark.kind.tolist()):
        corrupt_rows = (benchmark.kind == name) & benchmark.label
        if name == CLEAN or not corrupt_rows.any():
            continue
        auc, fpr, tpr = roc(corrupt_rows)
        per_kind[name] = auc
        curves[name] = {"fpr": fpr, "tpr": tpr}
    for name, grade in benchmark.cells():
        rows = (benchmark.kind == name) & (benchmark.grade == grade)
        label = bool(benchmark.label[rows][0])
        values = scores[rows]
        kind = KIND_BY_NAME.get(name)
        cells.append({
            "kind": name, "grade": grade, "severity": float(benchmark.severity[rows][0]),
            "unit": kind.unit if kind else "", "label": "corrupt" if label else ("clean" if name == CLEAN else "benign"),
            "n": int(rows.sum()), "detected": float(detected[rows].mean()),
            "auc": roc(rows)[0] if label else None,
            "shape_residual_p5": float(np.percentile(values, 5)),
            "shape_residual_median": float(np.median(values)),
            "shape_residual_p95": float(np.percentile(values, 95)),
        })
    positives = benchmark.label
    tpr_at, fpr_at = float(detected[positives].mean()), float(detected[negatives].mean())
    band = plausible_band(scores, benchmark.label, threshold) if threshold in CANDIDATES else None
    return {
        "family": benchmark.family,
        "threshold": float(threshold),
        "operating_point": {"tpr": tpr_at, "fpr": fpr_at, "youden_j": tpr_at - fpr_at},
        "plausible_band": None if band is None else list(band),
        "youden_curve": youden_curve(scores, benchmark.label),
        "auc": {"pooled": pooled_auc, **per_kind},
        "cells": cells,
        "roc": curves,
        "n_images": len(benchmark),
        "n_corrupt": int(positives.sum()),
        "n_acceptable": int(negatives.sum()),
    }
