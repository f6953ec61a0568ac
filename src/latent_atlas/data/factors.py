"""Generating factors for the heatmap datasets: full grids or uniform random draws, plus the df rule."""

from __future__ import annotations

import numpy as np

from ..config import DataConfig


def covariance_factors(config: DataConfig, rng: np.random.Generator) -> np.ndarray:
    """(N, 3) table of (var_x, var_y, rho): every grid combination, or ``n_samples`` uniform draws.

    Grid order: var_x varies slowest, rho fastest.
    """
    ranges = (config.var_x, config.var_y, config.rho)
    if config.sampling == "grid":
        mesh = np.meshgrid(*(r.grid() for r in ranges), indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1)
    return np.stack([rng.uniform(r.low, r.high, size=config.n_samples) for r in ranges], axis=1)


def degrees_of_freedom(var_x: np.ndarray, var_y: np.ndarray, config: DataConfig, rng: np.random.Generator) -> np.ndarray:
    """The seed's rule |var_x + var_y|^2 - l > threshold, l ~ U(0, noise_max), gives df_heavy where it holds
    (``df_rule_gives = "heavy"``, the default reading) or df_light there (``"light"``, the opposite reading)."""
    noise = rng.uniform(0.0, config.df_noise_max, size=len(var_x))
    holds = np.abs(var_x + var_y) ** 2 - noise > config.df_threshold
    heavy = holds if config.df_rule_gives == "heavy" else ~holds
    return np.where(heavy, config.df_heavy, config.df_light)


def sample_factors(config: DataConfig, rng: np.random.Generator) -> np.ndarray:
    """(N, K) factor table with columns ``config.factor_names``."""
    table = covariance_factors(config, rng)
    if config.kind == "student_t":
        df = degrees_of_freedom(table[:, 0], table[:, 1], config, rng)
        table = np.column_stack([table, df])
    return table
