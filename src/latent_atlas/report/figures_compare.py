"""Static figures for the AE-versus-VAE comparison: error distributions, worst cases, code density, factor correlations.

Every function builds and returns a ``matplotlib.figure.Figure`` directly (no pyplot state); save it
with ``fig.savefig(path)``. Models keep one colour across figures, in the order they are given.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from .figures_latent import show_heatmap

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
MARKERS = {"mean": "-", "median": "--", "p99": ":"}


def _colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


def error_histograms(errors_by_model: Mapping[str, np.ndarray], bins: int = 60) -> Figure:
    """Overlaid histograms (shared bins, log counts) of per-image Frobenius errors; mean, median and p99 as lines."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    values = {name: np.asarray(e, dtype=np.float64).ravel() for name, e in errors_by_model.items()}
    edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=bins)
    for i, (name, errors) in enumerate(values.items()):
        colour = _colour(i)
        ax.hist(errors, bins=edges, histtype="step", linewidth=1.5, color=colour, label=name)
        marks = {"mean": errors.mean(), "median": np.median(errors), "p99": np.percentile(errors, 99)}
        for stat, value in marks.items():
            ax.axvline(value, color=colour, linestyle=MARKERS[stat], linewidth=1)
    for stat, style in MARKERS.items():
        ax.plot([], [], color="grey", linestyle=style, label=stat)
    ax.set_yscale("log")
    ax.set_xlabel("Frobenius reconstruction error per test image")
    ax.set_ylabel("images")
    ax.set_title("Reconstruction error on the test split")
    ax.legend(fontsize="small")
    return fig


def worst_examples_figure(
    originals: np.ndarray,
    reconstructions_by_model: Mapping[str, np.ndarray],
    indices_by_model: Mapping[str, np.ndarray],
    errors_by_model: Mapping[str, np.ndarray],
    extent: float = 3.0,
) -> Figure:
    """Two rows per model, original above reconstruction, one column per worst image (titled with its error).

    ``originals`` (N, H, W) and each model's reconstructions and errors are row-aligned; the indices
    point into them.
    """
    models = list(indices_by_model)
    columns = max((len(indices_by_model[m]) for m in models), default=1) or 1
    fig = Figure(figsize=(1.4 * columns + 0.8, 2.9 * len(models)), layout="constrained")
    grid = fig.subplots(2 * len(models), columns, squeeze=False)
    for m, model in enumerate(models):
        top, bottom = grid[2 * m], grid[2 * m + 1]
        indices = np.asarray(indices_by_model[model], dtype=int)
        for c in range(columns):
            if c >= len(indices):
                top[c].set_axis_off()
                bottom[c].set_axis_off()
                continue
            i = indices[c]
            show_heatmap(top[c], originals[i], extent)
            show_heatmap(bottom[c], reconstructions_by_model[model][i], extent)
            top[c].set_title(f"error {float(errors_by_model[model][i]):.2f}", fontsize="small")
        top[0].set_ylabel(f"{model}\noriginal", fontsize="small")
        bottom[0].set_ylabel(f"{model}\nreconstruction", fontsize="small")
    fig.suptitle("Worst test reconstructions")
    return fig


def density_figure(nn_distances_by_model: Mapping[str, np.ndarray], bins: int = 60) -> Figure:
    """Histograms of standardised nearest-neighbour distances (left) and their cumulative distributions (right)."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    hist_ax, cdf_ax = fig.subplots(1, 2)
    values = {name: np.sort(np.asarray(d, dtype=np.float64).ravel()) for name, d in nn_distances_by_model.items()}
    pooled = np.concatenate(list(values.values()))
    edges = np.linspace(0.0, np.percentile(pooled, 99.5), bins + 1)
    for i, (name, distances) in enumerate(values.items()):
        colour = _colour(i)
        median = float(np.median(distances))
        hist_ax.hist(distances, bins=edges, histtype="step", linewidth=1.5, color=colour, density=True,
                     label=f"{name} (median {median:.3f})")
        hist_ax.axvline(median, color=colour, linestyle="--", linewidth=1)
        cdf_ax.plot(distances, np.arange(1, len(distances) + 1) / len(distances), color=colour, label=name)
    hist_ax.set_xlabel("distance to nearest other code / RMS distance to centroid")
    hist_ax.set_ylabel("density")
    hist_ax.set_title("How tightly the codes pack")
    hist_ax.legend(fontsize="small")
    cdf_ax.set_xscale("log")
    cdf_ax.set_xlabel("standardised nearest-neighbour distance (log)")
    cdf_ax.set_ylabel("fraction of codes")
    cdf_ax.set_title("Cumulative distribution")
    return fig


def correlation_heatmap(table: Mapping, title: str = "") -> Figure:
    """A ``factor_correlations`` table: |Spearman| per latent axis (rows) and factor (columns), values printed."""
    values = np.asarray(table["abs_spearman"], dtype=np.float64)  # (D, K)
    latents, factors = table["latent_names"], table["factor_names"]
    fig = Figure(figsize=(1.1 * len(factors) + 2.2, 0.6 * len(latents) + 1.6), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        ax.text(column, row, f"{value:.2f}", ha="center", va="center",
                color="black" if value > 0.6 else "white", fontsize="small")
    ax.set_xticks(range(len(factors)), factors)
    ax.set_yticks(range(len(latents)), latents)
    ax.set_xlabel("factor")
    ax.set_ylabel("latent axis")
    fig.colorbar(image, ax=ax, label="|Spearman|")
    ax.set_title(title or "Latent axes versus factors")
    return fig
