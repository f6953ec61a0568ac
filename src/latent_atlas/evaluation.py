"""Test-set evaluation of a run: per-image Frobenius reconstruction error and, for the VAE, the ELBO's parts."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .data import HeatmapDataset
from .io import read_json, write_json, write_npz
from .models import Autoencoder
from .models.inference import reconstruct
from .training.run import EVALUATION_FILE, METRICS_FILE, Run

ELBO_SEED = 12345
ELBO_BATCH = 1024


def frobenius_errors(images: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """(N, H, W) pairs -> (N,) Frobenius norms ||x - x_hat||_F."""
    difference = images.astype(np.float64) - reconstructions.astype(np.float64)
    return np.sqrt((difference**2).sum(axis=(1, 2)))


def summarize(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(values.mean()),
        "median": float(np.median(values)),
        "p90": float(np.percentile(values, 90)),
        "p99": float(np.percentile(values, 99)),
        "max": float(values.max()),
    }


@torch.no_grad()
def loss_parts(model: Autoencoder, images: np.ndarray, seed: int = ELBO_SEED) -> dict[str, float]:
    """Mean reconstruction NLL and KL per image, one posterior sample each from a fixed seed.

    With beta 1 their sum is the negative ELBO; ``loss`` is the beta-weighted training objective.
    """
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    reconstruction = kl = 0.0
    for start in range(0, len(images), ELBO_BATCH):
        batch = torch.from_numpy(images[start : start + ELBO_BATCH]).unsqueeze(1).to(device)  # (B, 1, H, W)
        parts = model.loss(batch, sample=True, generator=generator)
        reconstruction += parts.reconstruction.item() * len(batch)
        kl += parts.kl.item() * len(batch)
    reconstruction, kl = reconstruction / len(images), kl / len(images)
    return {
        "reconstruction_nll": reconstruction,
        "kl": kl,
        "elbo": -(reconstruction + kl),
        "loss": reconstruction + model.config.beta * kl,
    }


def evaluate_run(run: Run, dataset: HeatmapDataset | None = None, device: str = "cpu") -> dict[str, Any]:
    """Evaluate on the test split; merges results into metrics.json and saves per-image errors."""
    model = run.load_model(device)
    dataset = dataset if dataset is not None else run.load_dataset()
    test_images = dataset.images[dataset.test_idx]
    errors = frobenius_errors(test_images, reconstruct(model, test_images))
    results: dict[str, Any] = {"n_test_images": int(len(test_images)), "test_frobenius": summarize(errors)}
    parts = loss_parts(model, test_images)
    if model.kind == "vae":
        results["test_elbo"] = parts
    else:
        results["test_reconstruction_nll"] = parts["reconstruction_nll"]
    write_npz(run.path / EVALUATION_FILE, {"test_idx": dataset.test_idx, "frobenius": errors})
    metrics_path = run.path / METRICS_FILE
    metrics = read_json(metrics_path, what="metrics") if metrics_path.exists() else {}
    metrics.update(results)
    write_json(metrics_path, metrics)
    return results
