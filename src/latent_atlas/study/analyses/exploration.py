"""The seed's exploration of the Gaussian manifold: straight and angular traversals, the isovariance
spline, the bounding planes, perturbations, interpolation and latent arithmetic, each decoded and read
back by the oracle. Paths built to follow a factor are judged by what they should keep fixed, against
null paths of the same length from the same start."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import spearmanr

from ...analysis.latents import LatentCodes
from ...analysis.neighbours import distance_to_codes, typical_spacing
from ...analysis.paths import (
    PATH_FACTORS,
    LatentPath,
    bounding_planes,
    code_directed_null_paths,
    compare_with_null,
    factor_association,
    hull_perturbations,
    isovariance_path,
    null_paths_like,
)
from ...analysis.traversals import angular_traversal, interpolate, latent_arithmetic, line_traversal
from ...errors import AtlasError
from ...models import UNCONDITIONAL_KINDS
from ..registry import AnalysisOutput, RunInputs, analysis
from .decoding import Decoded, decode_and_judge


def trend(values: np.ndarray) -> float | None:
    """Spearman correlation of a sequence with its position: +1 rises steadily, -1 falls; None if constant."""
    values = np.asarray(values, dtype=np.float64)
    if np.ptp(values) == 0:
        return None
    return float(spearmanr(np.arange(len(values)), values).statistic)


def distinct_axes(latents: LatentCodes, names: tuple[str, ...]) -> dict[str, int]:
    """One latent axis per named factor ("rho", "var_diff", "var_sum"), greedily by |Spearman|, no axis twice."""
    chosen: dict[str, int] = {}
    for name in names[: latents.latent_dim]:
        values = latents.factor("var_x") + latents.factor("var_y") if name == "var_sum" else latents.factor(name)
        association = np.abs(factor_association(latents.codes, values))
        association[list(chosen.values())] = -1.0
        chosen[name] = int(np.argmax(association))
    return chosen


def nearest_index(factors: np.ndarray, target: tuple[float, float, float]) -> int:
    """Row of a (N, 3+) factor table closest to (var_x, var_y, rho), variances compared on a log scale."""
    var = np.log(factors[:, :2]) - np.log(np.asarray(target[:2]))
    return int(np.argmin((var**2).sum(axis=1) + (4 * (factors[:, 2] - target[2])) ** 2))


def exploration_paths(latents: LatentCodes, rng: np.random.Generator) -> tuple[list[LatentPath], dict[str, Any]]:
    """Every traversal and path of the seed's exploration, built from the manifold's own axes."""
    codes, factors = latents.codes, latents.factors
    axes = distinct_axes(latents, ("rho", "var_diff", "var_sum"))
    rho_axis, diff_axis = axes["rho"], axes["var_diff"]
    median = np.median(codes, axis=0)
    low, high = np.percentile(codes, [2, 98], axis=0)
    radius = 0.35 * float(np.min((high - low)[[rho_axis, diff_axis]]))
    wide, tall = nearest_index(factors, (4.1, 0.5, 0.05)), nearest_index(factors, (0.5, 4.1, 0.05))
    round_tilted, round_flat = nearest_index(factors, (1.1, 1.1, 0.65)), nearest_index(factors, (1.1, 1.1, 0.05))
    analogy_target = {"var_x": float(factors[wide, 0]), "var_y": float(factors[wide, 1]),
                      "rho": float(factors[wide, 2] + factors[round_tilted, 2] - factors[round_flat, 2])}
    planes = (list(bounding_planes(latents, fixed_axis=diff_axis, plane_axes=(axes["var_sum"], rho_axis)))
              if "var_sum" in axes else [])
    paths = [
        LatentPath("line_rho_axis", line_traversal(codes, axes=(rho_axis, diff_axis)),
                   f"A straight line along latent axis {rho_axis} (the one most associated with rho), the other "
                   "coordinates at the codes' median."),
        LatentPath("line_var_diff_axis", line_traversal(codes, axes=(diff_axis, rho_axis)),
                   f"A straight line along latent axis {diff_axis} (the one most associated with var_x - var_y), "
                   "the other coordinates at the codes' median."),
        LatentPath("arc", angular_traversal(median, axes=(rho_axis, diff_axis), radius=radius, n_points=12),
                   f"A full circle of radius {radius:.2f} around the codes' median in the plane of axes {rho_axis} "
                   f"and {diff_axis}."),
        isovariance_path(latents),
        *planes,
        hull_perturbations(latents, rng=rng),
        LatentPath("interpolation", interpolate(codes[wide], codes[tall], n_points=10),
                   "Straight-line interpolation between the codes of a wide (var_x 4.1, var_y 0.5) and a tall "
                   "(var_x 0.5, var_y 4.1) uncorrelated image."),
        LatentPath("arithmetic", np.stack([codes[round_tilted], codes[round_flat], codes[wide],
                                           latent_arithmetic(codes[round_tilted], codes[wide], codes[round_flat])]),
                   "Latent arithmetic: code(round, tilted) - code(round, flat) + code(wide, flat); the last image "
                   "should be wide and tilted.", {"connected": False}),
    ]
    return paths, {"axes": axes, "analogy_target": analogy_target}


def path_summary(path: LatentPath, decoded: Decoded, codes: np.ndarray, spacing: float) -> dict[str, Any]:
    verdict = decoded.verdict
    distance = distance_to_codes(path.points, codes)
    return {
        "description": path.description,
        "n_points": int(len(path.points)),
        "verdict": verdict.summary() | {"box": None},
        "distance_to_codes": {"mean_over_spacing": float(distance.mean() / spacing),
                              "max_over_spacing": float(distance.max() / spacing)},
        "factors": {name: {"start": float(v[0]), "end": float(v[-1]), "min": float(v.min()), "max": float(v.max()),
                           "trend": trend(v)} for name, v in zip(verdict.factor_names, verdict.factors.T)},
    }


def judged_against_nulls(path: LatentPath, decoded: Decoded, inputs: RunInputs, n_null: int) -> dict[str, Any]:
    """The path's drift of what it should keep fixed (and change of what it should change) against null paths
    from the same start: straight lines of the path's length in random directions (the literal null, which
    soon leaves the manifold, so its factors are fits to non-heatmaps), and straight lines aimed at codes as
    far from the start as the path's end is (which end on the manifold: the fair null for a path along it)."""
    roles = PATH_FACTORS[path.name]
    model, oracle, codes = inputs.model, inputs.oracle, inputs.latents.codes
    names = decoded.verdict.factor_names
    out: dict[str, Any] = {"fixed": list(roles["fixed"]), "intended": list(roles["intended"])}
    nulls = {"random_direction": null_paths_like(path.points, inputs.rng, n_null)}
    try:
        chord = float(np.linalg.norm(path.points[-1] - path.points[0]))
        nulls["code_directed"] = code_directed_null_paths(path.points[0], chord, len(path.points), codes,
                                                          inputs.rng, n_null)
    except AtlasError as exc:
        out["code_directed"] = {"skipped": str(exc)}
    for kind, points in nulls.items():
        flat = decode_and_judge(model, oracle, points.reshape(-1, points.shape[-1]))
        shape = points.shape[:2]
        out[kind] = compare_with_null(decoded.verdict.factors, flat.verdict.factors.reshape(*shape, len(names)),
                                      names, roles["fixed"], roles["intended"], path_valid=decoded.verdict.valid,
                                      null_valid=flat.verdict.valid.reshape(shape))
    return out


@analysis("exploration", datasets=("gaussian",), models=UNCONDITIONAL_KINDS, version=1, n_null=50,
          quick={"n_null": 20})
def exploration(inputs: RunInputs) -> AnalysisOutput:
    latents = inputs.latents
    codes = latents.codes
    spacing = typical_spacing(codes)
    paths, layout = exploration_paths(latents, inputs.rng)
    summaries, arrays = {}, {}
    for path in paths:
        decoded = decode_and_judge(inputs.model, inputs.oracle, path.points, novelty=True)
        summaries[path.name] = path_summary(path, decoded, codes, spacing)
        if path.name in PATH_FACTORS:
            summaries[path.name]["against_null"] = judged_against_nulls(path, decoded, inputs, inputs.params["n_null"])
        arrays.update(decoded.arrays(path.name))
    arithmetic = summaries["arithmetic"]["factors"]
    return AnalysisOutput({
        "axes": layout["axes"],
        "typical_spacing": spacing,
        "paths": summaries,
        "analogy": {"target": layout["analogy_target"],
                    "recovered": {name: arithmetic[name]["end"] for name in ("var_x", "var_y", "rho")}},
    }, arrays)
