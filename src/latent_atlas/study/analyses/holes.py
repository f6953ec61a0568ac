"""Empty regions, done fairly: validity as a function of the distance from the codes, in each model's own
length units, and many tail-to-tail paths built by one rule for every model."""

from __future__ import annotations

import numpy as np

from ...analysis.holes import (
    bin_distances,
    distance_bin_summary,
    distance_binned_points,
    posterior_sigma_scale,
    scaled_distances,
)
from ...analysis.neighbours import typical_spacing
from ...analysis.paths import path_validity_summary, tail_traversals
from ...models import UNCONDITIONAL_KINDS
from ..registry import AnalysisOutput, RunInputs, analysis
from .decoding import decode_and_judge

SPACING_EDGES = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)  # in median code spacings
SIGMA_EDGES = (0.0, 0.5, 1.0, 2.0, 4.0)  # in the VAE's posterior standard deviations at the nearest code


@analysis("empty_regions", datasets=("gaussian",), models=UNCONDITIONAL_KINDS, version=1, n_per_bin=200)
def empty_regions(inputs: RunInputs) -> AnalysisOutput:
    """Uniform points in the codes' hull, up to ``n_per_bin`` per bin of nearest-code distance (in median code
    spacings), decoded and judged; for the VAE the same points also binned by posterior standard deviations."""
    latents = inputs.latents
    codes = latents.codes
    points = distance_binned_points(codes, inputs.rng, n_per_bin=inputs.params["n_per_bin"], edges=SPACING_EDGES)
    decoded = decode_and_judge(inputs.model, inputs.oracle, points.points)
    verdict = decoded.verdict
    results = {
        "by_spacing": distance_bin_summary(points.bin_index, verdict.valid, SPACING_EDGES, verdict.shape_residual),
        "median_spacing": typical_spacing(codes),
        "n_candidates": points.n_candidates,
        "verdict": verdict.summary() | {"box": None},
    }
    arrays = {"bin_index": points.bin_index, "scaled_distance": points.scaled_distance.astype(np.float32),
              **decoded.arrays("points", images=False)}
    if latents.logvar is not None:
        sigma = posterior_sigma_scale(latents.logvar)
        _, _, in_sigma = scaled_distances(points.points, codes, sigma)
        sigma_bins = bin_distances(in_sigma, SIGMA_EDGES)
        results["by_sigma"] = distance_bin_summary(sigma_bins, verdict.valid, SIGMA_EDGES, verdict.shape_residual,
                                                   unit="posterior standard deviations at the nearest code")
        results["median_sigma_over_spacing"] = float(np.median(sigma) / results["median_spacing"])
        arrays["sigma_distance"] = in_sigma.astype(np.float32)
    order = np.argsort(points.scaled_distance)[::-1][:12]
    arrays["farthest_images"] = decoded.images[order].astype(np.float16)
    arrays["farthest_index"] = order
    return AnalysisOutput(results, arrays)


@analysis("tail_paths", datasets=("gaussian",), models=UNCONDITIONAL_KINDS, version=1, n_paths=32, n_points=21)
def tail_paths(inputs: RunInputs) -> AnalysisOutput:
    """Paths between random codes of the two var_x - var_y tails (the seed's "empty space between the tails"),
    the same image pairs for every model and seed (the draw depends only on the study's analysis seed)."""
    latents = inputs.latents
    paths = tail_traversals(latents.codes, latents.factor("var_diff"), inputs.shared_rng("tail_paths"),
                            n_paths=inputs.params["n_paths"], n_points=inputs.params["n_points"])
    n_paths, n_points, dim = paths.points.shape
    decoded = decode_and_judge(inputs.model, inputs.oracle, paths.points.reshape(-1, dim))
    valid = decoded.verdict.valid.reshape(n_paths, n_points)
    spacing = typical_spacing(latents.codes)
    results = {
        "description": paths.description,
        "validity": path_validity_summary(valid, rng=inputs.rng),
        "distance_over_spacing": {"mean": float(paths.nearest_code_distance.mean() / spacing),
                                  "max": float(paths.nearest_code_distance.max() / spacing)},
        "start_indices": paths.extras["start_indices"].tolist(),
        "end_indices": paths.extras["end_indices"].tolist(),
    }
    arrays = {"valid": valid, "shape_residual": decoded.verdict.shape_residual.reshape(n_paths, n_points),
              "in_range": decoded.verdict.in_range.reshape(n_paths, n_points),
              "distance_over_spacing": (paths.nearest_code_distance / spacing).astype(np.float32),
              "first_path_images": decoded.images[:n_points].astype(np.float16)}
    return AnalysisOutput(results, arrays)
