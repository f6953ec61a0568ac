"""AE and VAE: one architecture, one forward pass, one loss; the VAE adds only sampling and the KL term, and
the conditional VAE (CVAE) only a condition (B, C) joined to the encoder's features and to the decoder's codes.

Loss per batch (every kind):  mean_b [ sum_pixels NLL(x_b | decoder(z_b)) ] + beta * mean_b [ sum_units KL_b ]
with KL = 0 for the plain autoencoder, so beta is the only weight.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import AtlasError
from .conditioning import condition_dim
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
    variational = False  # a posterior variance, sampling and a KL term
    conditional = False  # takes a condition (B, C) beside its images and codes

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.image_shape is None:
            raise ValueError("model config needs image_shape; bind it with config.for_images((H, W))")
        self.config = config
        self.condition_dim = condition_dim(config.condition) if self.conditional else 0
        self.encoder = ConvEncoder(config)
        self.to_posterior = nn.Linear(self.encoder.out_features + self.condition_dim,
                                      self.params_per_unit * config.latent_dim)
        self.decoder = ConvDecoder(config, condition_dim=self.condition_dim)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def with_conditions(self, inputs: torch.Tensor, conditions: torch.Tensor | None) -> torch.Tensor:
        """(B, F) inputs -> (B, F + C) with the conditions (B, C) appended; unchanged for an unconditional model."""
        if not self.conditional:
            if conditions is not None:
                raise AtlasError(f"the {self.kind} takes no conditions; only the cvae does")
            return inputs
        if conditions is None:
            raise AtlasError(f"the {self.kind} needs the conditions ({self.config.condition}) of its images or "
                             "codes; this code path gives none")
        if conditions.shape != (inputs.shape[0], self.condition_dim):
            raise AtlasError(f"conditions must have shape ({inputs.shape[0]}, {self.condition_dim}) for this "
                             f"{self.config.condition} condition, got {tuple(conditions.shape)}")
        return torch.cat([inputs, conditions.to(inputs.dtype)], dim=1)  # (B, F + C)

    def posterior_parameters(self, images: torch.Tensor, conditions: torch.Tensor | None) -> torch.Tensor:
        """(B, 1, H, W) images and (B, C) conditions -> (B, params_per_unit * D), float32 also under autocast, so
        that sampling and the KL term run in full precision."""
        return self.to_posterior(self.with_conditions(self.encoder(images), conditions)).float()

    def encode(self, images: torch.Tensor, conditions: torch.Tensor | None = None) -> Posterior:
        """(B, 1, H, W) -> posterior parameters (B, D)."""
        return Posterior(mean=self.posterior_parameters(images, conditions), logvar=None)

    def sample_codes(self, posterior: Posterior, generator: torch.Generator | None) -> torch.Tensor:
        return posterior.mean

    def kl_divergence(self, posterior: Posterior) -> torch.Tensor:
        """(B,) KL(q(z|x) || N(0, I)) summed over latent units; zero for the deterministic AE."""
        return posterior.mean.new_zeros(posterior.mean.shape[0])

    def decode(self, codes: torch.Tensor, conditions: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) codes [and (B, C) conditions] -> (B, 1, H, W) logits."""
        return self.decoder(self.with_conditions(codes, conditions))

    def decode_images(self, codes: torch.Tensor, conditions: torch.Tensor | None = None) -> torch.Tensor:
        """(B, D) codes [and (B, C) conditions] -> (B, H, W) mean images in (0, 1)."""
        return mean_image(self.decode(codes, conditions))[:, 0]

    def forward(self, images: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None,
                conditions: torch.Tensor | None = None) -> ForwardOutput:
        posterior = self.encode(images, conditions)
        codes = self.sample_codes(posterior, generator) if sample else posterior.mean
        return ForwardOutput(logits=self.decode(codes, conditions), posterior=posterior, codes=codes)

    def loss(self, images: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None,
             conditions: torch.Tensor | None = None) -> LossParts:
        """The training objective on a batch of (B, 1, H, W) images (the negative ELBO for the VAE with beta 1);
        the cvae also takes the images' (B, C) conditions."""
        out = self(images, sample=sample, generator=generator, conditions=conditions)
        reconstruction = reconstruction_nll(out.logits.float(), images, self.config.likelihood).mean()  # float32
        kl = self.kl_divergence(out.posterior).mean()
        return LossParts(total=reconstruction + self.config.beta * kl, reconstruction=reconstruction, kl=kl)


class VariationalAutoencoder(Autoencoder):
    """Gaussian q(z|x) = N(mean, diag(exp(logvar))), standard normal prior, reparameterised sampling."""

    kind = "vae"
    params_per_unit = 2
    variational = True

    def encode(self, images: torch.Tensor, conditions: torch.Tensor | None = None) -> Posterior:
        mean, logvar = self.posterior_parameters(images, conditions).chunk(2, dim=1)  # (B, D) each
        return Posterior(mean=mean, logvar=logvar)

    def sample_codes(self, posterior: Posterior, generator: torch.Generator | None) -> torch.Tensor:
        noise = torch.randn(posterior.mean.shape, generator=generator, device=posterior.mean.device)  # (B, D)
        return posterior.mean + torch.exp(0.5 * posterior.logvar) * noise

    def kl_divergence(self, posterior: Posterior) -> torch.Tensor:
        mean, logvar = posterior.mean, posterior.logvar
        return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


class ConditionalVAE(VariationalAutoencoder):
    """The VAE with q(z | x, c) and p(x | z, c): the encoded condition c (B, C) (``models.conditioning``: df one-hot,
    a continuous factor scaled to [-1, 1]) is appended to the encoder's features and to the decoder's codes.
    The prior stays N(0, I), so z ~ N(0, I) decoded with a chosen c generates images of that condition."""

    kind = "cvae"
    conditional = True
