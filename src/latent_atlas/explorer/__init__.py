"""The interactive explorer: a local web app to click anywhere in a run's latent space and see it decoded."""

from .app import create_app, serve

__all__ = ["create_app", "serve"]
