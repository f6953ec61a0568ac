"""Test-set evaluation of a run: per-image Frobenius reconstruction error and, for a VAE, the ELBO's parts (the
cvae's with each image's own condition)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .data import HeatmapDataset
from .io import read_json, write_json, write_npz
from .models import Autoencoder
from .models.conditioning import dataset_conditions
from .models.inference import mean_loss, reconstruct
from .training.run import EVALUATION_FILE, METRICS_FILE, Run

ELBO_SEED = 12345


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


def elbo_parts(model: Autoencoder, images: np.ndarray, seed: int = ELBO_SEED, conditions: np.ndarray | None = None
               ) -> dict[str, float]:
    """Mean reconstruction NLL and KL per image [given its (N, C) condition], one posterior sample each from a
    fixed seed.

    With beta 1 their sum is the negative ELBO; ``loss`` is the beta-weighted training objective.
    """
    device = next(model.parameters()).device
    condition_tensor = None if conditions is None else torch.from_numpy(conditions).to(device)  # (N, C)
    parts = mean_loss(model, torch.from_numpy(images).unsqueeze(1).to(device), seed,  # (N, 1, H, W)
                      conditions=condition_tensor)
    return {
        "reconstruction_nll": parts["reconstruction"],
        "kl": parts["kl"],
        "elbo": -(parts["reconstruction"] + parts["kl"]),
        "loss": parts["loss"],
    }


@dataclass
class Evaluation:
    results: dict[str, Any]  # what metrics.json gains
    errors: np.ndarray  # (N_test,) Frobenius errors
    reconstructions: np.ndarray  # (N_test, H, W) decoded from the posterior means


def evaluate(model: Autoencoder, dataset: HeatmapDataset) -> Evaluation:
    """Reconstruction error on the test split and, for a VAE, the ELBO's parts."""
    test_images = dataset.images[dataset.test_idx]
    conditions = dataset_conditions(model.config, dataset, dataset.test_idx)  # (N_test, C) or None
    reconstructions = reconstruct(model, test_images, conditions=conditions)
    errors = frobenius_errors(test_images, reconstructions)
    results: dict[str, Any] = {"n_test_images": int(len(test_images)), "test_frobenius": summarize(errors)}
    parts = elbo_parts(model, test_images, conditions=conditions)
    if model.variational:
        results["test_elbo"] = parts
    else:
        results["test_reconstruction_nll"] = parts["reconstruction_nll"]
    return Evaluation(results=results, errors=errors, reconstructions=reconstructions)


def evaluate_run(run: Run, dataset: HeatmapDataset | None = None, device: str = "cpu",
                 model: Autoencoder | None = None) -> Evaluation:
    """Evaluate a run on its test split; merges the results into metrics.json and saves per-image errors."""
    model = model if model is not None else run.load_model(device)
    dataset = dataset if dataset is not None else run.load_dataset()
    evaluation = evaluate(model, dataset)
    provenance = run.provenance()
    write_npz(run.path / EVALUATION_FILE, {"test_idx": dataset.test_idx, "frobenius": evaluation.errors,
                                           "metadata": np.asarray(json.dumps(provenance, sort_keys=True))})
    metrics_path = run.path / METRICS_FILE
    metrics = read_json(metrics_path, what="metrics") if metrics_path.exists() else {}
    metrics.update(evaluation.results, provenance=provenance)
    write_json(metrics_path, metrics)
    return evaluation
