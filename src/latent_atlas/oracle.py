"""The heatmap oracle: fit the density formula back to any image, real or decoded.

Every real image is ``normalised_density(mahalanobis_squared(var_x, var_y, rho, axis), df)``, so for any
(N, H, W) stack the oracle finds the factors of the nearest valid heatmap (least squares in pixel space)
and the Frobenius distance to it. The fit runs in the unconstrained parametrisation
``theta = (log var_x, log var_y, atanh rho[, log df])``, vectorised over images (no per-image loop):

1. start: the density is a monotone function of the quadratic form q, and a transform of the image is
   affine in q (Gaussian ``-2 log f``; Student t ``f ** (-2 / (df + 2))``), so a weighted linear least
   squares fit of a quadratic form gives the precision matrix, exactly for a noise-free heatmap, however
   much the grid truncates it (raw second moments are biased: variances reach 4.9 on [-3, 3]). The
   image's second moments are the other candidate; each image starts from whichever fits it better
   (the moments win only on images far from any heatmap: several blobs, ridges);
2. refine: Levenberg-Marquardt on ``||heatmap(theta) - image||^2`` with the analytic Jacobian, which
   removes what the start gets wrong (noise, decoder artefacts, df between the profile's grid values);
   for the Gaussian, where Gauss-Newton crawls (a large residual), steps with the cost's whole Hessian.

The fitted heatmap is max-normalised by definition (exactly 1 at the grid point of smallest q, one of
the points next to the origin that the grid lacks), so there is no free amplitude. Parameters stay in a
box (variances in [1e-3, 1e3], |rho| <= 0.999, df in [0.5, 1e4]) so that images unlike any heatmap (a
flat field, a dot) still give finite factors, and a large residual. The fit stops after ``_MAX_ITER``
iterations: on decodes of random latent points, the images that reach the cap have residuals above
0.6 (a trained model's test reconstructions: median 0.2), and theirs is then within a few per cent of
its converged value. NumPy only (no torch threads): about 1 ms of CPU for one real 36x36 image, 3 ms for a
decoded one (p50 on the 2-core development machine, benchmarks/oracle_speed.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import DataConfig
from .data import HeatmapDataset
from .data.heatmaps import normalised_density, render_heatmaps, student_t_density
from .errors import AtlasError
from .verdicts import FactorBox, NoveltyReference, Verdict

FAMILIES: dict[str, tuple[str, ...]] = {
    "gaussian": ("var_x", "var_y", "rho"),
    "student_t": ("var_x", "var_y", "rho", "df"),
}
COVARIANCE_METRICS = ("affine_invariant", "log_euclidean", "frobenius")

_FACTOR_LOW = np.array([1e-3, 1e-3, -0.999, 0.5])  # var_x, var_y, rho, df
_FACTOR_HIGH = np.array([1e3, 1e3, 0.999, 1e4])
_DF_GRID = 2.0 * 10.0 ** (np.arange(-1, 8) / 2)  # half-decade steps 0.63 ... 6325 for the start's df profile
_START_FLOOR = 1e-3  # pixels below this fraction of the image's peak stay out of the start's fit
_MAX_ITER = 20
_STEP_TOL = 1e-7  # an image is done once no parameter moves more than this (theta units: relative for variances)
_COST_TOL = 1e-7  # ... or once a step lowers its squared residual by less than this fraction
_NEWTON_BELOW = 0.2  # an accepted step that lowers the cost by less than this fraction: next step Newton's
                     # (the hybrid of Fletcher & Xu, 1987; Gaussian only)
_CHUNK = 128  # images per vectorised fit: keeps the (B, K, P) Jacobian cache-sized


@dataclass(frozen=True, eq=False)
class OracleResult:
    """What the oracle found for N images."""

    factors: np.ndarray  # (N, K) factors of the nearest valid heatmap, columns factor_names
    factor_names: tuple[str, ...]
    residual: np.ndarray  # (N,) Frobenius norm ||image - fitted heatmap||

    def factor(self, name: str) -> np.ndarray:
        if name not in self.factor_names:
            raise AtlasError(f"unknown factor {name!r}; the oracle recovers {', '.join(self.factor_names)}")
        return self.factors[:, self.factor_names.index(name)]

    def __len__(self) -> int:
        return len(self.residual)


@dataclass(frozen=True, eq=False)
class _Grid:
    """The image grid and the fixed arrays the fit needs, built once per oracle."""

    axis: np.ndarray  # (S,)
    basis: np.ndarray  # (3, P): x^2, xy, y^2 at each pixel, P = S * S in image order
    design: np.ndarray  # (4, P): x^2, 2xy, y^2, 1, the start's regressors
    products: np.ndarray  # (16, P): pairwise products of the design rows
    monomials: np.ndarray  # (P, 9): 1, x^2, xy, y^2, x^4, x^3 y, x^2 y^2, x y^3, y^4 (the basis and its products)

    @classmethod
    def build(cls, axis: np.ndarray) -> _Grid:
        x, y = np.meshgrid(axis, axis)  # (S, S) each: x[i, j] = axis[j], y[i, j] = axis[i]
        basis = np.stack([x * x, x * y, y * y]).reshape(3, -1)
        design = np.concatenate([basis * np.array([[1.0], [2.0], [1.0]]), np.ones((1, basis.shape[1]))])
        products = (design[:, None, :] * design[None, :, :]).reshape(16, -1)
        xx, xy, yy = basis
        monomials = np.stack([np.ones_like(xx), xx, xy, yy, xx * xx, xx * xy, xx * yy, xy * yy, yy * yy], axis=1)
        return cls(axis=axis, basis=basis, design=design, products=products, monomials=monomials)


def _check_family(family: str) -> tuple[str, ...]:
    if family not in FAMILIES:
        raise AtlasError(f"unknown oracle family {family!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[family]


def _check_axis(axis: np.ndarray) -> np.ndarray:
    try:
        axis = np.asarray(axis, dtype=np.float64)
    except (TypeError, ValueError):
        axis = np.empty(0)
    if axis.ndim != 1 or len(axis) < 2 or not np.all(np.isfinite(axis)) or np.any(np.diff(axis) <= 0):
        raise AtlasError("the oracle's axis must be a 1-D, finite, strictly increasing array of at least 2 points")
    return axis


def _check_images(images: np.ndarray, side: int) -> np.ndarray:
    """(N, S, S) or (S, S) finite real array -> (N, S, S) float64."""
    try:
        images = np.asarray(images, dtype=np.float64)
    except (TypeError, ValueError):
        raise AtlasError("images must be a numeric array of shape (N, H, W) or (H, W)") from None
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise AtlasError(f"images must have shape (N, H, W) or (H, W), got shape {images.shape}")
    if images.shape[1:] != (side, side):
        raise AtlasError(f"images are {images.shape[1]}x{images.shape[2]} but the oracle's grid is {side}x{side}")
    if not np.all(np.isfinite(images)):
        raise AtlasError("images contain NaN or infinite values")
    return images


def _covariance_from_precision(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Precision matrices [[a, b], [b, c]] -> (N, 3) (var_x, var_y, rho)."""
    det = a * c - b * b
    return np.stack([c / det, a / det, -b / np.sqrt(a * c)], axis=1)


def _moment_start(values: np.ndarray, grid: _Grid) -> np.ndarray:
    """(N, P) -> (N, 3) (var_x, var_y, rho): the image's second moments about the origin.

    Negative pixels count as 0; an image without mass starts at the unit covariance. The grid truncates
    the density, so large variances come out too small: only a start.
    """
    weights = np.clip(values, 0.0, None)  # (N, P)
    mass = weights.sum(axis=1)  # (N,)
    moments = weights @ grid.basis.T / np.where(mass > 0, mass, 1.0)[:, None]  # (N, 3): xx, xy, yy
    floor = np.diff(grid.axis).min() ** 2
    var_x, var_y = np.maximum(moments[:, 0], floor), np.maximum(moments[:, 2], floor)
    start = np.stack([var_x, var_y, np.clip(moments[:, 1] / np.sqrt(var_x * var_y), -0.95, 0.95)], axis=1)
    start[mass <= 0] = (1.0, 1.0, 0.0)
    return start


def _quadratic_form_start(values: np.ndarray, grid: _Grid, family: str) -> tuple[np.ndarray, np.ndarray]:
    """(N, P) -> (N, K) start factors and (N,) bool: where the fit gave a covariance matrix.

    Gaussian ``-2 log f = q - q_min``; Student t ``f ** (-2 / (df + 2)) = (df + q) / (df + q_min)``. A fit
    of the transformed image by ``a x^2 + 2 b xy + c y^2 + const`` over the pixels above ``_START_FLOOR``,
    weighted by 1 / (d transform / d f)^2 so that errors count as pixel errors, recovers the precision
    matrix [[a, b], [b, c]] (times 1 / (df + q_min) for Student t, where const = df / (df + q_min)).
    Student t profiles df over ``_DF_GRID``: each image keeps the df whose fit leaves the least misfit.
    """
    n = len(values)
    kept = values > _START_FLOOR * np.maximum(values.max(axis=1, keepdims=True), 0.0)  # (N, P)
    safe = np.where(kept, values, 1.0)
    mass = kept * safe * safe  # (N, P): the weights' common factor
    if family == "gaussian":
        dfs = np.array([np.inf])
        target = (-2.0 * np.log(safe))[:, None, :]  # (N, 1, P)
        weights = 0.25 * mass[:, None, :]
        weighted_target = weights * target
        weighted_square = np.einsum("nvp,nvp->nv", weighted_target, target)  # (N, 1)
    else:
        # target t = f^power, weight w = (f / (power t))^2, so w t = mass t^-1 / power^2 and w t^2 = mass / power^2:
        # one exponential of the (N, V, P) profile instead of a power, a division and two products.
        dfs = _DF_GRID
        power = -2.0 / (dfs + 2.0)  # (V,)
        inverse_target = np.exp(-power[None, :, None] * np.log(safe)[:, None, :])  # (N, V, P)
        weighted_target = (mass[:, None, :] / (power * power)[None, :, None]) * inverse_target
        weights = weighted_target * inverse_target
        weighted_square = mass.sum(axis=1)[:, None] / (power * power)[None, :]  # (N, V)
    normal = (weights @ grid.products.T).reshape(n, len(dfs), 4, 4)  # (N, V, 4, 4)
    normal += (1e-12 * np.trace(normal, axis1=2, axis2=3) + 1e-300)[..., None, None] * np.eye(4)
    moment = weighted_target @ grid.design.T  # (N, V, 4)
    coefficients = np.linalg.solve(normal, moment[..., None])[..., 0]  # (N, V, 4)
    misfit = weighted_square - np.einsum("nvk,nvk->nv", coefficients, moment)
    best = misfit.argmin(axis=1)  # (N,)
    a, b, c, const = coefficients[np.arange(n), best].T  # (N,) each
    df = dfs[best]
    if family == "student_t":
        scale = np.where(const > 0, df / np.where(const > 0, const, 1.0), -1.0)
        a, b, c = a * scale, b * scale, c * scale
    ok = (a > 0) & (c > 0) & (a * c - b * b > 1e-12 * a * c)
    start = np.tile([1.0, 1.0, 0.0], (n, 1))
    start[ok] = _covariance_from_precision(a[ok], b[ok], c[ok])
    return (np.column_stack([start, df]) if family == "student_t" else start), ok


def _to_theta(factors: np.ndarray) -> np.ndarray:
    """(N, K) factors, clipped into the box -> (N, K) theta = (log var_x, log var_y, atanh rho[, log df])."""
    k = factors.shape[1]
    clipped = np.clip(factors, _FACTOR_LOW[:k], _FACTOR_HIGH[:k])
    theta = np.log(np.where(np.arange(k) == 2, 1.0, clipped))
    theta[:, 2] = np.arctanh(clipped[:, 2])
    return theta


def _to_factors(theta: np.ndarray) -> np.ndarray:
    factors = np.exp(theta)
    factors[:, 2] = np.tanh(theta[:, 2])
    return factors


_THETA_LOW, _THETA_HIGH = _to_theta(_FACTOR_LOW[None])[0], _to_theta(_FACTOR_HIGH[None])[0]


def _heatmaps(factors: np.ndarray, grid: _Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple]:
    """(N, K) factors -> flattened heatmaps f (N, P), quadratic forms q (N, P), the Student t log ratio
    L - L_min (N, P; None for the Gaussian) and the precision entries (a, b, c, s), (N,) each.

    q = (x, y) Sigma^-1 (x, y)^T = a x^2 + 2 b xy + c y^2 with a = 1 / (var_x D), b = -rho s / D, c = 1 / (var_y D),
    D = 1 - rho^2, s = 1 / (sd_x sd_y): the generator's ``mahalanobis_squared`` as one (N, 3) x (3, P) product,
    which is what a small batch can afford (equal to about 1e-15 relative).
    """
    n, side = len(factors), len(grid.axis)
    var_x, var_y, rho = factors[:, 0], factors[:, 1], factors[:, 2]
    d = 1.0 - rho * rho
    s = 1.0 / np.sqrt(var_x * var_y)
    a, b, c = 1.0 / (var_x * d), -rho * s / d, 1.0 / (var_y * d)
    q = np.stack([a, 2.0 * b, c], axis=1) @ grid.basis  # (N, P)
    if factors.shape[1] == 3:
        return normalised_density(q.reshape(n, side, side), None).reshape(n, -1), q, None, (a, b, c, s)
    f, log_ratio = student_t_density(q.reshape(n, side, side), factors[:, 3])  # (N, S, S) each
    return f.reshape(n, -1), q, log_ratio.reshape(n, -1), (a, b, c, s)


def _best_start(target: np.ndarray, grid: _Grid, family: str, extra: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, _Tangent]:
    """(N, P) images -> (N, K) theta, its heatmaps f (N, P) and tangent: the quadratic-form start or the moment
    start, whichever fits better (the fit goes on from its heatmaps, without computing them again); ``extra``
    (N, K) theta adds a third candidate per image (benchmarks/oracle_local_minima.py).

    The quadratic-form start is exact on clean heatmaps but can be far off on images unlike any heatmap
    (several blobs, a ridge), where the moments are the safer guess. Ties go to the earlier candidate.
    """
    n = len(target)
    quadratic, _ = _quadratic_form_start(target, grid, family)
    moments = quadratic.copy()
    moments[:, :3] = _moment_start(target, grid)
    theta = _to_theta(np.concatenate([quadratic, moments]))  # (2N, K), inside the box
    if extra is not None:
        theta = np.concatenate([theta, _to_theta(_to_factors(extra))])  # (3N, K)
    candidates = len(theta) // n
    factors = _to_factors(theta)
    f, q, log_ratio, form = _heatmaps(factors, grid)  # (C N, P) ...
    cost = (((f - np.concatenate([target] * candidates)) ** 2).sum(axis=1)).reshape(candidates, n)
    best = np.nan_to_num(cost, nan=np.inf).argmin(axis=0) * n + np.arange(n)  # (N,): each image's best candidate
    f, q, form = f[best], q[best], tuple(x[best] for x in form)
    log_ratio = None if log_ratio is None else log_ratio[best]
    return theta[best], f, _tangent(factors[best], f, q, log_ratio, form, grid)


_SQUARES = np.array([[4, 5, 6], [5, 6, 7], [6, 7, 8]])  # the monomials' columns of b b^T, b = (x^2, xy, y^2)
_FIRST_DERIVATIVES = np.array([  # (7, 3, 3): (a, b, c, rho a, rho b, rho c, s) -> dq/dtheta_k (rows k) in x^2, xy, y^2
    [[-1, 0, 0], [0, 0, 0], [0, 0, 0]],  # a
    [[0, -1, 0], [0, -1, 0], [0, 0, 0]],  # b
    [[0, 0, 0], [0, 0, -1], [0, 0, 0]],  # c
    [[0, 0, 0], [0, 0, 0], [2, 0, 0]],  # rho a
    [[0, 0, 0], [0, 0, 0], [0, 4, 0]],  # rho b
    [[0, 0, 0], [0, 0, 0], [0, 0, 2]],  # rho c
    [[0, 0, 0], [0, 0, 0], [0, -2, 0]],  # s
], dtype=float).reshape(7, 9)
_CURVATURE = np.array([  # (8, 3, 3): the second derivatives' terms (rows of ``_residual_curvature``) -> 3 x 3
    [[1, 0, 0], [0, 0, 0], [0, 0, 2]],  # a sum_xx
    [[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0, 8]],  # b sum_xy
    [[0, 0, 0], [0, 1, 0], [0, 0, 2]],  # c sum_yy
    [[0, 0, -2], [0, 0, 0], [-2, 0, 0]],  # rho a sum_xx
    [[0, 0, -2], [0, 0, -2], [-2, -2, 0]],  # rho b sum_xy
    [[0, 0, 0], [0, 0, -2], [0, -2, 0]],  # rho c sum_yy
    [[0, 0, 0], [0, 0, 0], [0, 0, 2]],  # rho^2 (a sum_xx + c sum_yy)
    [[0, 0, 1], [0, 0, 1], [1, 1, 0]],  # s sum_xy
], dtype=float).reshape(8, 9)


@dataclass(frozen=True, eq=False)
class _GaussianTangent:
    """The Gaussian heatmaps' derivatives in closed form, without their (N, 3, P) Jacobian.

    df/dtheta_k = -f/2 (dq_k - dq_k at the peak pixel), and dq_k = C_k . b with b = (x^2, xy, y^2) the pixel's
    monomials, so J_k = -f/2 C_k . (b - b*). Then J r = -1/2 C sum_p f r (b - b*) and J J^T = 1/4 C S C^T with
    S = sum_p f^2 (b - b*)(b - b*)^T: both come from the sums of f r and f^2 times the monomials up to degree 4,
    two (N, P) x (P, 9) products: heatmaps plus normal equations 1.7x faster than with J at 8 or 128 images, a
    whole fit of 2,375 reconstructions about 1.2x (benchmarks/oracle_speed.py). The sums lose a few more
    digits than J itself near the box's rho bound: J r and J J^T agree with J's to 1e-10 or better (tests, |rho|
    up to 0.99), the fits of 2,375 reconstructions with the Jacobian's to 1e-14.

    The same sums give the cost's whole Hessian, which Gauss-Newton's J J^T leaves out the residual's part of:
    d2f/dtheta_k dtheta_l = f/4 (C_k . u)(C_l . u) - f/2 W_kl . u with u = b - b*, W_kl = d2w/dtheta_k dtheta_l
    the form's second derivatives, so sum_p r d2f = 1/4 C (sum_p f r u u^T) C^T - 1/2 W . sum_p f r u.
    """

    f: np.ndarray  # (N, P) heatmaps
    coefficients: np.ndarray  # (N, 3, 3): dq/dtheta_k in the basis x^2, xy, y^2
    peak: np.ndarray  # (N, 3): b* = (x^2, xy, y^2) at each heatmap's peak pixel (its smallest q)
    form: np.ndarray  # (N, 5): a, b, c, s, rho of the quadratic form (see ``_tangent``)

    def rows(self, index: np.ndarray) -> _GaussianTangent:
        return _GaussianTangent(self.f[index], self.coefficients[index], self.peak[index], self.form[index])

    def _about_peak(self, sums: np.ndarray) -> np.ndarray:
        """(N, ..., 9) sums of w m over the monomials m -> (N, ..., 3, 3) sum_p w (b - b*)(b - b*)^T."""
        peak = self.peak.reshape(len(self.peak), *([1] * (sums.ndim - 2)), 3)  # (N, ..., 3)
        first = sums[..., 1:4, None] * peak[..., None, :]  # (N, ..., 3, 3): sum w b b*^T
        return (sums[..., _SQUARES] - first - np.swapaxes(first, -1, -2)
                + sums[..., :1, None] * peak[..., :, None] * peak[..., None, :])

    def _residual_curvature(self, centred: np.ndarray) -> np.ndarray:
        """(N, 3) sums sum_p f r u -> (N, 3, 3) sum_k W_kl . sum_p f r u, from the form's second derivatives W.

        With w = (a, 2b, c): a = e^-theta_1 cosh^2 theta_3, c = e^-theta_2 cosh^2 theta_3 and
        2b = -e^-(theta_1 + theta_2)/2 sinh 2 theta_3, so, writing p = (a, b, c) * sums, each entry is a fixed
        combination of p, rho p, rho^2 p and s times the xy sum (one product with ``_CURVATURE``; tests check it
        against finite differences of the cost):
          W_11 = (a, b/2, 0),  W_12 = (0, b/2, 0),  W_22 = (0, b/2, c),  W_13 = (-2 rho a, s - 2 rho b, 0),
          W_23 = (0, s - 2 rho b, -2 rho c),  W_33 = (2 a (1 + rho^2), 8 b, 2 c (1 + rho^2)).
        """
        a_b_c, s, rho = self.form[:, :3], self.form[:, 3:4], self.form[:, 4:5]  # (N, 3), (N, 1), (N, 1)
        p = a_b_c * centred  # (N, 3): a sum_xx, b sum_xy, c sum_yy
        terms = np.concatenate([p, rho * p, rho * rho * (p[:, :1] + p[:, 2:]), s * centred[:, 1:2]], axis=1)  # (N, 8)
        return (terms @ _CURVATURE).reshape(-1, 3, 3)

    def normal_equations(self, residual: np.ndarray, grid: _Grid, newton: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, P) residual -> gradient J r (N, 3), Gauss-Newton's J J^T (N, 3, 3) and the step's matrix (N, 3, 3):
        J J^T, or where ``newton`` (N,) bool is set and it is positive definite, the Hessian J J^T + sum_p r d2f."""
        weighted = (self.f * residual) @ grid.monomials  # (N, 9): sum f r m for each monomial m
        squared = (self.f * self.f) @ grid.monomials  # (N, 9): sum f^2 m
        centred = weighted[:, 1:4] - weighted[:, :1] * self.peak  # (N, 3): sum f r (b - b*)
        gradient = -0.5 * np.einsum("nkm,nm->nk", self.coefficients, centred)
        coefficients, transposed = self.coefficients, self.coefficients.transpose(0, 2, 1)
        if newton is None or not newton.any():
            gauss_newton = 0.25 * coefficients @ self._about_peak(squared) @ transposed
            return gradient, gauss_newton, gauss_newton
        # every row at once (a NumPy call costs more than its rows here): J J^T and the residual's part of the Hessian
        both = 0.25 * coefficients[:, None] @ self._about_peak(np.stack([squared, weighted], axis=1)) @ transposed[:, None]
        gauss_newton = both[:, 0]  # (N, 3, 3)
        hessian = gauss_newton + both[:, 1] - 0.5 * self._residual_curvature(centred)  # (N, 3, 3)
        minor = hessian[:, 0, 0] * hessian[:, 1, 1] - hessian[:, 0, 1] ** 2
        positive = (hessian[:, 0, 0] > 0) & (minor > 0) & (np.linalg.det(hessian) > 0)  # Sylvester's criterion
        return gradient, gauss_newton, np.where((newton & positive)[:, None, None], hessian, gauss_newton)

    def jacobian(self, grid: _Grid) -> np.ndarray:
        """The (N, 3, P) Jacobian itself (what the normal equations stand for)."""
        return -0.5 * self.f[:, None, :] * (self.coefficients @ (grid.basis[None] - self.peak[:, :, None]))


@dataclass(frozen=True, eq=False)
class _JacobianTangent:
    """Derivatives kept as the (N, K, P) Jacobian (the Student t heatmaps)."""

    jac: np.ndarray  # (N, K, P)

    def rows(self, index: np.ndarray) -> _JacobianTangent:
        return _JacobianTangent(self.jac[index])

    def normal_equations(self, residual: np.ndarray, grid: _Grid, newton: np.ndarray | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, P) residual -> gradient J r (N, K) and Gauss-Newton's J J^T (N, K, K), twice: the step's matrix is
        J J^T too. ``newton`` is ignored: the Student t's second derivatives are not written out, so its fit stays
        Gauss-Newton throughout."""
        gauss_newton = self.jac @ self.jac.transpose(0, 2, 1)
        return np.einsum("nkp,np->nk", self.jac, residual), gauss_newton, gauss_newton

    def jacobian(self, grid: _Grid) -> np.ndarray:
        return self.jac


_Tangent = _GaussianTangent | _JacobianTangent


def _heatmap_and_tangent(theta: np.ndarray, grid: _Grid) -> tuple[np.ndarray, _Tangent]:
    """(N, K) theta -> flattened heatmaps f (N, P) and their derivatives df/dtheta (a tangent: normal equations
    and, on demand, the (N, K, P) Jacobian)."""
    factors = _to_factors(theta)  # (N, K)
    f, q, log_ratio, form = _heatmaps(factors, grid)  # (N, P) each; (N,) each
    return f, _tangent(factors, f, q, log_ratio, form, grid)


def _tangent(factors: np.ndarray, f: np.ndarray, q: np.ndarray, log_ratio: np.ndarray | None, form: tuple,
             grid: _Grid) -> _Tangent:
    """The derivatives df/dtheta of the heatmaps f (N, P) that ``_heatmaps`` gave for ``factors`` (N, K).

    With u = x / sd_x, v = y / sd_y and D = 1 - rho^2 the form is q = (u^2 - 2 rho u v + v^2) / D
    = a x^2 + 2 b xy + c y^2 (a = 1 / (var_x D), b = -rho s / D, c = 1 / (var_y D), s = 1 / (sd_x sd_y)), and
      dq/dlog var_x = -a x^2 - b xy,   dq/dlog var_y = -c y^2 - b xy,   dq/datanh rho = 2 rho q - 2 s xy.
    The heatmap depends on q - q_min, q_min being q at the grid point where q is smallest; then
      Gaussian  f = exp(-(q - q_min) / 2):   df/dtheta = -f/2 (dq - dq_min),
      Student t log f = -(nu + 2)/2 (L - L_min), L = log(1 + q / nu):
        df/dtheta = -(nu + 2)/2 f (dq / (nu + q) - dq_min / (nu + q_min)),
        df/dlog nu = f (-nu/2 (L - L_min) + (nu + 2)/2 (q / (nu + q) - q_min / (nu + q_min))).
    """
    n = len(factors)
    a, b, c, s = form
    rho = factors[:, 2]
    precision = np.stack([a, b, c, s, rho], axis=1)  # (N, 5)
    terms = np.concatenate([precision[:, :3], rho[:, None] * precision[:, :3], s[:, None]], axis=1)  # (N, 7)
    coefficients = (terms @ _FIRST_DERIVATIVES).reshape(n, 3, 3)  # (N, 3, 3): dq/dtheta_k in the basis x^2, xy, y^2
    peak = q.argmin(axis=1)  # (N,)
    if factors.shape[1] == 3:
        return _GaussianTangent(f, coefficients, grid.basis[:, peak].T, precision)

    dq = coefficients @ grid.basis  # (N, 3, P)
    rows = np.arange(n)
    q_min, dq_min = q[rows, peak], dq[rows, :, peak]  # (N,), (N, 3)
    nu, q_min = factors[:, 3, None], q_min[:, None]  # (N, 1)
    half_power = 0.5 * (nu + 2.0)  # (N, 1)
    jacobian = np.empty((n, 4, q.shape[1]))  # (N, 4, P)
    np.multiply(dq, 1.0 / (nu + q)[:, None, :], out=jacobian[:, :3])
    jacobian[:, :3] -= (dq_min / (nu + q_min))[:, :, None]
    jacobian[:, :3] *= (-half_power * f)[:, None, :]
    jacobian[:, 3] = f * (-0.5 * nu * log_ratio + half_power * (q / (nu + q) - q_min / (nu + q_min)))
    return _JacobianTangent(jacobian)


def _levenberg_marquardt(target: np.ndarray, theta: np.ndarray, f: np.ndarray, tangent: _Tangent, grid: _Grid
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ||f(theta) - target||^2 per image from (N, K) starts with their heatmaps f (N, P) and tangent;
    returns theta (N, K) and f (N, P).

    Marquardt's scaled damping per image, updated from the ratio of actual to predicted gain (Nielsen's
    rule), inside the parameter box: a parameter on its bound with the gradient pushing outwards is held
    for that step (projected Gauss-Newton). An image is done when a step moves no parameter by
    ``_STEP_TOL`` or lowers its cost by less than ``_COST_TOL`` (relative); each iteration evaluates
    only the images not done. Only the gradient, the K x K Gauss-Newton matrix and the step's matrix of each
    image's current point are kept, computed only for the trial points accepted, and for the Gaussian without
    forming the Jacobian (``_GaussianTangent``).

    Gauss-Newton converges only linearly where the residual stays large (a decode unlike any heatmap): each
    step then lowers the cost by a few per cent, and such images used to run into ``_MAX_ITER``. So after an
    accepted step that lowered its cost by less than ``_NEWTON_BELOW`` of it, an image's next step uses the
    cost's whole Hessian where that is positive definite (Fletcher & Xu's hybrid; the Gaussian's second
    derivatives come from the same moments). The damping stays scaled by J J^T's diagonal, and an image whose
    Newton step was rejected tries Gauss-Newton's next, so a Hessian that holds only near its point (the peak
    pixel moves) costs one rejected step, not a walk along a flat valley. On 2,000 decodes of uniform codes in
    batches of 8 (benchmarks/oracle_speed.py --run, the two alternating batch by batch): 7.0 -> 5.0 iterations
    per batch (its slowest image's; p99 20 -> 9.5), ms per batch p99 12.1-15.0 -> 8.4-9.6, mean 9 % and median
    2-4 % lower (a Newton step costs more than a Gauss-Newton one); the costs reached agree with Gauss-Newton's
    to 2e-6 relative, the factors to 7e-8 (median).
    """
    k = theta.shape[1]
    low, high, eye = _THETA_LOW[:k], _THETA_HIGH[:k], np.eye(k)
    residual = f - target  # (N, P)
    cost = np.einsum("np,np->n", residual, residual)  # (N,)
    gradients, gauss_newtons, normals = tangent.normal_equations(residual, grid)  # (N, K), (N, K, K) twice
    normals = normals.copy()  # the step's matrices: J J^T or, after a slow step, the Hessian
    damping, growth = np.full(len(theta), 1e-3), np.full(len(theta), 2.0)
    active = np.arange(len(theta))
    for _ in range(_MAX_ITER):
        if active.size == 0:
            break
        gradient, current = gradients[active], theta[active]  # (A, K), (A, K)
        free = ~(((current <= low) & (gradient > 0)) | ((current >= high) & (gradient < 0)))  # (A, K)
        held = free[:, :, None] & free[:, None, :]  # (A, K, K)
        hessian = normals[active] * held  # (A, K, K)
        diagonal = np.einsum("akk->ak", gauss_newtons[active] * held)  # (A, K): Marquardt's scaling, from J J^T
        system = hessian + (damping[active, None] * diagonal + 1e-12 + ~free)[:, :, None] * eye
        step = -np.linalg.solve(system, (gradient * free)[..., None])[..., 0]  # (A, K)
        trial = np.clip(current + step, low, high)
        f_trial, tangent = _heatmap_and_tangent(trial, grid)
        residual_trial = f_trial - target[active]  # (A, P)
        cost_trial = np.einsum("ap,ap->a", residual_trial, residual_trial)
        gain = cost[active] - cost_trial  # (A,)
        taken = trial - current  # (A, K)
        predicted = -np.einsum("ak,ak->a", taken, 2.0 * gradient + np.einsum("akl,al->ak", hessian, taken))
        better = gain >= 0
        done = (np.abs(trial - current).max(axis=1) < _STEP_TOL) | (better & (gain <= _COST_TOL * cost[active]))
        accepted = active[better]
        slow = gain[better] < _NEWTON_BELOW * cost[accepted]  # (M,): Gauss-Newton crawls (a large residual)
        theta[accepted], f[accepted], cost[accepted] = trial[better], f_trial[better], cost_trial[better]
        gradients[accepted], gauss_newtons[accepted], normals[accepted] = tangent.rows(better).normal_equations(
            residual_trial[better], grid, newton=slow)
        ratio = np.clip(gain[better] / np.maximum(predicted[better], 1e-300), 0.0, 1.0)  # actual / predicted gain
        damping[accepted] = np.maximum(damping[accepted] * np.maximum(1 / 3, 1 - (2 * ratio - 1) ** 3), 1e-9)
        growth[accepted] = 2.0
        rejected = active[~better]
        normals[rejected] = gauss_newtons[rejected]  # a Newton step that failed: Gauss-Newton's next
        damping[rejected] *= growth[rejected]
        growth[rejected] *= 2.0
        active = active[~(done | (damping[active] > 1e9))]
    return theta, f


def _fit(images: np.ndarray, grid: _Grid, family: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked (N, S, S) images -> factors (N, K), residual ||image - fitted|| (N,) and ||fitted|| (N,)."""
    n = len(images)
    values = images.reshape(n, len(grid.axis) ** 2)  # (N, P)
    factors = np.empty((n, len(FAMILIES[family])))
    residual, fitted_norm = np.empty(n), np.empty(n)
    for lo in range(0, n, _CHUNK):
        target = values[lo : lo + _CHUNK]  # (B, P)
        theta, fitted = _levenberg_marquardt(target, *_best_start(target, grid, family), grid)
        factors[lo : lo + _CHUNK] = _to_factors(theta)
        residual[lo : lo + _CHUNK] = np.linalg.norm(fitted - target, axis=1)
        fitted_norm[lo : lo + _CHUNK] = np.linalg.norm(fitted, axis=1)
    return factors, residual, fitted_norm


def _recover(images: np.ndarray, grid: _Grid, family: str) -> tuple[np.ndarray, np.ndarray]:
    factors, residual, _ = _fit(_check_images(images, len(grid.axis)), grid, family)
    return factors, residual


def recover_factors(images: np.ndarray, axis: np.ndarray, family: str = "gaussian") -> tuple[np.ndarray, np.ndarray]:
    """Factors of the nearest valid heatmap (N, K) and the Frobenius distance to it (N,).

    ``images`` is (N, H, W) or one (H, W) image (then N = 1) on the square grid ``axis`` x ``axis``;
    columns follow ``FAMILIES[family]``.
    """
    _check_family(family)
    return _recover(images, _Grid.build(_check_axis(axis)), family)


def recover_shape(images: np.ndarray, axis: np.ndarray, family: str = "gaussian") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Factors (N, K), residual ||image - fitted||_F (N,) and shape residual residual / ||fitted||_F (N,).

    Why the fitted heatmap's norm: it is never small (the fitted heatmap's peak is exactly 1), so a dark
    or empty image gets shape residual 1 (not the infinity of ||image||-based scaling), an extra blob
    grows without bound with the blob's mass (||image||-based scaling saturates below 1 as the extra mass
    dominates), and an amplitude change a * heatmap comes out as about |1 - a| for thin and round
    ellipses alike, whose norms run from about 2 to 22 (the fit may absorb a little of it: 0.075 and
    0.066 for a = 0.9). Additive noise or a background offset is judged relative to the heatmap's own
    mass: the same faint background counts more against a thin ellipse (norm 2) than a round one (norm
    22), being a larger part of that image. A uniform bright background over the whole grid is close to a
    very wide heatmap, so its shape residual stays moderate; the range check catches the wide factors.
    """
    _check_family(family)
    grid = _Grid.build(_check_axis(axis))
    factors, residual, fitted_norm = _fit(_check_images(images, len(grid.axis)), grid, family)
    return factors, residual, residual / fitted_norm


def _check_threshold(value: Any) -> float:
    try:
        threshold = float(value)
    except (TypeError, ValueError):
        threshold = math.nan
    if not (math.isfinite(threshold) and threshold > 0):
        raise AtlasError(f"the shape threshold must be a positive finite number, got {value!r}")
    return threshold


class HeatmapOracle:
    """Recovers factors from images and gives each image a verdict: shape, range and novelty.

    ``verdict(images)`` -> ``Verdict``: ``shape_ok`` (the shape residual, ``recover_shape``, within
    ``shape_threshold``), ``in_range`` (the recovered factors inside ``box``), ``valid`` (both) and the
    distance to the nearest ``reference`` (training) image. ``for_dataset`` takes the grid, family, box,
    training images and data config from a dataset; the shape threshold is then the corruption
    benchmark's rule for that config (``latent_atlas.corruptions.shape_threshold_for``), computed on
    first use, unless given. No model enters any of it.
    """

    def __init__(self, axis: np.ndarray, family: str = "gaussian", *, box: FactorBox | None = None,
                 shape_threshold: float | None = None, reference: NoveltyReference | None = None,
                 data_config: DataConfig | None = None):
        self.factor_names = _check_family(family)
        self.family = family
        self.axis = _check_axis(axis)
        if box is not None and box.names != self.factor_names:
            raise AtlasError(f"the factor box covers {', '.join(box.names)} but the {family} oracle recovers "
                             f"{', '.join(self.factor_names)}")
        if data_config is not None and (data_config.kind != family or data_config.grid_size != len(self.axis)):
            raise AtlasError(f"the data config ({data_config.kind}, {data_config.grid_size}x{data_config.grid_size}) "
                             f"does not match the oracle ({family}, {len(self.axis)}x{len(self.axis)})")
        self.box = box
        self.reference = reference
        self.data_config = data_config
        self._shape_threshold = None if shape_threshold is None else _check_threshold(shape_threshold)
        self._grid = _Grid.build(self.axis)

    @classmethod
    def for_dataset(cls, dataset: HeatmapDataset, *, shape_threshold: float | None = None, **kwargs: Any) -> HeatmapOracle:
        """An oracle on the dataset's grid for its family, with its factor box and its training images as the
        novelty reference; the shape threshold is the benchmark rule's for the dataset's config unless given."""
        if dataset.image_shape != (len(dataset.axis), len(dataset.axis)):
            raise AtlasError(f"dataset images are {dataset.image_shape} but its config's grid is {len(dataset.axis)}")
        return cls(dataset.axis, family=dataset.config.kind, box=FactorBox.from_config(dataset.config),
                   shape_threshold=shape_threshold, reference=NoveltyReference.from_dataset(dataset),
                   data_config=dataset.config, **kwargs)

    @property
    def shape_threshold(self) -> float:
        """The largest shape residual still called a heatmap of the family."""
        if self._shape_threshold is None:
            if self.data_config is None:
                raise AtlasError("the oracle has no shape threshold: give shape_threshold, or a data config "
                                 "(HeatmapOracle.for_dataset) for the corruption benchmark's rule")
            from .corruptions import shape_threshold_for

            self._shape_threshold = shape_threshold_for(self.data_config)
        return self._shape_threshold

    def verdict(self, images: np.ndarray, novelty: bool = True) -> Verdict:
        """(N, H, W) or one (H, W) image -> the ``Verdict``: factors, residuals, shape / range checks, novelty.

        ``novelty=False`` skips the nearest-neighbour search (novelty NaN, nearest index -1); without a
        reference it is skipped too.
        """
        if self.box is None:
            raise AtlasError("the oracle has no factor box: give box=FactorBox.from_config(config), or use "
                             "HeatmapOracle.for_dataset")
        threshold = self.shape_threshold
        images = _check_images(images, len(self.axis))
        factors, residual, fitted_norm = _fit(images, self._grid, self.family)
        n, k = factors.shape
        if novelty and self.reference is not None:
            distance, index, nearest = self.reference.nearest(images)
        else:
            distance, index, nearest = np.full(n, np.nan), np.full(n, -1, dtype=np.int64), np.full((n, k), np.nan)
        return Verdict(factor_names=self.factor_names, factors=factors, residual=residual,
                       shape_residual=residual / fitted_norm, shape_threshold=threshold, box=self.box,
                       novelty=distance, nearest_index=index, nearest_factors=nearest)

    def describe(self) -> dict[str, Any]:
        """JSON-able: family, grid size, shape threshold (resolving it) and the factor box."""
        return {"family": self.family, "grid_size": len(self.axis), "shape_threshold": self.shape_threshold,
                "box": None if self.box is None else self.box.to_dict()}

    def recover(self, images: np.ndarray) -> OracleResult:
        """(N, H, W) or one (H, W) image -> factors of the nearest heatmap of the family and the residuals."""
        factors, residual = _recover(images, self._grid, self.family)
        return OracleResult(factors=factors, factor_names=self.factor_names, residual=residual)

    def render(self, factors: np.ndarray) -> np.ndarray:
        """(N, K) factors, e.g. ``OracleResult.factors`` -> the heatmaps they describe, (N, H, W) float32."""
        factors = np.atleast_2d(np.asarray(factors, dtype=np.float64))
        if factors.ndim != 2 or factors.shape[1] != len(self.factor_names):
            raise AtlasError(f"factors must have shape (N, {len(self.factor_names)}), got {factors.shape}")
        df = factors[:, 3] if self.family == "student_t" else None
        return render_heatmaps(factors[:, 0], factors[:, 1], factors[:, 2], self.axis, df)

    def __repr__(self) -> str:
        threshold = "unset" if self._shape_threshold is None else f"{self._shape_threshold:g}"
        return f"HeatmapOracle(family={self.family!r}, grid={len(self.axis)}, shape_threshold={threshold})"


def covariance_matrices(factors: np.ndarray) -> np.ndarray:
    """(N, K) factor tables, columns var_x, var_y, rho first -> (N, 2, 2) covariance matrices."""
    factors = np.atleast_2d(np.asarray(factors, dtype=np.float64))
    if factors.ndim != 2 or factors.shape[1] < 3:
        raise AtlasError(f"factor tables need columns var_x, var_y, rho first, got shape {factors.shape}")
    var_x, var_y, rho = factors[:, 0], factors[:, 1], factors[:, 2]
    if not (np.all(np.isfinite(factors[:, :3])) and np.all(var_x > 0) and np.all(var_y > 0) and np.all(abs(rho) < 1)):
        raise AtlasError("factor tables need positive finite variances and correlations strictly inside (-1, 1)")
    cov_xy = rho * np.sqrt(var_x * var_y)
    return np.stack([np.stack([var_x, cov_xy], axis=1), np.stack([cov_xy, var_y], axis=1)], axis=1)


def _spd_log(matrices: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrices)  # (N, 2), (N, 2, 2)
    return (vectors * np.log(values)[:, None, :]) @ vectors.transpose(0, 2, 1)


def covariance_distance(factors_a: np.ndarray, factors_b: np.ndarray, metric: str = "affine_invariant") -> np.ndarray:
    """(N,) distances between the covariance matrices of two factor tables, row by row.

    Columns var_x, var_y, rho first; a df column is ignored. Every metric is symmetric, zero exactly on
    equal matrices and unchanged when both heatmaps are rotated by the same angle (Sigma -> R Sigma R^T),
    which a pixel distance is not (the square grid cuts a rotated ellipse differently).

    - ``affine_invariant`` (default): ``||log(A^-1/2 B A^-1/2)||_F = sqrt(sum_i log^2 lambda_i)``, lambda
      the eigenvalues of A^-1 B. It ignores any common linear change of coordinates, scale included, so it
      measures relative change, as the images do: variance 0.1 -> 0.2 counts like 2 -> 4 (both ~0.69),
      where the Frobenius distance would call the first 20 times smaller. 0.1 is roughly a 10 % change.
    - ``log_euclidean``: ``||log A - log B||_F``; also relative, equal to the above for commuting A, B.
    - ``frobenius``: ``||A - B||_F`` in variance units; dominated by the largest variances.
    """
    if metric not in COVARIANCE_METRICS:
        raise AtlasError(f"unknown covariance metric {metric!r}; choose one of {', '.join(COVARIANCE_METRICS)}")
    a, b = covariance_matrices(factors_a), covariance_matrices(factors_b)  # (N, 2, 2)
    if a.shape != b.shape:
        raise AtlasError(f"factor tables differ in length: {len(a)} and {len(b)} rows")
    if metric == "frobenius":
        return np.linalg.norm(a - b, axis=(1, 2))
    if metric == "log_euclidean":
        return np.linalg.norm(_spd_log(a) - _spd_log(b), axis=(1, 2))
    values, vectors = np.linalg.eigh(a)
    inverse_root = (vectors / np.sqrt(values)[:, None, :]) @ vectors.transpose(0, 2, 1)  # (N, 2, 2)
    relative = np.linalg.eigvalsh(inverse_root @ b @ inverse_root)  # (N, 2)
    return np.sqrt((np.log(relative) ** 2).sum(axis=1))
