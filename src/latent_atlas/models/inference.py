"""Batched encode / decode between NumPy arrays and a model, with no gradients."""

from __future__ import annotations

import numpy as np
import torch

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
    codes = np.asarray(codes, dtype=np.float32).reshape(-1, model.latent_dim)
    out = [
        model.decode_images(torch.from_numpy(codes[start : start + batch_size]).to(_device(model))).cpu().numpy()
        for start in range(0, len(codes), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, *model.config.image_shape), dtype=np.float32)


def reconstruct(model: Autoencoder, images: np.ndarray, batch_size: int = BATCH) -> np.ndarray:
    """Decode each image's posterior mean: (N, H, W) -> (N, H, W)."""
    return decode(model, encode(model, images, batch_size)[0], batch_size)
