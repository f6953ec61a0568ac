"""Batched encode / decode between NumPy arrays and a model, with no gradients.

Every function takes the images' or codes' encoded conditions (N, C) (``models.conditioning``) for the cvae;
the AE and VAE take none.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import AtlasError
from .autoencoder import Autoencoder

# Inference batches: with channels_last weights (models.layout) the CPU encodes batches of 256 about 2x and decodes
# them 1.2-1.35x faster than batches of 1,024, which outgrow the caches (benchmarks/training_throughput.py).
BATCH = 256


def _device(model: Autoencoder) -> torch.device:
    return next(model.parameters()).device


def _evaluation_mode(model: Autoencoder) -> None:
    """Put the model in evaluation mode unless it is already (``eval()`` walks every module: about 0.5 ms, which
    is a tenth of the explorer's single-code decode)."""
    if model.training:
        model.eval()


def _condition_batches(model: Autoencoder, conditions: np.ndarray | None, n: int, batch_size: int) -> list:
    """The (B, C) condition tensors for each batch of ``n`` rows, or None for each batch without conditions."""
    if conditions is None:
        return [None] * len(range(0, n, batch_size))
    conditions = np.asarray(conditions, dtype=np.float32)
    if conditions.ndim != 2 or len(conditions) != n:
        raise AtlasError(f"conditions must have shape ({n}, C), one row per image or code, got {conditions.shape}")
    return [torch.from_numpy(conditions[start : start + batch_size]).to(_device(model))
            for start in range(0, n, batch_size)]


@torch.inference_mode()
def encode(model: Autoencoder, images: np.ndarray, batch_size: int = BATCH, *, conditions: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, H, W) images [and (N, C) conditions] -> posterior means (N, D) and, for a VAE, log-variances (N, D)."""
    _evaluation_mode(model)
    means, logvars = [], []
    batches = _condition_batches(model, conditions, len(images), batch_size)
    for start, condition in zip(range(0, len(images), batch_size), batches):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32))
        posterior = model.encode(batch.unsqueeze(1).to(_device(model)), condition)  # (B, 1, H, W) -> (B, D)
        means.append(posterior.mean.cpu().numpy())
        if posterior.logvar is not None:
            logvars.append(posterior.logvar.cpu().numpy())
    empty = np.zeros((0, model.latent_dim), dtype=np.float32)
    mean = np.concatenate(means) if means else empty
    logvar = (np.concatenate(logvars) if logvars else empty) if model.variational else None
    return mean, logvar


@torch.inference_mode()
def decode(model: Autoencoder, codes: np.ndarray, batch_size: int = BATCH, *, conditions: np.ndarray | None = None
           ) -> np.ndarray:
    """(N, D) codes [and (N, C) conditions] -> (N, H, W) float32 mean images in (0, 1)."""
    _evaluation_mode(model)
    codes = np.asarray(codes, dtype=np.float32)
    if codes.ndim != 2 or codes.shape[1] != model.latent_dim:
        raise AtlasError(f"codes must have shape (N, {model.latent_dim}) for this model, got {codes.shape}")
    batches = _condition_batches(model, conditions, len(codes), batch_size)
    out = [
        model.decode_images(torch.from_numpy(codes[start : start + batch_size]).to(_device(model)), condition)
        .cpu().numpy()
        for start, condition in zip(range(0, len(codes), batch_size), batches)
    ]
    return np.concatenate(out) if out else np.zeros((0, *model.config.image_shape), dtype=np.float32)


def reconstruct(model: Autoencoder, images: np.ndarray, batch_size: int = BATCH, *,
                conditions: np.ndarray | None = None) -> np.ndarray:
    """Decode each image's posterior mean (with the image's own condition, for the cvae): (N, H, W) -> (N, H, W)."""
    codes = encode(model, images, batch_size, conditions=conditions)[0]
    return decode(model, codes, batch_size, conditions=conditions)


@torch.no_grad()
def mean_loss(model: Autoencoder, images: torch.Tensor, seed: int, batch_size: int = BATCH, *,
              conditions: torch.Tensor | None = None) -> dict[str, float]:
    """Mean loss parts per image over (N, 1, H, W) images [and their (N, C) conditions], one posterior sample each
    from a fixed seed.

    The same seed gives the same noise on every call (common random numbers across epochs). Returns
    ``loss`` (the beta-weighted objective), ``reconstruction`` and ``kl``.
    """
    _evaluation_mode(model)
    generator = torch.Generator(device=images.device).manual_seed(seed)
    sums = {"loss": 0.0, "reconstruction": 0.0, "kl": 0.0}
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]  # (B, 1, H, W)
        condition = None if conditions is None else conditions[start : start + batch_size]  # (B, C)
        parts = model.loss(batch, sample=True, generator=generator, conditions=condition)
        sums["loss"] += parts.total.item() * len(batch)
        sums["reconstruction"] += parts.reconstruction.item() * len(batch)
        sums["kl"] += parts.kl.item() * len(batch)
    return {key: value / len(images) for key, value in sums.items()}
