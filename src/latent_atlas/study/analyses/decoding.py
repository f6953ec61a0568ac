"""Decode latent points and read them back with the oracle: the step every latent-space analysis shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...models import Autoencoder
from ...models.inference import decode
from ...oracle import HeatmapOracle
from ...verdicts import Verdict

VERDICT_KEYS = ("factors", "shape_residual", "shape_ok", "in_range", "valid", "novelty", "nearest_index")


@dataclass(frozen=True)
class Decoded:
    points: np.ndarray  # (M, D)
    images: np.ndarray  # (M, H, W)
    verdict: Verdict

    def arrays(self, prefix: str, images: bool = True) -> dict[str, np.ndarray]:
        """Arrays for the analysis's .npz: points, images (float16 to keep the files small) and the verdict."""
        full = self.verdict.to_arrays()
        out = {f"{prefix}/points": self.points.astype(np.float32),
               **{f"{prefix}/{key}": full[key] for key in VERDICT_KEYS}}
        if images:
            out[f"{prefix}/images"] = self.images.astype(np.float16)
        return out


def decode_and_judge(model: Autoencoder, oracle: HeatmapOracle, points: np.ndarray, novelty: bool = False) -> Decoded:
    """(M, D) latent points -> the decoded images and the oracle's verdict on them (novelty only if asked:
    the nearest-training-image search is the costly part)."""
    points = np.asarray(points, dtype=np.float64)
    images = decode(model, points)
    return Decoded(points, images, oracle.verdict(images, novelty=novelty))
