"""The second seed's toolbox, every technique scored against ground truth: anomaly detection with known
anomalies, imputation scored by the recovered factors, clustering against the true labels, and attribute
vectors judged by what they change and what they leave alone. Applied to the core VAEs and AEs when the
study's toolbox section is on; the conditional VAE's runs get conditional generation scored by the oracle."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...analysis.anomaly import LatentDensity, anomaly_scores, detection_table
from ...analysis.attributes import AttributeDirections, evaluate_directions
from ...analysis.clustering import clustering_comparison
from ...analysis.conditional import conditional_generation as score_conditional_generation
from ...analysis.imputation import imputation_scores, impute_iterative, impute_optimise, make_mask, start_images
from ...corruptions import clean_factors, make_benchmark
from ...data.heatmaps import render_heatmaps
from ...models import UNCONDITIONAL_KINDS
from ...models.conditioning import encode_conditions
from ...models.inference import decode
from ..registry import AnalysisOutput, RunInputs, analysis
from ..runs import TOOLBOX

MASKS = ("quadrant", "central_block", "random_pixels")


def _test_subset(inputs: RunInputs, n: int) -> np.ndarray:
    test = inputs.dataset.test_idx
    return np.sort(inputs.rng.choice(test, size=min(n, len(test)), replace=False))


def anomaly_sets(inputs: RunInputs, n: int) -> dict[str, np.ndarray]:
    """Known anomalies for a model of Gaussian heatmaps: Student t df = 2 heatmaps at random factors inside the
    data's box, and each corruption kind of the benchmark (its corrupt grades pooled)."""
    config = inputs.dataset.config
    factors = clean_factors(config, n, inputs.rng)
    sets = {"student_t_df2": render_heatmaps(factors[:, 0], factors[:, 1], factors[:, 2], inputs.dataset.axis,
                                             np.full(n, 2.0))}
    benchmark = make_benchmark(config, inputs.rng, n_per_cell=max(4, n // 10))
    for kind in dict.fromkeys(benchmark.kind[benchmark.label].tolist()):
        sets[f"corruption:{kind}"] = benchmark.images[(benchmark.kind == kind) & benchmark.label].astype(np.float32)
    return sets


@analysis("anomaly", datasets=("gaussian",), models=UNCONDITIONAL_KINDS, groups=(TOOLBOX,), version=1, n_images=400)
def anomaly(inputs: RunInputs) -> AnalysisOutput:
    """Held-out Gaussian heatmaps (normal) against Student t df = 2 heatmaps and the corruption benchmark's
    images, by reconstruction error, reconstruction NLL (raw and minus each image's own floor), negative ELBO
    (VAE) and latent density (a Gaussian mixture on the training codes; for the VAE also the aggregate
    posterior), beside the oracle's shape residual as a reference."""
    dataset, latents, model = inputs.dataset, inputs.latents, inputs.model
    train = dataset.train_idx
    densities = {"latent_density": LatentDensity("gmm", seed=0).fit(latents.codes[train])}
    if latents.logvar is not None:
        densities["latent_density_aggregate"] = LatentDensity("aggregate").fit(latents.codes[train],
                                                                               latents.logvar[train])

    def scores(images: np.ndarray) -> dict[str, np.ndarray]:
        out = anomaly_scores(model, images, densities["latent_density"])
        if "latent_density_aggregate" in densities:
            out["latent_density_aggregate"] = -densities["latent_density_aggregate"].score_samples(
                _codes(model, images))
        out["oracle_shape_residual"] = inputs.oracle.verdict(images, novelty=False).shape_residual
        return out

    normal = dataset.images[_test_subset(inputs, inputs.params["n_images"])]
    anomalies = {kind: scores(images) for kind, images in anomaly_sets(inputs, inputs.params["n_images"]).items()}
    table = detection_table(scores(normal), anomalies, n_bootstrap=500, seed=int(inputs.rng.integers(2**31)))
    return AnalysisOutput({"n_normal": int(len(normal)), "n_anomalies": {k: len(next(iter(v.values())))
                                                                         for k, v in anomalies.items()},
                           "detection": table})


def _codes(model, images: np.ndarray) -> np.ndarray:
    from ...models.inference import encode

    return encode(model, images)[0]


@analysis("imputation", datasets=("gaussian",), models=UNCONDITIONAL_KINDS, groups=(TOOLBOX,), version=1, n_images=128)
def imputation(inputs: RunInputs) -> AnalysisOutput:
    """Test heatmaps with a quadrant, a central block or half their pixels missing, completed by iterating
    encode-decode on the missing pixels and by optimising the code against the observed pixels; scored by the
    missing pixels' error and by the oracle's factors of the completed image against the true factors."""
    dataset, model = inputs.dataset, inputs.model
    index = _test_subset(inputs, inputs.params["n_images"])
    images, factors = dataset.images[index], dataset.factors[index]

    def recover(x: np.ndarray):
        return inputs.oracle.verdict(x, novelty=False)

    results: dict[str, Any] = {}
    for mask in MASKS:
        missing = make_mask(mask, dataset.image_shape, len(images), inputs.rng)
        completed = {"start": start_images(images, missing), "iterative": impute_iterative(model, images, missing),
                     "optimise": impute_optimise(model, images, missing)}
        results[mask] = {method: imputation_scores(images, filled, missing, factors, dataset.factor_names, recover)
                         for method, filled in completed.items()}
    return AnalysisOutput({"n_images": int(len(images)), "masks": results})


@analysis("clustering", models=UNCONDITIONAL_KINDS, groups=(TOOLBOX,), version=1, max_points=3000)
def clustering(inputs: RunInputs) -> AnalysisOutput:
    """k-means and a Gaussian mixture on the codes against the df labels and quantile bins of each factor,
    beside the same on the true covariance factors and on the pixels: ARI and NMI."""
    dataset = inputs.dataset
    return AnalysisOutput(clustering_comparison(inputs.latents.codes, dataset.factors, dataset.factor_names,
                                                dataset.images, max_points=inputs.params["max_points"],
                                                seed=int(inputs.rng.integers(2**31))))


@analysis("attributes", datasets=("gaussian",), models=UNCONDITIONAL_KINDS, groups=(TOOLBOX,), version=1)
def attributes(inputs: RunInputs) -> AnalysisOutput:
    """Latent arithmetic done properly: the code direction of each factor (a regression of the codes on the
    standardised factors), applied to held-out codes; the oracle reads how much the intended factor changes
    and how little the others move, against random directions of the same length."""
    dataset, latents, model = inputs.dataset, inputs.latents, inputs.model
    train, test = dataset.train_idx, dataset.test_idx
    names = ("var_x", "var_y", "rho")
    directions = AttributeDirections().fit(latents.codes[train], latents.factors[train][:, :3], names)

    def recover(x: np.ndarray):
        return inputs.oracle.verdict(x, novelty=False)

    return AnalysisOutput({"r2": directions.r2_.tolist() if hasattr(directions.r2_, "tolist") else directions.r2_,
                           "evaluation": evaluate_directions(directions, latents.codes[test],
                                                             lambda z: decode(model, z), recover, rng=inputs.rng)})


@analysis("conditional_generation", models=("cvae",), groups=(TOOLBOX,), version=1, n_samples=200, n_shown=8)
def conditional_generation(inputs: RunInputs) -> AnalysisOutput:
    """The CVAE's conditional generation scored by the oracle: prior draws decoded at each requested value of
    its condition (both df classes; every value of rho's grid), the fraction whose recovered factor matches the
    request (Wilson intervals), the valid fraction, and the spread of the unconditioned factors against the
    data's (``analysis.conditional``)."""
    dataset, model = inputs.dataset, inputs.model
    name = model.config.condition

    def decode_with(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
        return decode(model, codes, conditions=encode_conditions(name, values, dataset.config))

    results, arrays = score_conditional_generation(
        decode_with, lambda images: inputs.oracle.verdict(images, novelty=False), name, dataset.config,
        dataset.factors[dataset.train_idx], dataset.factor_names, model.latent_dim, inputs.params["n_samples"],
        inputs.rng, n_shown=inputs.params["n_shown"])
    return AnalysisOutput(results, arrays)
