"""The study's analyses, one function per part of the seed study.

Each returns JSON-able numbers (written beside the runs and quoted by the report) together with the
arrays its figures need. All randomness comes from explicit generators.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analysis.classify import (
    KnnResult,
    covariance_bayes_accuracy,
    df_classification,
    heavy_tail_labels,
    knn_classifier,
    missing_class,
)
from ..analysis.compare import (
    code_scale,
    density_summary,
    error_summary,
    nearest_neighbour_distances,
    worst_examples,
)
from ..analysis.disentanglement import (
    factor_correlations,
    mutual_information_gap,
    sap_score,
)
from ..analysis.holes import (
    empty_region_points,
    empty_volume_fraction,
    prior_hole_stats,
    prior_points,
    valid_fraction,
)
from ..analysis.latents import LatentCodes
from ..analysis.neighbours import distance_to_codes, typical_spacing
from ..analysis.paths import (
    LatentPath,
    bounding_planes,
    empty_region_traversal,
    factor_association,
    hull_perturbations,
    isovariance_path,
)
from ..analysis.projection import project
from ..analysis.traversals import (
    angular_traversal,
    interpolate,
    latent_arithmetic,
    line_traversal,
)
from ..data import HeatmapDataset
from ..errors import AtlasError
from ..models import Autoencoder
from ..models.inference import decode
from ..oracle import HeatmapOracle, OracleResult, covariance_distance

EMBEDDING_METHODS = ("pca", "tsne", "umap")
EMBEDDING_POINTS = 2000  # codes embedded by t-SNE / UMAP when the latent space has more than 3 dimensions
N_EMPTY = 300  # latent points sampled in empty regions, per model
N_PRIOR = 300  # prior draws decoded, per model
N_WORST = 6
# A common yardstick for holes: "far" = farther than this fraction of the codes' RMS radius (compare.code_scale).
COMMON_HOLE_RADIUS = 0.1


def trend(values: np.ndarray) -> float:
    """Spearman correlation of a sequence with its position: +1 rises steadily, -1 falls, 0 no trend."""
    return float(factor_association(np.arange(len(values), dtype=np.float64)[:, None], values)[0])


# -- the oracle ------------------------------------------------------------------------------------------


def _error_stats(values: np.ndarray) -> dict[str, float]:
    values = np.abs(values)
    return {"median": float(np.median(values)), "p99": float(np.percentile(values, 99)), "max": float(values.max())}


def oracle_accuracy(oracle: HeatmapOracle, dataset: HeatmapDataset) -> tuple[dict[str, Any], OracleResult]:
    """How well the oracle recovers the true factors of the real test images."""
    reading = oracle.recover(dataset.images[dataset.test_idx])
    truth = dataset.factors[dataset.test_idx]
    result: dict[str, Any] = {
        "n_images": int(len(truth)),
        "var_x_relative_error": _error_stats(reading.factor("var_x") / truth[:, 0] - 1),
        "var_y_relative_error": _error_stats(reading.factor("var_y") / truth[:, 1] - 1),
        "rho_absolute_error": _error_stats(reading.factor("rho") - truth[:, 2]),
        "residual": _error_stats(reading.residual),
    }
    if "df" in dataset.factor_names:
        light, heavy = dataset.config.df_light, dataset.config.df_heavy
        predicted_heavy = np.abs(np.log(reading.factor("df") / heavy)) < np.abs(np.log(reading.factor("df") / light))
        result["df_accuracy"] = float(np.mean(predicted_heavy == (truth[:, 3] == heavy)))
    return result, reading


# -- decoded paths ---------------------------------------------------------------------------------------


@dataclass
class DecodedPath:
    path: LatentPath
    images: np.ndarray  # (n, H, W)
    reading: OracleResult
    distance: np.ndarray  # (n,) to the nearest code

    @property
    def name(self) -> str:
        return self.path.name

    def summary(self, spacing: float) -> dict[str, Any]:
        factors = {
            name: {
                "start": float(values[0]), "end": float(values[-1]), "min": float(values.min()),
                "max": float(values.max()), "trend": trend(values),
            }
            for name, values in zip(self.reading.factor_names, self.reading.factors.T)
        }
        return {
            "description": self.path.description,
            "n_points": int(len(self.images)),
            "valid": valid_fraction(self.reading.valid),
            "distance_to_codes": {
                "mean": float(self.distance.mean()),
                "max": float(self.distance.max()),
                "mean_over_spacing": float(self.distance.mean() / spacing),
            },
            "factors": factors,
        }


def decode_path(model: Autoencoder, oracle: HeatmapOracle, codes: np.ndarray, path: LatentPath) -> DecodedPath:
    images = decode(model, path.points)
    return DecodedPath(path=path, images=images, reading=oracle.recover(images), distance=distance_to_codes(path.points, codes))


def distinct_axes(latents: LatentCodes, names: tuple[str, ...]) -> dict[str, int]:
    """One latent axis per named factor ("rho", "var_diff", "var_sum"), greedily by |Spearman|, no axis twice."""
    chosen: dict[str, int] = {}
    for name in names[: latents.latent_dim]:
        values = latents.factor("var_x") + latents.factor("var_y") if name == "var_sum" else latents.factor(name)
        association = np.abs(factor_association(latents.codes, values))
        association[list(chosen.values())] = -1.0
        chosen[name] = int(np.argmax(association))
    return chosen


def nearest_index(factors: np.ndarray, target: tuple[float, ...]) -> int:
    """Row of a (N, 3+) factor table closest to (var_x, var_y, rho), variances compared on a log scale."""
    var = np.log(factors[:, :2]) - np.log(np.asarray(target[:2]))
    return int(np.argmin((var**2).sum(axis=1) + (4 * (factors[:, 2] - target[2])) ** 2))


def _as_path(name: str, points: np.ndarray, description: str, **extras: Any) -> LatentPath:
    return LatentPath(name=name, points=points, description=description, extras=extras)


def exploration_paths(latents: LatentCodes, rng: np.random.Generator) -> tuple[list[LatentPath], dict[str, Any]]:
    """Every traversal and path of the seed's exploration, built from the manifold's own axes."""
    codes = latents.codes
    axes = distinct_axes(latents, ("rho", "var_diff", "var_sum"))
    rho_axis, diff_axis = axes["rho"], axes["var_diff"]
    median = np.median(codes, axis=0)
    low, high = np.percentile(codes, [2, 98], axis=0)
    radius = 0.35 * float(np.min((high - low)[[rho_axis, diff_axis]]))

    factors = latents.factors
    wide = nearest_index(factors, (4.1, 0.5, 0.05))
    tall = nearest_index(factors, (0.5, 4.1, 0.05))
    round_tilted = nearest_index(factors, (1.1, 1.1, 0.65))
    round_flat = nearest_index(factors, (1.1, 1.1, 0.05))
    analogy = latent_arithmetic(codes[round_tilted], codes[wide], codes[round_flat])
    analogy_target = {"var_x": float(factors[wide, 0]), "var_y": float(factors[wide, 1]),
                      "rho": float(factors[wide, 2] + factors[round_tilted, 2] - factors[round_flat, 2])}
    planes = (
        list(bounding_planes(latents, fixed_axis=diff_axis, plane_axes=(axes["var_sum"], rho_axis)))
        if "var_sum" in axes else []
    )
    paths = [
        _as_path("line_rho_axis", line_traversal(codes, axes=(rho_axis, diff_axis)),
                 f"A straight line along latent axis {rho_axis} (the one most associated with rho), the other "
                 "coordinates at the codes' median."),
        _as_path("line_var_diff_axis", line_traversal(codes, axes=(diff_axis, rho_axis)),
                 f"A straight line along latent axis {diff_axis} (the one most associated with var_x - var_y), "
                 "the other coordinates at the codes' median."),
        _as_path("arc", angular_traversal(median, axes=(rho_axis, diff_axis), radius=radius, n_points=12),
                 f"A full circle of radius {radius:.2f} around the codes' median in the plane of axes {rho_axis} "
                 f"and {diff_axis}."),
        isovariance_path(latents),
        *planes,
        hull_perturbations(latents, rng=rng),
        empty_region_traversal(latents),
        _as_path("interpolation", interpolate(codes[wide], codes[tall], n_points=10),
                 "Straight-line interpolation between the codes of a wide (var_x 4.1, var_y 0.5) and a tall "
                 "(var_x 0.5, var_y 4.1) uncorrelated image."),
        _as_path("arithmetic", np.stack([codes[round_tilted], codes[round_flat], codes[wide], analogy]),
                 "Latent arithmetic: code(round, tilted) - code(round, flat) + code(wide, flat); the last image "
                 "should be wide and tilted.", connected=False, target=analogy_target),
    ]
    return paths, {"axes": axes, "analogy_target": analogy_target}


# -- one model on the three-factor data ------------------------------------------------------------------


@dataclass
class RunAnalysis:
    """Numbers (``results``, JSON-able) and figure arrays for one trained run."""

    name: str
    kind: str
    latents: LatentCodes
    errors: np.ndarray  # (N_test,) Frobenius errors of the test reconstructions
    reconstructions: np.ndarray  # (N_test, H, W)
    results: dict[str, Any] = field(default_factory=dict)
    paths: list[DecodedPath] = field(default_factory=list)
    nn_distances: np.ndarray | None = None
    empty_points: DecodedPath | None = None
    prior_points: DecodedPath | None = None
    knn: dict[str, KnnResult] = field(default_factory=dict)
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (M, 2), rows embedding_index
    embedding_index: np.ndarray | None = None


def reconstruction_analysis(analysis: RunAnalysis, test_reading: OracleResult, oracle: HeatmapOracle) -> None:
    """AE vs VAE on reconstructions: the error distribution and a rotation-invariant covariance distance."""
    recon_reading = oracle.recover(analysis.reconstructions)
    distance = covariance_distance(test_reading.factors, recon_reading.factors)
    analysis.results["reconstruction"] = {
        "frobenius": error_summary(analysis.errors),
        "covariance_distance": {**error_summary(distance), "metric": "affine_invariant"},
        "reconstructions_valid": valid_fraction(recon_reading.valid),
        "worst_test_positions": worst_examples(analysis.errors, N_WORST).tolist(),
    }


def latent_structure(analysis: RunAnalysis, rng: np.random.Generator) -> None:
    """Density, holes against the prior, and disentanglement of the codes."""
    latents = analysis.latents
    codes = latents.codes
    analysis.nn_distances = nearest_neighbour_distances(codes)
    covariance = latents.factors[:, :3]
    analysis.results["latent"] = {
        "axes_association": factor_correlations(codes, latents.factors, latents.factor_names),
        "density": density_summary(codes),
        "empty_volume": empty_volume_fraction(codes, rng=rng),
        "empty_volume_common": empty_volume_fraction(codes, rng=rng, threshold=COMMON_HOLE_RADIUS * code_scale(codes)),
        "prior_holes": prior_hole_stats(codes, latents.logvar, prior_points(2000, latents.latent_dim, rng), rng=rng),
        "mig": mutual_information_gap(codes, covariance, factor_names=latents.factor_names[:3]),
        "sap": sap_score(codes, covariance, latents.factor_names[:3]),
    }


def embed_codes(analysis: RunAnalysis, rng: np.random.Generator, seed: int) -> None:
    """For latent dimension above 3: 2-D views of (a subsample of) the codes by PCA, t-SNE and UMAP."""
    codes = analysis.latents.codes
    if analysis.latents.latent_dim <= 3:
        return
    index = np.sort(rng.choice(len(codes), size=min(len(codes), EMBEDDING_POINTS), replace=False))
    analysis.embedding_index = index
    analysis.embeddings = {method: project(codes[index], method, n_components=2, seed=seed)
                           for method in EMBEDDING_METHODS}


def prior_decodes(analysis: RunAnalysis, model: Autoencoder, oracle: HeatmapOracle, rng: np.random.Generator) -> None:
    """Generation quality: the fraction of decoded prior draws that are valid heatmaps."""
    analysis.prior_points = decode_path(model, oracle, analysis.latents.codes, _as_path(
        "prior", prior_points(N_PRIOR, analysis.latents.latent_dim, rng), "Draws from the prior N(0, I).",
        connected=False))
    analysis.results["prior_decodes"] = valid_fraction(analysis.prior_points.reading.valid)


def explore_run(analysis: RunAnalysis, model: Autoencoder, oracle: HeatmapOracle, rng: np.random.Generator) -> None:
    """The seed's exploration for one model: every path decoded and read by the oracle, and the empty regions."""
    codes = analysis.latents.codes
    spacing = typical_spacing(codes)
    paths, layout = exploration_paths(analysis.latents, rng)
    analysis.paths = [decode_path(model, oracle, codes, path) for path in paths]
    empty = empty_region_points(codes, N_EMPTY, rng=rng)
    if len(empty) == 0:
        raise AtlasError(f"{analysis.name}: found no empty region inside the codes' hull")
    analysis.empty_points = decode_path(model, oracle, codes, _as_path(
        "empty_regions", empty, "Uniform points inside the codes' convex hull, farther from every code than 99 % of "
        "codes are from their nearest neighbour.", connected=False))
    prior_decodes(analysis, model, oracle, rng)
    along_paths = np.concatenate([p.reading.valid for p in analysis.paths if p.name != "arithmetic"])
    arithmetic = next(p for p in analysis.paths if p.name == "arithmetic")
    analysis.results["exploration"] = {
        "axes": layout["axes"],
        "typical_spacing": spacing,
        "paths": {p.name: p.summary(spacing) for p in analysis.paths},
        "analogy": {"target": layout["analogy_target"],
                    "recovered": dict(zip(oracle.factor_names, arithmetic.reading.factors[-1].tolist()))},
        "valid_decodes": {
            "empty_regions": {**valid_fraction(analysis.empty_points.reading.valid),
                              "mean_distance_over_spacing": float(analysis.empty_points.distance.mean() / spacing)},
            "along_paths": valid_fraction(along_paths),
            "prior": valid_fraction(analysis.prior_points.reading.valid),
        },
    }


# -- the four-factor problem -----------------------------------------------------------------------------


def knn_baselines(dataset: HeatmapDataset, seed: int) -> tuple[dict[str, KnnResult], dict[str, Any]]:
    """The df classifier on the true covariance factors and on raw pixels: what the codes are measured against.

    Also the best accuracy any classifier of the covariance alone can reach under the data's df rule.
    """
    config = dataset.config
    labels = heavy_tail_labels(dataset.factors, dataset.factor_names, config.df_heavy)
    reason = missing_class(labels, dataset.train_idx, dataset.test_idx)
    ceiling = covariance_bayes_accuracy(dataset.factor("var_x")[dataset.test_idx], dataset.factor("var_y")[dataset.test_idx],
                                        config.df_threshold, config.df_noise_max)
    summary = {"covariance_ceiling": ceiling, "skipped": reason}
    if reason:
        return {}, summary
    results = df_classification(None, dataset.factors, dataset.factor_names, dataset.images, dataset.train_idx,
                                dataset.test_idx, seed=seed, heavy_df=config.df_heavy)
    summary.update({name: result.to_dict() for name, result in results.items()})
    return results, summary


def knn_on_codes(analysis: RunAnalysis, dataset: HeatmapDataset, seed: int) -> None:
    """The df classifier on the run's codes; recorded as skipped when a split lacks one of the classes."""
    labels = heavy_tail_labels(dataset.factors, dataset.factor_names, dataset.config.df_heavy)
    reason = missing_class(labels, dataset.train_idx, dataset.test_idx)
    if reason:
        analysis.results["knn_df"] = {"skipped": reason}
        return
    codes = analysis.latents.codes
    result = knn_classifier(codes[dataset.train_idx], labels[dataset.train_idx], codes[dataset.test_idx],
                            labels[dataset.test_idx], seed=seed, features="codes")
    analysis.knn = {"codes": result}
    analysis.results["knn_df"] = result.to_dict()
