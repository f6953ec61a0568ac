"""Figures of the data and the training: sample heatmaps, loss curves, reconstructions next to originals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..data import HeatmapDataset
from .figures_latent import show_heatmap


def _factor_label(names: Sequence[str], row: np.ndarray) -> str:
    short = {"var_x": "vx", "var_y": "vy", "rho": "ρ", "df": "df"}
    return " ".join(f"{short.get(n, n)} {v:g}" for n, v in zip(names, np.round(row, 2)))


def sample_grid(dataset: HeatmapDataset, n: int = 16, seed: int = 0) -> Figure:
    """A random sample of the dataset's heatmaps, each titled with its factors."""
    index = np.sort(np.random.default_rng(seed).choice(len(dataset), size=min(n, len(dataset)), replace=False))
    columns = 8
    rows = -(-len(index) // columns)
    fig = Figure(figsize=(1.35 * columns, 1.55 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, i in zip(axes, index):
        show_heatmap(ax, dataset.images[i], dataset.config.extent, _factor_label(dataset.factor_names, dataset.factors[i]))
    for ax in axes[len(index):]:
        ax.set_axis_off()
    fig.suptitle(f"{dataset.config.kind}: {len(index)} of {len(dataset)} heatmaps (x across, y up)")
    return fig


def training_curves(histories: Mapping[str, list[dict[str, float]]]) -> Figure:
    """Training and held-out loss per epoch for each run, and the learning rate."""
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    loss_ax, lr_ax = fig.subplots(1, 2, width_ratios=[2, 1])
    for i, (name, rows) in enumerate(histories.items()):
        epochs = [r["epoch"] for r in rows]
        colour = f"C{i}"
        loss_ax.plot(epochs, [r["train_loss"] for r in rows], "--", color=colour, linewidth=1)
        loss_ax.plot(epochs, [r["val_loss"] for r in rows], "-", color=colour, linewidth=1.5, label=name)
        lr_ax.plot(epochs, [r["learning_rate"] for r in rows], "-", color=colour, label=name)
    losses = [r["val_loss"] for rows in histories.values() for r in rows]
    if losses:
        low = min(losses)
        loss_ax.set_ylim(low - 2, low + 30)
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss per image (nats)")
    loss_ax.set_title("held-out (solid) and training (dashed) loss")
    loss_ax.legend(fontsize="small")
    lr_ax.set_yscale("log")
    lr_ax.set_xlabel("epoch")
    lr_ax.set_title("learning rate")
    return fig


def reconstruction_examples(originals: np.ndarray, reconstructions: Mapping[str, np.ndarray],
                            index: np.ndarray, extent: float = 3.0) -> Figure:
    """Originals in the first row, each model's reconstruction of them below."""
    rows = 1 + len(reconstructions)
    fig = Figure(figsize=(1.3 * len(index) + 0.8, 1.35 * rows), layout="constrained")
    grid = fig.subplots(rows, len(index), squeeze=False)
    for c, i in enumerate(index):
        show_heatmap(grid[0, c], originals[i], extent)
        for r, images in enumerate(reconstructions.values(), start=1):
            show_heatmap(grid[r, c], images[i], extent)
    for r, name in enumerate(["original", *reconstructions]):
        grid[r, 0].set_ylabel(name, fontsize="small")
    return fig
