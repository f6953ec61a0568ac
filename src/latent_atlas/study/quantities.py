"""What the aggregates compare, written down before any multi-seed result was looked at.

Each quantity's margin is the difference below which the report would call two model kinds equivalent (a
TOST over paired seeds at that margin), in the quantity's own units: 0.02 in mean Frobenius error is about
6 % of a default VAE's; 0.05 in a valid fraction is five percentage points; 0.05 in a score on [0, 1].

Each quantity belongs to a *family* (``_family``, or ``HOLES`` for the distance bins and the tail-to-tail paths): the
quantities that answer one question (how well does it reconstruct? where
are the holes? how good are the samples? ...). A verdict is decided on its p-value Holm-adjusted within its
family, so that asking one question several ways (five distance bins, three summaries of one error) does not
multiply the chances of a false "A > B". The families were declared after a review found the verdicts
unadjusted, so with the raw p-values known (before the adjusted ones were computed); they follow the questions of
the report's sections, not the results. The margins are the original ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .aggregates import Quantity
from .runs import BETAS, DIMENSIONS, TOOLBOX


def _family(name: str, quantities: tuple[Quantity, ...]) -> tuple[Quantity, ...]:
    return tuple(replace(quantity, family=name) for quantity in quantities)


RECONSTRUCTION = _family("reconstruction", (
    Quantity("test_frobenius_mean", "test Frobenius error, mean", "metrics", "test_frobenius.mean", 0.02, "lower"),
    Quantity("test_frobenius_median", "test Frobenius error, median", "metrics", "test_frobenius.median", 0.02,
             "lower"),
    Quantity("test_frobenius_p99", "test Frobenius error, p99", "metrics", "test_frobenius.p99", 0.05, "lower"),
    Quantity("tail_ratio", "error tail ratio p99 / median", "reconstruction", "frobenius.tail_ratio", 0.2, "lower"),
    Quantity("covariance_distance_median", "covariance distance of reconstructions, median", "reconstruction",
             "covariance_distance.median", 0.01, "lower"),
    Quantity("reconstructions_valid", "reconstructions in-distribution valid", "metrics",
             "reconstruction_verdict.valid", 0.02, "higher"),
))
METRICS = _family("disentanglement", (
    Quantity("mig", "MIG (quantile bins)", "disentanglement", "mig.mig", 0.05, "higher"),
    Quantity("dci_lasso_d", "DCI disentanglement (Lasso)", "disentanglement", "dci_lasso.disentanglement", 0.05,
             "higher"),
    Quantity("dci_trees_d", "DCI disentanglement (trees)", "disentanglement", "dci_trees.disentanglement", 0.05,
             "higher"),
    Quantity("dci_trees_i", "DCI informativeness (trees, held-out R²)", "disentanglement",
             "dci_trees.informativeness", 0.02, "higher"),
    Quantity("explicitness", "explicitness (kNN, held-out R²)", "disentanglement", "explicitness.explicitness", 0.02,
             "higher"),
))
GEOMETRY = _family("latent geometry", (
    Quantity("density_median", "nearest-code distance, median (common scale)", "latent_structure", "density.median",
             0.005, None),
    Quantity("density_tail_ratio", "nearest-code distance, p99 / median", "latent_structure", "density.tail_ratio",
             0.2, None),
    Quantity("empty_volume_common", "hull volume far from every code (common yardstick)", "latent_structure",
             "empty_volume_common.fraction", 0.02, None),
))
HOLES = "empty regions"  # decodes away from the codes: the distance bins and the tail-to-tail paths
EMPTY_BINS = tuple(
    Quantity(f"empty_valid_bin{i}", f"valid decodes {lo:g}-{hi:g} code spacings from the codes", "empty_regions",
             f"by_spacing.bins.{i}.fraction", 0.05, "higher", HOLES)
    for i, (lo, hi) in enumerate(((0, 0.5), (0.5, 1), (1, 2), (2, 4), (4, 8)))
)
EXPLORATION = (
    Quantity("tail_paths_valid", "tail-to-tail paths: mean valid fraction per path", "tail_paths",
             "validity.mean_path_fraction.fraction", 0.05, "higher", HOLES),
    *_family("isovariance path", (
        Quantity("isovariance_valid", "isovariance path: valid", "exploration", "paths.isovariance.verdict.valid",
                 0.1, "higher"),
        Quantity("isovariance_rho_change_pct",
                 "isovariance path: |change of rho|, percentile among code-directed nulls", "exploration",
                 "paths.isovariance.against_null.code_directed.intended.rho.percentile", 10.0, "higher"),
        Quantity("isovariance_ratio_drift_pct",
                 "isovariance path: drift of log(var_x / var_y), percentile among code-directed nulls", "exploration",
                 "paths.isovariance.against_null.code_directed.fixed.log_var_ratio.percentile", 10.0, "lower"),
    )),
)
GENERATION = _family("generation", (
    Quantity("prior_valid", "prior draws N(0, I): valid decodes", "generation", "samplers.prior.verdict.valid", 0.05,
             "higher"),
    Quantity("gaussian_valid", "Gaussian fitted to own codes: valid decodes", "generation",
             "samplers.gaussian.verdict.valid", 0.05, "higher"),
    Quantity("mixture_valid", "Gaussian mixture fitted to own codes: valid decodes", "generation",
             "samplers.mixture.verdict.valid", 0.05, "higher"),
    Quantity("gaussian_fidelity_auc", "Gaussian sampler: factor-space two-sample AUC (0.5 = like the data)",
             "generation", "samplers.gaussian.fidelity.auc", 0.03, "lower"),
    Quantity("mixture_fidelity_auc", "mixture sampler: factor-space two-sample AUC (0.5 = like the data)",
             "generation", "samplers.mixture.fidelity.auc", 0.03, "lower"),
    Quantity("mixture_fidelity_energy", "mixture sampler: factor-space energy distance", "generation",
             "samplers.mixture.fidelity.energy", 0.01, "lower"),
))
FOUR_FACTOR = _family("four factors", (
    Quantity("knn_accuracy", "KNN df accuracy on the codes", "knn_df", "accuracy", 0.02, "higher"),
    Quantity("knn_band_accuracy", "KNN df accuracy on the ambiguous band", "knn_df", "subsets.band.accuracy", 0.03,
             "higher"),
))


# Threshold-free evidence: a conclusion about validity is checked at every threshold from half to twice the
# operating point (multipliers of the shape threshold the corruption benchmark fixed).
EVIDENCE_BAND = (0.5, 2.0)


def _margin(name: str, quantities: tuple[Quantity, ...]) -> float:
    return next(q.margin for q in quantities if q.name == name)


# The evidence table's validity comparisons (``aggregates.VALIDITY_SOURCES``) are called equivalent at the margin
# of the quantity each one checks (the distance bins all share theirs).
EVIDENCE_MARGINS = {
    "reconstructions": _margin("reconstructions_valid", RECONSTRUCTION),
    "empty_regions": _margin("empty_valid_bin0", EMPTY_BINS),
    "tail_paths": _margin("tail_paths_valid", EXPLORATION),
    "gaussian_sampler": _margin("gaussian_valid", GENERATION),
    "mixture_sampler": _margin("mixture_valid", GENERATION),
}


SAMPLER_NAMES = ("prior", "gaussian", "mixture", "two_stage")
DIMENSION_CURVES = (
    RECONSTRUCTION[0],
    Quantity("negative_elbo", "test negative ELBO (nats per image)", "metrics", "test_elbo.loss", 1.0, "lower"),
    Quantity("active_units", "active units (variance of the posterior mean > 0.01)", "generation",
             "active_units.count", 0.5, None),
    Quantity("kl_q_p", "KL(aggregate posterior || prior), nats", "generation", "prior_holes.aggregate_kl.kl_q_p",
             0.1, "lower"),
    Quantity("kl_p_q", "KL(prior || aggregate posterior), nats", "generation", "prior_holes.aggregate_kl.kl_p_q",
             0.1, "lower"),
    Quantity("prior_vs_posterior_auc", "classifier AUC, prior draws vs aggregate-posterior draws", "generation",
             "prior_holes.two_sample.auc", 0.03, "lower"),
    *(Quantity(f"{name}_valid", f"{name} sampler: valid decodes", "generation", f"samplers.{name}.verdict.valid",
               0.05, "higher") for name in SAMPLER_NAMES),
    *(Quantity(f"{name}_fidelity_auc", f"{name} sampler: factor-space AUC (0.5 = like the data)", "generation",
               f"samplers.{name}.fidelity.auc", 0.03, "lower") for name in SAMPLER_NAMES),
)
BETA_CURVES = (
    RECONSTRUCTION[0],
    Quantity("kl", "test KL(q(z|x) || p(z)), nats per image", "metrics", "test_elbo.kl", 0.1, None),
    Quantity("active_units", "active units (variance of the posterior mean > 0.01)", "generation",
             "active_units.count", 0.5, None),
    *METRICS,
    Quantity("factorvae", "FactorVAE score (interventional)", "disentanglement", "factorvae.factorvae", 0.05,
             "higher"),
    Quantity("prior_valid", "prior draws: valid decodes", "generation", "samplers.prior.verdict.valid", 0.05,
             "higher"),
)


TOOLBOX_GAUSSIAN = (
    *_family("anomaly detection", tuple(
        Quantity(f"auroc_df2_{score}", f"AUROC, Student t df = 2 vs held-out Gaussian, by {label}", "anomaly",
                 f"detection.student_t_df2.{score}.auroc", 0.03, "higher")
        for score, label in (("reconstruction_error", "reconstruction error"),
                             ("reconstruction_nll_excess", "NLL above the image's floor"),
                             ("latent_density", "latent density (GMM)")))),
    *_family("imputation", tuple(
        Quantity(f"impute_{mask}", f"imputation RMSE on missing pixels, {mask.replace('_', ' ')} (code optimised)",
                 "imputation", f"masks.{mask}.optimise.missing_rmse.mean", 0.005, "lower")
        for mask in ("quadrant", "central_block", "random_pixels"))),
    *_family("attribute vectors", tuple(
        Quantity(f"attribute_selectivity_{name}", f"attribute vector for {name}: selectivity", "attributes",
                 f"evaluation.factors.{name}.selectivity", 0.05, "higher") for name in ("var_x", "var_y", "rho"))),
)
TOOLBOX_STUDENT_T = _family("clustering", (
    Quantity("cluster_df_kmeans", "k-means on the codes against df: ARI", "clustering",
             "scores.codes.df.kmeans.ari", 0.05, "higher"),
    Quantity("cluster_df_gmm", "Gaussian mixture on the codes against df: ARI", "clustering",
             "scores.codes.df.gmm.ari", 0.05, "higher"),
))


@dataclass(frozen=True)
class Comparison:
    name: str
    dataset: str
    quantities: tuple[Quantity, ...]
    group: str = "core"  # the runs it compares: the core runs, or the core runs of a section (toolbox)


@dataclass(frozen=True)
class Curve:
    name: str
    group: str
    setting: str
    quantities: tuple[Quantity, ...]
    trend_from: float | None = None  # the trend test's smallest level (None: all levels)


COMPARISONS = (
    Comparison("compare-gaussian", "gaussian",
               RECONSTRUCTION + METRICS + GEOMETRY + EMPTY_BINS + EXPLORATION + GENERATION),
    Comparison("compare-student_t", "student_t", RECONSTRUCTION + METRICS + GEOMETRY + GENERATION + FOUR_FACTOR),
    Comparison("toolbox-gaussian", "gaussian", TOOLBOX_GAUSSIAN, TOOLBOX),
    Comparison("toolbox-student_t", "student_t", TOOLBOX_STUDENT_T, TOOLBOX),
)
CURVES = (
    # From D = 3, the true factors' number: below it the code cannot hold the data (the seed's question is
    # what extra dimensions do).
    Curve("dimensions", DIMENSIONS, "model.latent_dim", DIMENSION_CURVES, trend_from=3),
    Curve("betas", BETAS, "model.beta", BETA_CURVES),
)
