"""latent-atlas: map what an autoencoder's latent space has learned."""

__version__ = "0.1.0"
