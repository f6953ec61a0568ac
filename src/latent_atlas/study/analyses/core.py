"""Analyses of every run: reconstruction quality and the geometry of the codes."""

from __future__ import annotations

import numpy as np

from ...analysis.compare import code_scale, density_summary, error_summary, nearest_neighbour_distances, worst_examples
from ...analysis.disentanglement import factor_correlations
from ...analysis.holes import empty_volume_fraction
from ...analysis.projection import project
from ...oracle import covariance_distance
from ..registry import AnalysisOutput, RunInputs, analysis
from ..runs import BETAS, CORE, DIMENSIONS, TOOLBOX

ALL_GROUPS = (CORE, DIMENSIONS, BETAS, TOOLBOX, "sweep")
COVARIANCE = slice(0, 3)
# A common yardstick for holes: "far" = farther than this fraction of the codes' RMS radius (compare.code_scale).
COMMON_HOLE_RADIUS = 0.1


@analysis("reconstruction", groups=ALL_GROUPS, n_worst=6)
def reconstruction(inputs: RunInputs) -> AnalysisOutput:
    """The test error distribution, a rotation-invariant covariance distance, and the oracle's verdict on the
    reconstructions (is each reconstruction a heatmap of the family, inside the data's box?)."""
    evaluation, dataset = inputs.evaluation, inputs.dataset
    errors = evaluation["frobenius"]
    truth = dataset.factors[evaluation["test_idx"]][:, COVARIANCE]
    recovered = evaluation["verdict_factors"][:, COVARIANCE]
    distance = covariance_distance(truth, recovered)
    return AnalysisOutput({
        "frobenius": error_summary(errors),
        "covariance_distance": {**error_summary(distance), "metric": "affine_invariant"},
        "worst_test_positions": worst_examples(errors, inputs.params["n_worst"]).tolist(),
    })


@analysis("latent_structure", groups=(CORE,))
def latent_structure(inputs: RunInputs) -> AnalysisOutput:
    """How densely the codes fill their hull, and which latent axis goes with which factor."""
    latents = inputs.latents
    codes = latents.codes
    return AnalysisOutput({
        "axes_association": factor_correlations(codes, latents.factors, latents.factor_names),
        "density": density_summary(codes),
        "empty_volume": empty_volume_fraction(codes, rng=inputs.rng),
        "empty_volume_common": empty_volume_fraction(codes, rng=inputs.rng,
                                                     threshold=COMMON_HOLE_RADIUS * code_scale(codes)),
    }, {"nn_distances": nearest_neighbour_distances(codes).astype(np.float32)})


@analysis("embeddings", groups=(DIMENSIONS,), n_points=1000, methods=("pca", "tsne"))
def embeddings(inputs: RunInputs) -> AnalysisOutput:
    """For latent dimensions above 3: 2-D views of a subsample of the codes by PCA, t-SNE and UMAP."""
    codes = inputs.latents.codes
    if codes.shape[1] <= 3:
        return AnalysisOutput({"methods": [], "reason": "3 or fewer latent dimensions are shown directly"})
    index = np.sort(inputs.rng.choice(len(codes), size=min(len(codes), inputs.params["n_points"]), replace=False))
    seed = int(inputs.rng.integers(2**31))
    views = {method: project(codes[index], method, n_components=2, seed=seed).astype(np.float32)
             for method in inputs.params["methods"]}
    return AnalysisOutput({"methods": list(views), "n_points": int(len(index))}, {"index": index, **views})
