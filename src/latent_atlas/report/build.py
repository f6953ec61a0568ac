"""Assemble the study's report: figures (PNG beside it and inline), interactive plots, numbers from the files."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
from markupsafe import Markup

from .. import __version__
from ..io import write_text
from ..training.history import read_history
from ..training.run import HISTORY_FILE
from .figures_compare import (
    correlation_heatmap,
    density_figure,
    error_histograms,
    knn_figure,
    valid_fraction_figure,
    worst_examples_figure,
)
from .figures_data import (
    dimension_figure,
    reconstruction_examples,
    sample_grid,
    training_curves,
)
from .figures_latent import (
    embedding_grid,
    image_strip,
    path_overlay,
    projection_grid,
    scatter3d,
)
from .html import FigureStore, NumberSources, json_pretty, plotly_div, plotly_js

if TYPE_CHECKING:
    from ..study.pipeline import DatasetStudy, StudyResult

REPORT_FILE = "report.html"
COVARIANCE_FACTORS = ("var_x", "var_y", "rho")
PATH_TITLES = {
    "line_rho_axis": "Straight line along the correlation axis",
    "line_var_diff_axis": "Straight line along the variance-difference axis",
    "arc": "Angular traversal",
    "isovariance": "Convex hull along the isovariance strip",
    "bounding_upper": "Upper bounding plane",
    "bounding_lower": "Lower bounding plane",
    "hull_perturbations": "Random perturbations of points on the convex hull",
    "empty_region": "Across the empty region between the tails",
    "interpolation": "Interpolation between two images",
    "arithmetic": "Latent arithmetic",
}


class RunNumbers:
    """Template access to one run's files: ``m`` quotes metrics.json, ``a`` quotes analysis.json."""

    def __init__(self, sources: NumberSources, name: str):
        self.name = name
        self._sources = sources
        self.metrics_file = f"runs/{name}/metrics.json"
        self.analysis_file = f"runs/{name}/analysis.json"

    def m(self, key: str, fmt: str = ".3f") -> Markup:
        return self._sources.num(self.metrics_file, key, fmt)

    def a(self, key: str, fmt: str = ".3f") -> Markup:
        return self._sources.num(self.analysis_file, key, fmt)

    def get(self, key: str, default: Any = None) -> Any:
        value = self._sources.get(self.analysis_file, key)
        return self._sources.get(self.metrics_file, key, default) if value is None else value


def _strip(figures: FigureStore, name: str, path, extent: float, title: str) -> Markup:
    reading = path.reading
    recovered = {n: reading.factor(n) for n in COVARIANCE_FACTORS}
    return figures.png(image_strip(path.images, recovered=recovered, valid=reading.valid, extent=extent, title=title),
                       name, f"{title}: decoded images, the oracle's recovered factors under them, invalid ones in red")


def _dataset_figures(figures: FigureStore, study: DatasetStudy, out: dict[str, Markup]) -> None:
    kind, dataset = study.kind, study.dataset
    extent = dataset.config.extent
    out[f"{kind}/samples"] = figures.png(sample_grid(dataset), f"{kind}-samples", f"Sample {kind} heatmaps")
    runs = study.runs
    test_images = dataset.images[dataset.test_idx]
    shown = np.sort(np.random.default_rng(1).choice(len(test_images), size=min(10, len(test_images)), replace=False))
    out[f"{kind}/reconstructions"] = figures.png(
        reconstruction_examples(test_images, {n: a.reconstructions for n, a in runs.items()}, shown, extent),
        f"{kind}-reconstructions", f"Random {kind} test images and their reconstructions")
    out[f"{kind}/errors"] = figures.png(error_histograms({n: a.errors for n, a in runs.items()}), f"{kind}-errors",
                                       "Per-image Frobenius reconstruction error on the test split")
    worst = {n: np.asarray(a.results["reconstruction"]["worst_test_positions"]) for n, a in runs.items()}
    out[f"{kind}/worst"] = figures.png(
        worst_examples_figure(test_images, {n: a.reconstructions for n, a in runs.items()}, worst,
                              {n: a.errors for n, a in runs.items()}, extent),
        f"{kind}-worst", "The worst test reconstructions of each model")
    out[f"{kind}/density"] = figures.png(density_figure({n: a.nn_distances for n, a in runs.items()}),
                                        f"{kind}-density", "Nearest-neighbour distances between codes, common scale")
    for name, analysis in runs.items():
        latents = analysis.latents
        colour_by = ("df", "rho", "var_diff", "var_x", "var_y") if "df" in latents.factor_names else (
            "rho", "var_diff", "var_x", "var_y")
        paths = [p.path for p in analysis.paths if p.name in ("isovariance", "empty_region", "bounding_upper", "bounding_lower")]
        out[f"{name}/scatter3d"] = plotly_div(scatter3d(latents, color_by=colour_by, paths=paths),
                                             f"{name}: the codes in 3-D; the menu switches the colouring factor")
        out[f"{name}/projections"] = figures.png(projection_grid(latents), f"{name}-projections",
                                                f"{name}: 2-D projections of the codes, coloured by each factor",
                                                dpi=72)
        out[f"{name}/axes"] = figures.png(
            correlation_heatmap(analysis.results["latent"]["axes_association"], title=f"{name}: |Spearman|"),
            f"{name}-axes", f"{name}: association of each latent axis with each factor")
        for path in analysis.paths:
            title = f"{name}: {PATH_TITLES.get(path.name, path.name)}"
            out[f"{name}/path/{path.name}"] = _strip(figures, f"{name}-path-{path.name}", path, extent, title)
        if analysis.paths:
            axes = analysis.results["exploration"]["axes"]
            shown_paths = [p.path for p in analysis.paths if p.name in
                           ("line_rho_axis", "line_var_diff_axis", "arc", "isovariance", "empty_region")]
            out[f"{name}/overlay"] = figures.png(
                path_overlay(latents, shown_paths, axes=(axes["var_diff"], axes["rho"]), color_by="rho"),
                f"{name}-overlay", f"{name}: the paths over the codes, projected on the variance-difference and "
                "correlation axes")
            for region in ("empty_points", "prior_points"):
                decoded = getattr(analysis, region)
                order = np.argsort(decoded.distance)[::-1][:12]
                subset = type(decoded)(path=decoded.path, images=decoded.images[order],
                                       reading=_take(decoded.reading, order), distance=decoded.distance[order])
                label = "empty regions (farthest from codes first)" if region == "empty_points" else "the prior"
                out[f"{name}/{region}"] = _strip(figures, f"{name}-{region}", subset, extent,
                                                 f"{name}: decodes from {label}")
    for name, analysis in {**runs, **study.sweep}.items():
        if analysis.embeddings:
            out[f"{name}/embeddings"] = figures.png(
                embedding_grid(analysis.latents, analysis.embeddings, analysis.embedding_index), f"{name}-embeddings",
                f"{name}: {analysis.latents.latent_dim}-D codes embedded in 2-D by {', '.join(analysis.embeddings)}",
                dpi=72)
    if study.sweep:
        analyses = {**runs, **study.sweep}
        out[f"{kind}/sweep"] = figures.png(
            dimension_figure({dim: analyses[name].results for dim, name in vaes_by_dimension(study)}),
            f"{kind}-sweep", "The effect of the latent dimension on the VAE (test split; prior decodes)")
    if any(a.paths for a in runs.values()):
        fractions = {
            region: {n: a.results["exploration"]["valid_decodes"][region] for n, a in runs.items()}
            for region in ("empty_regions", "along_paths", "prior")
        }
        out[f"{kind}/valid"] = figures.png(valid_fraction_figure(fractions), f"{kind}-valid",
                                          "Fraction of decoded images that are valid heatmaps, with 95 % Wilson intervals")
    if study.knn_baselines:
        results = {n: {**a.knn, **study.knn_baselines} for n, a in runs.items()}
        out[f"{kind}/knn"] = figures.png(knn_figure(results), f"{kind}-knn",
                                        "KNN prediction of heavy tails (df) with 95 % bootstrap intervals")


def vaes_by_dimension(study: DatasetStudy) -> list[tuple[int, str]]:
    """(latent dimension, run name) of the dataset's VAEs, the sweep's and the main one, when a sweep was run."""
    if not study.sweep:
        return []
    analyses = {**study.runs, **study.sweep}
    return sorted({a.latents.latent_dim: name for name, a in analyses.items() if a.kind == "vae"}.items())


def _take(reading, order):
    return type(reading)(factors=reading.factors[order], factor_names=reading.factor_names,
                         residual=reading.residual[order], valid=None if reading.valid is None else reading.valid[order])


def build_report(result: StudyResult) -> Path:
    """Write ``report.html`` (self-contained) and ``figures/*.png`` into the study folder; returns the report path."""
    output = result.output
    figures = FigureStore(output / "figures")
    sources = NumberSources(output)
    rendered: dict[str, Markup] = {}
    histories = {name: read_history(run.path / HISTORY_FILE) for name, run in result.runs.items()}
    rendered["training"] = figures.png(training_curves(histories), "training", "Loss curves of every run")
    for study in result.datasets.values():
        _dataset_figures(figures, study, rendered)
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("latent_atlas", "report/templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = environment.get_template("report.html.j2")
    html = template.render(
        version=__version__,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        config=result.config,
        config_json=json_pretty(result.config.to_dict()),
        datasets=result.datasets,
        sweep_runs=vaes_by_dimension(result.datasets["gaussian"]) if "gaussian" in result.datasets else [],
        runs={name: RunNumbers(sources, name) for name in result.runs},
        run_kinds={name: run.kind for name, run in result.runs.items()},
        results=lambda key, fmt=".3f": sources.num("results.json", key, fmt),
        result_value=lambda key, default=None: sources.get("results.json", key, default),
        fig=rendered,
        path_titles=PATH_TITLES,
        plotly_js=plotly_js(),
    )
    path = output / REPORT_FILE
    write_text(path, html)
    return path
