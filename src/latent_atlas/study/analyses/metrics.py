"""Disentanglement scores right for continuous factors, and the FactorVAE score by intervention."""

from __future__ import annotations

import numpy as np

from ...analysis.disentanglement import continuous_metrics, interventional_factorvae, uniform_box_sampler
from ...data.heatmaps import render_from_factors
from ...models import UNCONDITIONAL_KINDS
from ...models.inference import encode
from ..registry import AnalysisOutput, RunInputs, analysis
from ..runs import BETAS, CORE

COVARIANCE = ("var_x", "var_y", "rho")


@analysis("disentanglement", models=UNCONDITIONAL_KINDS, groups=(CORE, BETAS), factorvae_votes=300, factorvae_batch=32,
          quick={"factorvae_votes": 100})
def disentanglement(inputs: RunInputs) -> AnalysisOutput:
    """Quantile MIG, DCI (Lasso, extra trees), explicitness on the covariance factors, and the FactorVAE score
    with batches rendered by the generator with one factor held fixed (uniform over the data's range)."""
    latents, dataset, config = inputs.latents, inputs.dataset, inputs.dataset.config
    factors = latents.factors[:, :3]
    seed = int(inputs.rng.integers(2**31))
    results = continuous_metrics(latents.codes, factors, COVARIANCE, dataset.train_idx, dataset.test_idx, seed)
    if config.kind != "gaussian":
        results["factorvae"] = {"skipped": "the interventional batches render Gaussian heatmaps"}
        return AnalysisOutput(results)
    low = np.array([config.var_x.low, config.var_y.low, config.rho.low])
    high = np.array([config.var_x.high, config.var_y.high, config.rho.high])
    model = inputs.model
    results["factorvae"] = interventional_factorvae(
        uniform_box_sampler(low, high),
        lambda f: render_from_factors(f, COVARIANCE, dataset.axis),
        lambda images: encode(model, images)[0],
        latents.codes.std(axis=0), inputs.rng, n_votes=inputs.params["factorvae_votes"],
        batch_size=inputs.params["factorvae_batch"], factor_names=COVARIANCE)
    return AnalysisOutput(results)
