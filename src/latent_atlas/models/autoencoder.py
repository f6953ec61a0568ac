"""AE and VAE: one architecture, one forward pass, one loss; the VAE adds only sampling and the KL term.

Loss per batch (both kinds):  mean_b [ sum_pixels NLL(x_b | decoder(z_b)) ] + beta * mean_b [ sum_units KL_b ]
with KL = 0 for the plain autoencoder, so beta is the only weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from .likelihood import mean_image, reconstruction_nll
from .networks import ConvDecoder, ConvEncoder


@dataclass
class Posterior:
    mean: torch.Tensor  # (B, D)
    logvar: torch.Tensor | None  # (B, D) for the VAE, None for the deterministic AE


@dataclass
class ForwardOutput:
    logits: torch.Tensor  # (B, 1, H, W)
    posterior: Posterior
    codes: torch.Tensor  # (B, D), the z fed to the decoder


@dataclass
class LossParts:
    total: torch.Tensor  # scalar: reconstruction + beta * kl
    reconstruction: torch.Tensor  # scalar, mean over the batch of per-image sums
    kl: torch.Tensor  # scalar, mean over the batch of per-image sums


class Autoencoder(nn.Module):
    """Deterministic autoencoder: the code is the encoder's output."""

    kind = "ae"
    params_per_unit = 1  # encoder outputs per latent unit

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.image_shape is None:
            raise ValueError("model config needs image_shape; bind it with config.for_images((H, W))")
        self.config = config
        self.encoder = ConvEncoder(config)
        self.to_posterior = nn.Linear(self.encoder.out_features, self.params_per_unit * config.latent_dim)
        self.decoder = ConvDecoder(config)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encode(self, images: torch.Tensor) -> Posterior:
        """(B, 1, H, W) -> posterior parameters (B, D)."""
        return Posterior(mean=self.to_posterior(self.encoder(images)), logvar=None)

    def sample_codes(self, posterior: Posterior, generator: torch.Generator | None) -> torch.Tensor:
        return posterior.mean

    def kl_divergence(self, posterior: Posterior) -> torch.Tensor:
        """(B,) KL(q(z|x) || N(0, I)) summed over latent units; zero for the deterministic AE."""
        return posterior.mean.new_zeros(posterior.mean.shape[0])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, D) codes -> (B, 1, H, W) logits."""
        return self.decoder(codes)

    def decode_images(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, D) codes -> (B, H, W) mean images in (0, 1)."""
        return mean_image(self.decode(codes))[:, 0]

    def forward(self, images: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> ForwardOutput:
        posterior = self.encode(images)
        codes = self.sample_codes(posterior, generator) if sample else posterior.mean
        return ForwardOutput(logits=self.decode(codes), posterior=posterior, codes=codes)

    def loss(self, images: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None) -> LossParts:
        """The training objective on a batch of (B, 1, H, W) images (the negative ELBO for the VAE with beta 1)."""
        out = self(images, sample=sample, generator=generator)
        reconstruction = reconstruction_nll(out.logits, images, self.config.likelihood).mean()
        kl = self.kl_divergence(out.posterior).mean()
        return LossParts(total=reconstruction + self.config.beta * kl, reconstruction=reconstruction, kl=kl)


class VariationalAutoencoder(Autoencoder):
    """Gaussian q(z|x) = N(mean, diag(exp(logvar))), standard normal prior, reparameterised sampling."""

    kind = "vae"
    params_per_unit = 2

    def encode(self, images: torch.Tensor) -> Posterior:
        mean, logvar = self.to_posterior(self.encoder(images)).chunk(2, dim=1)  # (B, D) each
        return Posterior(mean=mean, logvar=logvar)

    def sample_codes(self, posterior: Posterior, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(posterior.mean.shape, generator=generator, device=posterior.mean.device)  # (B, D)
        return posterior.mean + torch.exp(0.5 * posterior.logvar) * noise

    def kl_divergence(self, posterior: Posterior) -> torch.Tensor:
        mean, logvar = posterior.mean, posterior.logvar
        return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)
