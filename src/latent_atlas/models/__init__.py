"""Model registry: the config's ``kind`` names the class; checkpoints are safetensors plus JSON."""

from __future__ import annotations

from ..config import ModelConfig
from .autoencoder import (
    Autoencoder,
    ForwardOutput,
    LossParts,
    Posterior,
    VariationalAutoencoder,
)

MODEL_KINDS: dict[str, type[Autoencoder]] = {cls.kind: cls for cls in (Autoencoder, VariationalAutoencoder)}


def build_model(config: ModelConfig) -> Autoencoder:
    return MODEL_KINDS[config.kind](config)


__all__ = [
    "MODEL_KINDS",
    "Autoencoder",
    "ForwardOutput",
    "LossParts",
    "Posterior",
    "VariationalAutoencoder",
    "build_model",
]
