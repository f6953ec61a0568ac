"""A factor compass at one latent code: which way each recovered factor grows, by central finite differences.

The code and its 2D neighbours (+-step along every latent axis) are decoded together and the oracle recovers
the factors of all 2D + 1 images at once; the gradient of factor k along axis i is
(f_k(z + h e_i) - f_k(z - h e_i)) / 2h. Factors are compared in the units where they act additively:
log variances, rho as it is, log df.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import AtlasError
from ..verdicts import Verdict

LOG_FACTORS = ("var_x", "var_y", "df")
STEP_ROUNDING = 0.01  # a stencil step may differ from the one asked by this fraction after float32 rounding
STEP_ULPS = 200  # a step of this many float32 spacings of the code rounds by at most 1 / 400 of itself


def unit_name(factor: str) -> str:
    return f"log {factor}" if factor in LOG_FACTORS else factor


def in_units(factor_names: tuple[str, ...], factors: np.ndarray) -> np.ndarray:
    """(N, K) recovered factors -> (N, K) in compass units (log for variances and df, rho unchanged)."""
    factors = np.asarray(factors, dtype=np.float64)
    columns = [np.log(np.maximum(factors[:, k], np.finfo(np.float64).tiny)) if name in LOG_FACTORS else factors[:, k]
               for k, name in enumerate(factor_names)]
    return np.column_stack(columns)


def stencil(code: np.ndarray, step: float) -> np.ndarray:
    """(D,) code -> (2D + 1, D): the code, then code + step e_i and code - step e_i for each axis i in turn, each
    rounded to float32, the precision the decoder is given (so these are exactly the codes decoded).

    A step so small against the code that rounding moves it by more than ``STEP_ROUNDING`` of itself is refused:
    code +- step would round back onto (or next to) the code, and a difference quotient over the requested step
    would divide the decoder's rounding by a step it never took."""
    code = np.asarray(code, dtype=np.float64)
    if code.ndim != 1 or not np.all(np.isfinite(code)):
        raise AtlasError(f"a compass needs one finite code of shape (D,), got shape {code.shape}")
    if not (np.isfinite(step) and step > 0):
        raise AtlasError(f"the compass step must be a positive finite number, got {step}")
    offsets = step * np.eye(len(code))  # (D, D)
    pairs = np.stack([code + offsets, code - offsets], axis=1).reshape(-1, len(code))  # (2D, D): +e0, -e0, +e1, ...
    codes = np.vstack([code, pairs]).astype(np.float32).astype(np.float64)  # (2D + 1, D)
    taken = _spacings(codes) / 2.0  # (D,) the step each axis really takes
    if np.any(np.abs(taken - step) > STEP_ROUNDING * step):
        smallest = float(np.abs(code).max() * np.finfo(np.float32).eps / STEP_ROUNDING)
        raise AtlasError(f"the compass step {step:g} is too small for this code in float32 (the decoder's precision): "
                         f"use a step of at least {smallest:.2g}")
    return codes


def _spacings(codes: np.ndarray) -> np.ndarray:
    """(2D + 1, D) stencil codes -> (D,) (code + step e_i)_i - (code - step e_i)_i."""
    d = codes.shape[1]
    return codes[1::2][np.arange(d), np.arange(d)] - codes[2::2][np.arange(d), np.arange(d)]


def central_gradient(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(2D + 1, K) values on the ``stencil`` ``codes`` (2D + 1, D) -> (K, D) central-difference gradient, each axis
    divided by the spacing its two codes really have."""
    values = np.asarray(values, dtype=np.float64)
    plus, minus = values[1::2], values[2::2]  # (D, K) each
    return ((plus - minus) / _spacings(np.asarray(codes, dtype=np.float64))[:, None]).T


@dataclass(frozen=True)
class Compass:
    code: np.ndarray  # (D,)
    step: float
    factor_names: tuple[str, ...]
    value: np.ndarray  # (K,) at the code, in compass units
    gradient: np.ndarray | None  # (K, D) d(unit) / d(code axis); None when a stencil image is not a heatmap
    verdict: Verdict  # of the 2D + 1 stencil images

    @property
    def units(self) -> list[str]:
        return [unit_name(name) for name in self.factor_names]

    @property
    def status(self) -> str:
        """ok: every stencil image valid; range: all heatmaps, some with factors outside the data's box;
        shape: some decode is not a heatmap of the family, so there is no gradient to show."""
        if not np.all(self.verdict.shape_ok):
            return "shape"
        return "ok" if np.all(self.verdict.in_range) else "range"

    def message(self) -> str:
        n_bad = int(np.sum(~self.verdict.shape_ok))
        centre = "the decode itself" if not self.verdict.shape_ok[0] else "its finite-difference neighbours"
        if self.status == "shape":
            are = "is" if n_bad == 1 else "are"
            return (f"no compass here: {n_bad} of the {len(self.verdict)} decodes ({centre} among them) {are} not "
                    "heatmaps of the family, so the recovered factors have no meaningful gradient")
        if self.status == "range":
            return ("the decodes are heatmaps but some recovered factors lie outside the data's range: the "
                    "gradient is exact for those heatmaps, the model is extrapolating")
        return "every decode is a valid heatmap"


def compass_from(code: np.ndarray, step: float, verdict: Verdict, codes: np.ndarray | None = None) -> Compass:
    """The compass from the oracle's verdict on the decodes of the stencil ``codes`` (default
    ``stencil(code, step)``; pass the codes that were decoded, so the differences divide by their spacings)."""
    values = in_units(verdict.factor_names, verdict.factors)  # (2D + 1, K)
    codes = stencil(code, step) if codes is None else codes
    gradient = central_gradient(values, codes) if np.all(verdict.shape_ok) else None
    return Compass(code=np.asarray(code, dtype=np.float64), step=float(step), factor_names=verdict.factor_names,
                   value=values[0], gradient=gradient, verdict=verdict)
