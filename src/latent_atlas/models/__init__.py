"""Model registry: the config's ``kind`` names the class; checkpoints are safetensors plus JSON."""

from __future__ import annotations

from ..config import ModelConfig
from .autoencoder import (
    Autoencoder,
    ConditionalVAE,
    ForwardOutput,
    LossParts,
    Posterior,
    VariationalAutoencoder,
)

MODEL_KINDS: dict[str, type[Autoencoder]] = {
    cls.kind: cls for cls in (Autoencoder, VariationalAutoencoder, ConditionalVAE)
}
# The kinds that take images (and codes) alone: what every technique without a condition applies to.
UNCONDITIONAL_KINDS = tuple(kind for kind, cls in MODEL_KINDS.items() if not cls.conditional)


def build_model(config: ModelConfig) -> Autoencoder:
    return MODEL_KINDS[config.kind](config)


__all__ = [
    "MODEL_KINDS",
    "UNCONDITIONAL_KINDS",
    "Autoencoder",
    "ConditionalVAE",
    "ForwardOutput",
    "LossParts",
    "Posterior",
    "VariationalAutoencoder",
    "build_model",
]
