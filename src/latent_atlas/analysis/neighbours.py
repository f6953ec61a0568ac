"""Nearest-code distances: how far a point is from the codes, and how far apart the codes are."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..errors import AtlasError


def as_codes(codes: np.ndarray, name: str = "codes", min_count: int = 1, min_dim: int = 1) -> np.ndarray:
    """``codes`` as a float64 (N, D) array with N >= min_count and D >= min_dim, else an AtlasError naming it."""
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) < min_count or codes.shape[1] < min_dim:
        raise AtlasError(f"{name} must be an (N, D) array with N >= {min_count} and D >= {min_dim}, "
                         f"got shape {codes.shape}")
    return codes


def distance_to_codes(points: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(M, D) points -> (M,) Euclidean distance to the nearest of the (N, D) codes."""
    codes = as_codes(codes)
    points = as_codes(points, "points", min_count=0)
    if points.shape[1] != codes.shape[1]:
        raise AtlasError(f"points have {points.shape[1]} coordinates but the codes {codes.shape[1]}")
    return cKDTree(codes).query(points, k=1)[0]


def code_spacing(codes: np.ndarray) -> np.ndarray:
    """(N,) distance from each code to its nearest *other* code (0 for duplicated codes)."""
    codes = as_codes(codes, min_count=2)
    return cKDTree(codes).query(codes, k=2)[0][:, 1]


def typical_spacing(codes: np.ndarray) -> float:
    """Median :func:`code_spacing`: the scale on which "far from the codes" is judged."""
    return float(np.median(code_spacing(codes)))


def spacing_threshold(codes: np.ndarray, quantile: float = 0.99) -> float:
    """The ``quantile`` of :func:`code_spacing`: a point farther than this from every code is in a hole."""
    return float(np.quantile(code_spacing(codes), quantile))
