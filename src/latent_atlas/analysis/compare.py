"""AE versus VAE side by side: reconstruction-error tails and how densely each packs its codes."""

from __future__ import annotations

import numpy as np

from ..errors import AtlasError
from ..evaluation import summarize
from .neighbours import code_spacing


def with_tail_ratio(summary: dict[str, float]) -> dict[str, float | None]:
    """A :func:`summarize` result plus ``tail_ratio`` = p99 / median (None if the median is 0)."""
    return {**summary, "tail_ratio": summary["p99"] / summary["median"] if summary["median"] > 0 else None}


def error_summary(errors: np.ndarray) -> dict[str, float | int | None]:
    """mean, median, p90, p99, max of per-image errors, ``tail_ratio`` = p99 / median (None if the median is 0), ``n``.

    The seed's AE is better on average but heavy-tailed: a larger tail ratio.
    """
    errors = np.asarray(errors, dtype=np.float64).ravel()
    if errors.size == 0:
        raise AtlasError("no errors to summarise")
    return {**with_tail_ratio(summarize(errors)), "n": int(errors.size)}


def worst_examples(errors: np.ndarray, k: int = 8) -> np.ndarray:
    """Indices of the k largest errors, largest first (ties keep index order)."""
    errors = np.asarray(errors, dtype=np.float64).ravel()
    return np.argsort(-errors, kind="stable")[:k]


def code_scale(codes: np.ndarray) -> float:
    """The codes' RMS distance to their centroid: sqrt(mean_i ||z_i - mean(z)||^2)."""
    codes = np.asarray(codes, dtype=np.float64)
    return float(np.sqrt(((codes - codes.mean(axis=0)) ** 2).sum(axis=1).mean()))


def nearest_neighbour_distances(codes: np.ndarray, standardise: bool = True) -> np.ndarray:
    """(N,) distance from each code to its nearest other code.

    With ``standardise`` the codes are first divided by :func:`code_scale` (one number for all axes,
    so the shape is kept), which makes two models' spacings comparable whatever their latent scale.
    """
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or len(codes) < 2:
        raise AtlasError(f"need an (N, D) array of at least 2 codes, got shape {codes.shape}")
    distances = code_spacing(codes)
    if standardise:
        scale = code_scale(codes)
        distances = distances / scale if scale > 0 else distances
    return distances


def density_summary(codes: np.ndarray) -> dict[str, float | int | None]:
    """mean, median, p90, p99, max of the standardised nearest-neighbour distances, with the ``scale`` used.

    ``tail_ratio`` = p99 / median needs no scale at all: large when most codes sit close together but
    some face wide gaps.
    """
    summary = with_tail_ratio(summarize(nearest_neighbour_distances(codes, standardise=True)))
    return {**summary, "scale": code_scale(codes), "n": int(len(codes))}
