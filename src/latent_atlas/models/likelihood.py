"""Reconstruction terms: negative log-likelihood of images under the decoder's output, summed over pixels.

Both likelihoods read the decoder's output as logits and map them to mean images in (0, 1), since
heatmaps are max-normalised into [0, 1].
- bernoulli: binary cross-entropy on the logits (continuous targets in [0, 1]).
- gaussian: 0.5 * squared error to sigmoid(logits), i.e. a unit-variance Gaussian without its constant,
  so beta stays the only weight in the loss.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

LIKELIHOODS = ("bernoulli", "gaussian")


def mean_image(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits)


def reconstruction_nll(logits: torch.Tensor, images: torch.Tensor, likelihood: str) -> torch.Tensor:
    """(B, 1, H, W) logits and images -> (B,) negative log-likelihood, summed over pixels."""
    if likelihood == "bernoulli":
        per_pixel = F.binary_cross_entropy_with_logits(logits, images, reduction="none")
    elif likelihood == "gaussian":
        per_pixel = 0.5 * (torch.sigmoid(logits) - images) ** 2
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {', '.join(LIKELIHOODS)}")
    return per_pixel.flatten(1).sum(dim=1)
