"""Batched encode / decode between NumPy arrays and a model, with no gradients."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import AtlasError
from .autoencoder import Autoencoder

BATCH = 1024


def _device(model: Autoencoder) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def encode(model: Autoencoder, images: np.ndarray, batch_size: int = BATCH) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, H, W) images -> posterior means (N, D) and, for the VAE, log-variances (N, D)."""
    model.eval()
    means, logvars = [], []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32))
        posterior = model.encode(batch.unsqueeze(1).to(_device(model)))  # (B, 1, H, W) -> (B, D)
        means.append(posterior.mean.cpu().numpy())
        if posterior.logvar is not None:
            logvars.append(posterior.logvar.cpu().numpy())
    empty = np.zeros((0, model.latent_dim), dtype=np.float32)
    mean = np.concatenate(means) if means else empty
    logvar = (np.concatenate(logvars) if logvars else empty) if model.kind == "vae" else None
    return mean, logvar


@torch.inference_mode()
def decode(model: Autoencoder, codes: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """(N, D) codes -> (N, H, W) float32 mean images in (0, 1)."""
    model.eval()
    codes = np.asarray(codes, dtype=np.float32)
    if codes.ndim != 2 or codes.shape[1] != model.latent_dim:
        raise AtlasError(f"codes must have shape (N, {model.latent_dim}) for this model, got {codes.shape}")
    out = [
        model.decode_images(torch.from_numpy(codes[start : start + batch_size]).to(_device(model))).cpu().numpy()
        for start in range(0, len(codes), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, *model.config.image_shape), dtype=np.float32)


def reconstruct(model: Autoencoder, images: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """Decode each image's posterior mean: (N, H, W) -> (N, H, W)."""
    return decode(model, encode(model, images, batch_size)[0], batch_size)


@torch.no_grad()
def mean_loss(model: Autoencoder, images: torch.Tensor, seed: int, batch_size: int = BATCH) -> dict[str, float]:
    """Mean loss parts per image over (N, 1, H, W) images, one posterior sample each from a fixed seed.

    The same seed gives the same noise on every call (common random numbers across epochs). Returns
    ``loss`` (the beta-weighted objective), ``reconstruction`` and ``kl``.
    """
    model.eval()
    generator = torch.Generator(device=images.device).manual_seed(seed)
    sums = {"loss": 0.0, "reconstruction": 0.0, "kl": 0.0}
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]  # (B, 1, H, W)
        parts = model.loss(batch, sample=True, generator=generator)
        sums["loss"] += parts.total.item() * len(batch)
        sums["reconstruction"] += parts.reconstruction.item() * len(batch)
        sums["kl"] += parts.kl.item() * len(batch)
    return {key: value / len(images) for key, value in sums.items()}
