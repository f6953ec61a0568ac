"""Render max-normalised density heatmaps from factors, vectorised over images.

Orientation: ``image[i, j]`` is the density at ``x = axis[j]`` (columns) and ``y = axis[i]`` (rows),
with row 0 at ``y = -extent``; plot with ``origin="lower"`` to see the usual axes.
"""

from __future__ import annotations

import numpy as np

# Rendering goes in chunks so that the float64 temporaries stay small (about 25 MB per chunk at 36x36).
_CHUNK = 2048


def grid_axis(grid_size: int, extent: float) -> np.ndarray:
    """The evaluation points along each image axis: ``numpy.linspace(-extent, extent, grid_size)``."""
    return np.linspace(-extent, extent, grid_size)


def mahalanobis_squared(var_x: np.ndarray, var_y: np.ndarray, rho: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """(x, y) Sigma^-1 (x, y)^T on the grid for each image's covariance; returns (N, H, W)."""
    sx = np.sqrt(np.asarray(var_x, dtype=np.float64))[:, None, None]  # (N, 1, 1)
    sy = np.sqrt(np.asarray(var_y, dtype=np.float64))[:, None, None]
    r = np.asarray(rho, dtype=np.float64)[:, None, None]
    u = axis[None, None, :] / sx  # (N, 1, W): x along columns
    v = axis[None, :, None] / sy  # (N, H, 1): y along rows
    return (u * u - 2.0 * r * u * v + v * v) / (1.0 - r * r)  # (N, H, W)


def normalised_density(q: np.ndarray, df: np.ndarray | None) -> np.ndarray:
    """Density divided by its grid maximum, as a function of the Mahalanobis form q (N, H, W).

    Both densities fall monotonically in q, so the grid maximum sits at the smallest q and the
    normalising constants cancel: Gaussian exp(-(q - q_min) / 2); Student t
    ((1 + q / df) / (1 + q_min / df)) ** (-(df + 2) / 2).
    """
    if df is None:
        return np.exp(-0.5 * (q - q.min(axis=(1, 2), keepdims=True)))
    return student_t_density(q, df)[0]


def student_t_density(q: np.ndarray, df: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Student t heatmap (N, H, W) and its log ratio L - L_min, L = log(1 + q / df) (N, H, W), for whoever
    differentiates it (the oracle's Jacobian) without taking the logarithms again."""
    nu = np.asarray(df, dtype=np.float64)[:, None, None]  # (N, 1, 1)
    log_ratio = np.log1p(q / nu) - np.log1p(q.min(axis=(1, 2), keepdims=True) / nu)
    return np.exp(-0.5 * (nu + 2.0) * log_ratio), log_ratio


def render_heatmaps(
    var_x: np.ndarray,
    var_y: np.ndarray,
    rho: np.ndarray,
    axis: np.ndarray,
    df: np.ndarray | None = None,
) -> np.ndarray:
    """Max-normalised bivariate normal (df None) or Student t heatmaps; returns float32 (N, H, W)."""
    var_x, var_y, rho = (np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (var_x, var_y, rho))
    n = len(var_x)
    images = np.empty((n, len(axis), len(axis)), dtype=np.float32)
    for lo in range(0, n, _CHUNK):
        part = slice(lo, lo + _CHUNK)
        q = mahalanobis_squared(var_x[part], var_y[part], rho[part], axis)
        images[part] = normalised_density(q, None if df is None else np.atleast_1d(df)[part])
    return images


def render_from_factors(factors: np.ndarray, factor_names: tuple[str, ...], axis: np.ndarray) -> np.ndarray:
    """Render from a factor table whose columns are named (var_x, var_y, rho[, df])."""
    column = {name: factors[:, k] for k, name in enumerate(factor_names)}
    return render_heatmaps(column["var_x"], column["var_y"], column["rho"], axis, column.get("df"))
