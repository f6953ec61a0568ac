"""Analyses of a trained run's latent space: pure functions on arrays, plus small fitted objects."""
