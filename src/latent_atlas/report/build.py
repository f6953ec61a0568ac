"""Assemble the study's report from the study folder: figures (PNG beside it and inline), interactive plots,
and every number quoted from a JSON file with its source.

Each section is a function that adds its figures to ``ReportBuilder.fig`` and returns nothing; the template
lays them out and quotes the numbers. A section whose data the study did not compute is left out.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from markupsafe import Markup

from .. import __version__
from ..analysis.paths import LatentPath
from ..io import read_json, write_json, write_text
from ..models.inference import reconstruct
from ..training.run import load_run
from .figures_compare import correlation_heatmap, density_figure, error_histograms, worst_examples_figure
from .figures_data import reconstruction_examples, sample_grid, training_curves
from .figures_latent import embedding_grid, image_strip, path_overlay, projection_grid, scatter3d
from .html import FigureStore, NumberSources, inline_figure, json_pretty, plotly_js
from .study_files import RunRow, StudyFiles
from .verdicts import comparison_sentence, mean_interval

REPORT_FILE = "report.html"
FIGURES_DIR = "figures"
MANIFEST_PREFIX = "_section-"
COVARIANCE = ("var_x", "var_y", "rho")
MODELS = ("vae", "ae")
PATH_TITLES = {
    "line_rho_axis": "Straight line along the correlation axis",
    "line_var_diff_axis": "Straight line along the variance-difference axis",
    "arc": "Angular traversal",
    "isovariance": "Convex hull along the isovariance strip",
    "bounding_upper": "Upper bounding plane",
    "bounding_lower": "Lower bounding plane",
    "hull_perturbations": "Random perturbations of points on the convex hull",
    "interpolation": "Interpolation between two images",
    "arithmetic": "Latent arithmetic",
}
JUDGED_PATHS = ("isovariance", "bounding_upper", "bounding_lower")
VALIDITY_TITLES = {
    "reconstructions": "reconstructions of the test images",
    "empty_regions": "decodes of uniform hull points (all distance bins)",
    "tail_paths": "decodes along the tail-to-tail paths",
    "gaussian_sampler": "decodes of a Gaussian fitted to each model's own codes",
    "mixture_sampler": "decodes of a Gaussian mixture fitted to each model's own codes",
}


def condition_label(condition: str, requested: Any) -> str:
    """How a requested condition is named in the report: "heavy tails", "rho = 0.3" (never "-0")."""
    return f"{requested} tails" if condition == "df" else f"{condition} = {float(requested) + 0.0:g}"



def section_manifest(section: str) -> str:
    """Where a section's figure manifest is, relative to the study folder."""
    return f"{FIGURES_DIR}/{MANIFEST_PREFIX}{section}.json"

class ReportBuilder:
    """Draws the report's figures section by section (each section can run as its own task), then renders the
    HTML from the manifests the sections left in the figures folder."""

    def __init__(self, root: Path, results: dict[str, Any]):
        self.root = Path(root)
        self.files = StudyFiles(root, results)
        self.sources = NumberSources(root)
        self.figures = FigureStore(self.root / FIGURES_DIR)

    # -- helpers ------------------------------------------------------------------------------------------

    def png(self, key: str, figure, alt: str, dpi: int | None = None) -> None:
        self.figures.png(key, figure, alt, dpi=dpi)

    def representatives(self, data: str) -> dict[str, RunRow]:
        return {model: row for model in MODELS if (row := self.files.representative(data, model)) is not None}

    def _strip(self, key: str, arrays: dict[str, np.ndarray], prefix: str, extent: float, title: str) -> None:
        factors = arrays[f"{prefix}/factors"]
        recovered = {name: factors[:, i] for i, name in enumerate(COVARIANCE)}
        self.png(key, image_strip(arrays[f"{prefix}/images"].astype(np.float32), recovered=recovered,
                                  valid=arrays[f"{prefix}/valid"], extent=extent, title=title),
                 f"{title}: decoded images, the oracle's recovered factors under them, invalid ones framed in red")

    # -- sections -----------------------------------------------------------------------------------------

    def data_section(self) -> None:
        for data in self.files.datasets:
            dataset = self.files.dataset(data)
            self.png(f"{data}/samples", sample_grid(dataset), f"Sample {data} heatmaps")

    def oracle_section(self) -> None:
        from .figures_evidence import benchmark_detection, benchmark_roc, threshold_examples

        for data in self.files.datasets:
            oracle = self.files.oracle(data)
            extent = self.files.dataset(data).config.extent
            self.png(f"{data}/benchmark-roc", benchmark_roc(oracle),
                     f"{data}: ROC of the shape residual per corruption kind, and Youden's J over the candidate "
                     "thresholds with the operating point and the band the benchmark cannot tell from it")
            self.png(f"{data}/benchmark-detection", benchmark_detection(oracle),
                     f"{data}: fraction of each corruption grade flagged at the operating point")
            self.png(f"{data}/benchmark-examples", threshold_examples(self.files.oracle_examples(data), extent),
                     f"{data}: benchmark images just below (green) and just above (red) the shape threshold")

    def training_section(self) -> None:
        histories = {row.run: self.files.history(row) for row in self.files.rows if "core" in row.groups}
        self.png("training", training_curves(histories), "Loss curves of every core run (all seeds)")

    def reconstruction_section(self) -> None:
        for data in self.files.datasets:
            shown = self.representatives(data)
            dataset = self.files.dataset(data)
            test_images = dataset.images[dataset.test_idx]
            index = np.sort(np.random.default_rng(1).choice(len(test_images), size=min(10, len(test_images)),
                                                            replace=False))
            errors, reconstructions, worst = {}, {}, {}
            for row in shown.values():
                errors[row.run] = self.files.evaluation(row)["frobenius"]
                worst[row.run] = np.asarray(self.files.analysis(row, "reconstruction")["worst_test_positions"])
                picked = np.unique(np.concatenate([index, worst[row.run]]))
                images = reconstruct(load_run(self.files.root / row.run_dir).load_model(), test_images[picked])
                full = np.zeros_like(test_images)
                full[picked] = images
                reconstructions[row.run] = full
            self.png(f"{data}/reconstructions", reconstruction_examples(test_images, reconstructions, index,
                                                                       dataset.config.extent),
                     f"{data}: random test images and their reconstructions (seed {self.files.first_seed})")
            self.png(f"{data}/errors", error_histograms(errors),
                     f"{data}: per-image Frobenius error on the test split (seed {self.files.first_seed})")
            self.png(f"{data}/worst", worst_examples_figure(test_images, reconstructions, worst, errors,
                                                            dataset.config.extent),
                     f"{data}: the worst test reconstructions of each model (seed {self.files.first_seed})")
            self.comparison_figure(f"compare-{data}", f"{data}/seeds-reconstruction",
                                   ("test_frobenius_mean", "test_frobenius_p99", "tail_ratio",
                                    "covariance_distance_median", "reconstructions_valid"),
                                   f"{data}: reconstruction over training seeds (points: seeds, joined by seed; bar: "
                                   "mean and 95 % t interval)")

    def comparison_figure(self, aggregate: str, key: str, names: tuple[str, ...], alt: str) -> None:
        from .figures_evidence import seed_comparison

        data = self.files.aggregate(aggregate)
        if data is None:
            return
        entries = {name: data["quantities"][name] for name in names if name in data["quantities"]}
        if entries:
            self.png(key, seed_comparison(entries, data["models"]), alt)

    def evidence_section(self) -> None:
        from ..study.aggregates import validity_arrays
        from .figures_evidence import residual_ecdfs, validity_vs_threshold

        for data in self.files.datasets:
            evidence = self.files.aggregate(f"evidence-{data}")
            if not evidence:
                continue
            threshold = evidence["operating_point"]
            band = [b * threshold for b in evidence["band"]]
            for name in evidence["comparisons"]:
                groups = {}
                for model in MODELS:
                    samples = {}
                    for row in self.files.runs(data, model):
                        arrays = validity_arrays(self.files.root, row.run_dir, name)
                        if arrays is not None:
                            samples[row.seed] = {"shape_residual": arrays[0], "in_range": arrays[1]}
                    groups[model.upper()] = samples
                what = VALIDITY_TITLES[name]
                self.png(f"{data}/ecdf-{name}", residual_ecdfs(groups, threshold, band, title=f"{data}: {what}"),
                         f"{data}: ECDF of the shape residual of {what} (thin: one line per seed; thick: pooled)")
                self.png(f"{data}/curve-{name}", validity_vs_threshold(groups, threshold, band,
                                                                        title=f"{data}: {what}"),
                         f"{data}: in-distribution valid fraction of {what} as the shape threshold varies "
                         "(operating point and the plausible band marked)")

    def latent_section(self) -> None:
        for data in self.files.datasets:
            for row in self.representatives(data).values():
                latents = self.files.latents(row)
                structure = self.files.analysis(row, "latent_structure")
                colour_by = ("df", "rho", "var_diff", "var_x", "var_y") if "df" in latents.factor_names else (
                    "rho", "var_diff", "var_x", "var_y")
                self.figures.interactive(f"{row.run}/scatter3d", scatter3d(latents, color_by=colour_by),
                                         f"{row.run}: the codes in 3-D; the menu switches the colouring factor")
                self.png(f"{row.run}/projections", projection_grid(latents),
                         f"{row.run}: 2-D projections of the codes, coloured by each factor", dpi=72)
                self.png(f"{row.run}/axes", correlation_heatmap(structure["axes_association"],
                                                                title=f"{row.run}: |Spearman|"),
                         f"{row.run}: association of each latent axis with each factor")
            nn = {row.run: self.files.arrays(row, "latent_structure")["nn_distances"]
                  for row in self.representatives(data).values()}
            if nn:
                self.png(f"{data}/density", density_figure(nn),
                         f"{data}: nearest-neighbour distances between codes on a common scale (seed "
                         f"{self.files.first_seed})")
            self.comparison_figure(f"compare-{data}", f"{data}/seeds-geometry",
                                   ("density_median", "density_tail_ratio", "empty_volume_common"),
                                   f"{data}: density of the codes over training seeds")

    def directions_section(self) -> None:
        from .figures_evidence import null_drift

        shown = self.representatives("gaussian")
        extent = self.files.dataset("gaussian").config.extent if "gaussian" in self.files.datasets else 3.0
        for row in shown.values():
            if not self.files.has_analysis(row, "exploration"):
                continue
            exploration = self.files.analysis(row, "exploration")
            arrays = self.files.arrays(row, "exploration")
            axes = exploration["axes"]
            overlay = [LatentPath(name, arrays[f"{name}/points"], "") for name in
                       ("line_rho_axis", "line_var_diff_axis", "arc", "isovariance") if f"{name}/points" in arrays]
            self.png(f"{row.run}/overlay", path_overlay(self.files.latents(row), overlay,
                                                        axes=(axes["var_diff"], axes["rho"]), color_by="rho"),
                     f"{row.run}: the paths over the codes, projected on the variance-difference and correlation axes")
            for name in exploration["paths"]:
                self._strip(f"{row.run}/path/{name}", arrays, name, extent,
                            f"{row.run}: {PATH_TITLES.get(name, name)}")
        for name in JUDGED_PATHS:
            judged = {row.run: self.files.analysis(row, "exploration")["paths"][name]["against_null"]
                      for row in self.files.runs("gaussian") if self.files.has_analysis(row, "exploration")
                      and name in self.files.analysis(row, "exploration")["paths"]}
            if judged:
                self.png(f"gaussian/null-{name}", null_drift(judged, PATH_TITLES[name]),
                         f"{PATH_TITLES[name]}: drift of what should stay fixed and change of what should change, "
                         "against null paths from the same start (5-95 % range and median), every run")

    def holes_section(self) -> None:
        from .figures_evidence import distance_validity, tail_validity

        if "gaussian" not in self.files.datasets:
            return
        rows = [row for row in self.files.runs("gaussian") if self.files.has_analysis(row, "empty_regions")]
        if rows:
            by_model = {m.upper(): {r.seed: self.files.analysis(r, "empty_regions") for r in rows if r.model == m}
                        for m in MODELS}
            self.png("gaussian/distance-validity", distance_validity(by_model),
                     "In-distribution valid fraction of decodes against the distance from the nearest code, in each "
                     "model's median code spacing (left) and, for the VAE, in posterior standard deviations (right); "
                     "points: seeds, line: mean over seeds, band: Wilson interval")
            for row in self.representatives("gaussian").values():
                arrays = self.files.arrays(row, "empty_regions")
                n = len(arrays["farthest_index"])
                self.png(f"{row.run}/farthest", image_strip(arrays["farthest_images"].astype(np.float32),
                                                            valid=arrays["points/valid"][arrays["farthest_index"]],
                                                            extent=3.0, title=f"{row.run}: the {n} hull points "
                                                            "farthest from every code"),
                         f"{row.run}: decodes of the hull points farthest from every code")
        tails = [row for row in self.files.runs("gaussian") if self.files.has_analysis(row, "tail_paths")]
        if tails:
            pointwise = {m.upper(): {r.seed: self.files.analysis(r, "tail_paths")["validity"]["pointwise"]
                                     for r in tails if r.model == m} for m in MODELS}
            self.png("gaussian/tail-validity", tail_validity(pointwise),
                     "Valid fraction at each position along the tail-to-tail paths (the same image pairs for every "
                     "model and seed)")
        self.comparison_figure("compare-gaussian", "gaussian/seeds-holes",
                               tuple(f"empty_valid_bin{i}" for i in range(5)) + ("tail_paths_valid",),
                               "Validity far from the codes over training seeds")

    def four_factor_section(self) -> None:
        from .figures_evidence import knn_band

        if "student_t" not in self.files.datasets:
            return
        rows = [row for row in self.files.runs("student_t") if self.files.has_analysis(row, "knn_df")]
        baselines_path = self.files.dataset_analysis_path("student_t", "knn_baselines")
        if rows and baselines_path:
            baselines = self.sources.data(baselines_path)
            knn = {m.upper(): {r.seed: self.files.analysis(r, "knn_df") for r in rows if r.model == m} for m in MODELS}
            if not baselines.get("skipped"):
                self.png("student_t/knn-band", knn_band(knn, baselines),
                         "KNN prediction of the heavy-tailed class, overall and on the ambiguous band, with bootstrap "
                         "intervals; lines: the best any classifier of the covariance alone can do")

    def metrics_section(self) -> None:
        for data in self.files.datasets:
            self.comparison_figure(f"compare-{data}", f"{data}/seeds-metrics",
                                   ("mig", "dci_lasso_d", "dci_trees_d", "dci_trees_i", "explicitness"),
                                   f"{data}: disentanglement scores over training seeds")

    def dimension_section(self) -> None:
        from .figures_sections import kl_spectrum, norm_profiles, sampler_curves, setting_curves

        curves = self.files.aggregate("dimensions")
        if not curves:
            return
        self.png("dimensions/curves", setting_curves(curves, ("test_frobenius_mean", "negative_elbo", "active_units",
                                                              "kl_q_p", "kl_p_q", "prior_vs_posterior_auc")),
                 "The VAE against its latent dimension: reconstruction, active units, the KL between the aggregate "
                 "posterior and the prior both ways, and how well a classifier tells prior draws from posterior draws "
                 "(points: seeds; band: 95 % t interval over seeds)")
        self.png("dimensions/samplers", sampler_curves(curves),
                 "Each sampler's decodes against the latent dimension: in-distribution valid fraction and factor-space "
                 "AUC (0.5 = the samples' factors are distributed like the data's)")
        seed = self.files.config.dimensions.seeds[0]
        rows = {r.settings.get("model.latent_dim", self.files.config.model.latent_dim): r
                for r in self.files.runs("gaussian", "vae", group="dimensions", seed=seed)}
        generation = {dim: self.files.analysis(rows[dim], "generation") for dim in sorted(rows)
                      if self.files.has_analysis(rows[dim], "generation")}
        if generation:
            shown = sorted(generation)
            picked = {dim: generation[dim] for dim in dict.fromkeys((shown[0], shown[len(shown) // 2], shown[-1]))}
            self.png("dimensions/norms", norm_profiles(picked),
                     f"The soap bubble made visible (seed {seed}): norms of prior draws, aggregate-posterior draws and "
                     "codes against the prior's chi distribution")
            self.png("dimensions/kl-spectrum", kl_spectrum(generation),
                     f"KL per latent unit, sorted, at each latent dimension (seed {seed}): units near 0 have collapsed")
        largest = rows.get(max(rows)) if rows else None
        if largest is not None and self.files.has_analysis(largest, "embeddings"):
            views = self.files.analysis(largest, "embeddings")["methods"]
            if views:
                arrays = self.files.arrays(largest, "embeddings")
                self.png("dimensions/embeddings", embedding_grid(self.files.latents(largest),
                                                                 {m: arrays[m] for m in views}, arrays["index"]),
                         f"{largest.run}: its {max(rows)}-D codes embedded in 2-D by {', '.join(views)}", dpi=72)

    def toolbox_section(self) -> None:
        from .figures_sections import (
            anomaly_auroc,
            attribute_effects,
            clustering_scores,
            imputation_errors,
            setting_curves,
        )

        self.conditional_part()

        betas = self.files.aggregate("betas")
        if betas:
            self.png("toolbox/betas", setting_curves(betas, tuple(betas["quantities"]), log_x=True),
                     "The beta trade-off: reconstruction, KL, active units (posterior collapse), the continuous-factor "
                     "metrics and valid prior decodes against beta (points: seeds; band: 95 % t interval)")
        shown = self.representatives("gaussian")
        per_model = {name: {model.upper(): self.files.analysis(row, name) for model, row in shown.items()
                            if self.files.has_analysis(row, name)}
                     for name in ("anomaly", "imputation", "attributes")}
        if per_model["anomaly"]:
            self.png("toolbox/anomaly", anomaly_auroc({m: a["detection"] for m, a in per_model["anomaly"].items()}),
                     f"AUROC of each anomaly score for each known anomaly kind (seed {self.files.first_seed}); the "
                     "oracle's shape residual is the reference")
        if per_model["imputation"]:
            self.png("toolbox/imputation", imputation_errors(per_model["imputation"]),
                     f"Imputation (seed {self.files.first_seed}): error on the missing pixels and in the recovered "
                     "factors, for the start fill, iterated encode-decode and the optimised code")
        if per_model["attributes"]:
            self.png("toolbox/attributes", attribute_effects(per_model["attributes"]),
                     f"Attribute vectors (seed {self.files.first_seed}): change of the intended factor and drift of the "
                     "others, against random directions of the same length")
        clustering = {row.run: self.files.analysis(row, "clustering") for data in self.files.datasets
                      for row in self.representatives(data).values() if self.files.has_analysis(row, "clustering")}
        if clustering:
            self.png("toolbox/clustering", clustering_scores(clustering),
                     f"Clustering the codes (seed {self.files.first_seed}) against df and binned factors: ARI, beside "
                     "the same on the true factors and on pixels")

    def conditional_part(self) -> None:
        """The CVAE runs of the toolbox: match fraction per requested condition over seeds, and for the first
        toolbox seed a row of decoded samples per condition."""
        from .figures_sections import conditional_match, conditional_samples

        rows = [row for row in self.files.runs(model="cvae", group="toolbox")
                if self.files.has_analysis(row, "conditional_generation")]
        if not rows:
            return
        self.png("toolbox/cvae-match", conditional_match(
            {row.run: self.files.analysis(row, "conditional_generation") for row in rows},
            seeds={row.run: f"{row.seed} ({row.data})" for row in rows}),
            "CVAE: fraction of prior draws whose recovered factor matches the requested condition, per seed with "
            "95 % Wilson intervals, beside the data's base rate")
        first_seed = self.files.config.toolbox.seeds[0]
        for row in rows:
            if row.seed != first_seed:
                continue
            result, arrays = self.files.analysis(row, "conditional_generation"), self.files.arrays(
                row, "conditional_generation")
            condition = result["condition"]
            images = {condition_label(condition, level["requested"]): arrays[f"{i}/images"]
                      for i, level in enumerate(result["levels"])}
            self.png(f"toolbox/cvae-samples-{row.data}",
                     conditional_samples(images, self.files.dataset(row.data).config.extent,
                                         f"{row.run}: the same prior draws decoded at each requested {condition}"),
                     f"{row.run}: decoded samples, one row per requested {condition}", dpi=72)

    SECTIONS = ("data_section", "oracle_section", "training_section", "reconstruction_section", "evidence_section",
                "latent_section", "directions_section", "holes_section", "four_factor_section", "metrics_section",
                "dimension_section", "toolbox_section")

    def draw_section(self, section: str) -> dict[str, dict[str, str]]:
        """Draw one section's figures into the figures folder; returns (and saves) its manifest."""
        if section not in self.SECTIONS:
            raise ValueError(f"unknown report section {section!r}")
        getattr(self, section)()
        write_json(self.root / section_manifest(section), self.figures.manifest)
        return self.figures.manifest

    def render(self) -> str:
        """The HTML, with every figure the sections' manifests list inlined."""
        fig: dict[str, Markup] = {}
        for section in self.SECTIONS:
            manifest = read_json(self.root / section_manifest(section), what="figure manifest")
            fig.update({key: inline_figure(self.root / FIGURES_DIR, entry) for key, entry in manifest.items()})
        environment = jinja2.Environment(
            loader=jinja2.PackageLoader("latent_atlas", "report/templates"),
            autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
            undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        )
        files, sources = self.files, self.sources
        return environment.get_template("report.html.j2").render(
            version=__version__,
            generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            files=files,
            config=files.config,
            config_json=json_pretty(files.config.to_dict()),
            fig=fig,
            num=sources.num,
            get=sources.get,
            verdict=lambda path, name, fmt=".3f": comparison_sentence(
                sources, path, name, sources.data(path)["quantities"][name], fmt),
            interval=lambda path, key, fmt=".3f": mean_interval(sources, path, key, fmt),
            path_titles=PATH_TITLES,
            judged_paths=JUDGED_PATHS,
            validity_titles=VALIDITY_TITLES,
            plotly_js=plotly_js(),
        )


def build_report(root: str | Path, results: dict[str, Any]) -> Path:
    """Draw every section and write ``report.html`` (self-contained) into the study folder, in this process."""
    root = Path(root)
    for section in ReportBuilder.SECTIONS:
        ReportBuilder(root, results).draw_section(section)
    return write_report_html(root, results)


def write_report_html(root: str | Path, results: dict[str, Any]) -> Path:
    """Render the report from the figures the sections drew; returns its path."""
    root = Path(root)
    path = root / REPORT_FILE
    write_text(path, ReportBuilder(root, results).render())
    return path
