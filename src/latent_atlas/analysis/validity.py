"""When is a decoded image a valid heatmap? The oracle's threshold, calibrated on held-out reconstructions.

Real images have residual ~1e-7, so they cannot calibrate the threshold. What a trained model makes of a
real heatmap it never trained on is what a good decode looks like: each run's reconstructions of its
validation images (held out of training for early stopping, and not part of the test split) are pooled,
and the threshold is their 99th percentile residual. The study pools every model trained on a dataset, so
all of them are judged by one yardstick; the explorer, without a study's ``oracle.json``, uses its runs'.
"""

from __future__ import annotations

import numpy as np

from ..data import HeatmapDataset
from ..models import Autoencoder
from ..models.inference import reconstruct
from ..oracle import HeatmapOracle
from ..training.run import Run

QUANTILE = 0.99


def calibration_reconstructions(run: Run, model: Autoencoder, dataset: HeatmapDataset, limit: int | None = None,
                                seed: int = 0) -> np.ndarray:
    """The run's reconstructions of its validation images (a seeded random ``limit`` of them if given): (M, H, W)."""
    index = run.validation_indices(dataset)
    if limit is not None and len(index) > limit:
        index = np.sort(np.random.default_rng(seed).choice(index, size=limit, replace=False))
    return reconstruct(model, dataset.images[index])


def calibrate_oracle(dataset: HeatmapDataset, reconstructions: list[np.ndarray], quantile: float = QUANTILE) -> HeatmapOracle:
    """An oracle for the dataset's family whose threshold is the ``quantile`` residual of the pooled reconstructions."""
    return HeatmapOracle.for_dataset(dataset, quantile=quantile).fit(np.concatenate(reconstructions))
