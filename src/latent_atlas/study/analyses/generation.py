"""Generation, scored against ground truth: does a sampler's decoded image look like the data?

Each sampler (the prior for the VAE; a Gaussian and a Gaussian mixture fitted to the model's OWN training
codes, for both models; the two-stage VAE in the latent-dimension study) draws points that are decoded and
judged by the oracle (shape, range, novelty). The factors the oracle recovers from the samples (those of the
nearest heatmap, valid or not) are compared with the data's factor distribution (factor-space fidelity, the
exact analogue of FID; the valid fraction says how many samples are heatmaps of the data at all). For
the VAE, diagnostics of the prior holes: active units, KL per unit, KL between aggregate posterior and
prior both ways, a classifier two-sample test, and the norms against the prior's chi distribution.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from ...analysis.fidelity import FactorFidelity
from ...analysis.generation import (
    active_units,
    aggregate_kl,
    aggregate_posterior_draws,
    classifier_two_sample_test,
    kl_per_unit,
    norm_profile,
)
from ...analysis.samplers import make_sampler
from ...data import HeatmapDataset
from ...models import UNCONDITIONAL_KINDS
from ..registry import AnalysisOutput, RunInputs, analysis
from ..runs import BETAS, CORE, DIMENSIONS
from .decoding import decode_and_judge

FIDELITY_SIZE = 300  # samples whose recovered factors are compared with the data's: one size, so one null serves all
CORE_SAMPLERS = {"vae": ("prior", "gaussian", "mixture"), "ae": ("gaussian", "mixture")}
SAMPLER_SETTINGS = {"mixture": {"components": (1, 8)}, "two_stage": {"epochs": 20}}


@lru_cache(maxsize=2)
def _fidelity(dataset_hash: str, factors_bytes: bytes, shape: tuple[int, int], names: tuple[str, ...]) -> FactorFidelity:
    factors = np.frombuffer(factors_bytes, dtype=np.float64).reshape(shape)
    return FactorFidelity(names).fit(factors, FIDELITY_SIZE, np.random.default_rng(0))


def fidelity_for(dataset: HeatmapDataset) -> FactorFidelity:
    """The data-vs-data null for samples of FIDELITY_SIZE, fitted once per dataset and worker process."""
    factors = np.ascontiguousarray(dataset.factors[dataset.train_idx], dtype=np.float64)
    return _fidelity(dataset.content_hash, factors.tobytes(), factors.shape, dataset.factor_names)


def score_sampler(inputs: RunInputs, name: str, codes: np.ndarray, logvar: np.ndarray | None,
                  n_samples: int, n_novelty: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    seed = int(inputs.rng.integers(2**31))
    sampler = make_sampler(name, seed=seed, **SAMPLER_SETTINGS.get(name, {})).fit(codes, logvar)
    points = sampler.sample(n_samples, inputs.rng)
    decoded = decode_and_judge(inputs.model, inputs.oracle, points)
    verdict = decoded.verdict
    novelty = inputs.oracle.verdict(decoded.images[:n_novelty]).novelty
    result: dict[str, Any] = {"verdict": verdict.summary() | {"box": None},
                              "novelty": {"n": int(n_novelty), "median": float(np.median(novelty)),
                                          "p05": float(np.percentile(novelty, 5))}}
    if hasattr(sampler, "n_components_"):
        result["n_components"] = int(sampler.n_components_)
    fidelity = fidelity_for(inputs.dataset).score(verdict.factors[:FIDELITY_SIZE], inputs.rng)
    result["fidelity"] = fidelity.to_dict()
    arrays = {f"{name}/{key}": value for key, value in decoded.arrays("s", images=False).items()}
    arrays[f"{name}/images"] = decoded.images[:12].astype(np.float16)
    return result, arrays


def prior_diagnostics(mean: np.ndarray, logvar: np.ndarray, rng: np.random.Generator, n_draws: int) -> dict[str, Any]:
    dim = mean.shape[1]
    prior = rng.standard_normal((n_draws, dim))
    aggregate = aggregate_posterior_draws(mean, logvar, n_draws, rng)
    return {
        "kl_per_unit": kl_per_unit(mean, logvar).tolist(),
        "aggregate_kl": aggregate_kl(mean, logvar, rng=rng).to_dict(),
        "two_sample": classifier_two_sample_test(prior, aggregate, rng).to_dict(),
        "norms": norm_profile(prior, aggregate, mean, dim),
    }


@analysis("generation", models=UNCONDITIONAL_KINDS, groups=(CORE, DIMENSIONS, BETAS), version=1, group_aware=True,
          n_samples=600, n_novelty=100, n_draws=2000, quick={"n_samples": FIDELITY_SIZE, "n_novelty": 50, "n_draws": 500})
def generation(inputs: RunInputs) -> AnalysisOutput:
    latents, dataset = inputs.latents, inputs.dataset
    train = dataset.train_idx
    codes = latents.codes[train].astype(np.float64)
    logvar = None if latents.logvar is None else latents.logvar[train].astype(np.float64)
    results: dict[str, Any] = {"active_units": active_units(latents.codes).to_dict(), "samplers": {}}
    if logvar is not None:
        results["prior_holes"] = prior_diagnostics(codes, logvar, inputs.rng, inputs.params["n_draws"])
    names = CORE_SAMPLERS[inputs.kind] + (("two_stage",) if DIMENSIONS in inputs.params.get("groups", ()) else ())
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        results["samplers"][name], sampler_arrays = score_sampler(
            inputs, name, codes, logvar, inputs.params["n_samples"], inputs.params["n_novelty"])
        arrays.update(sampler_arrays)
    return AnalysisOutput(results, arrays)
