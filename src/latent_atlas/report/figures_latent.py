"""Figures of the latent space: projections coloured by factor, decoded image strips, paths, an interactive 3-D view.

Matplotlib functions build and return a ``matplotlib.figure.Figure`` directly (no pyplot state); ``scatter3d``
returns a compact ``plotly.graph_objects.Figure`` (plotly.js is embedded once by the report).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..analysis.latents import LatentCodes
from ..analysis.paths import LatentPath
from ..errors import AtlasError

IMAGE_STYLE = dict(origin="lower", cmap="viridis", vmin=0, vmax=1)
FACTOR_COLOURMAPS = {"rho": "coolwarm", "var_diff": "PuOr"}
PATH_COLOURS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2")
INVALID_COLOUR = "#d62728"
MAX_POINTS = 5000  # codes drawn in a static scatter: enough to show the manifold, small enough for a light PNG


def show_heatmap(ax, image: np.ndarray, extent: float, title: str = "") -> None:
    """One heatmap in the project's style: x across, y up (row 0 at the bottom), values 0..1, no ticks."""
    ax.imshow(image, extent=[-extent, extent, -extent, extent], **IMAGE_STYLE)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def _path_colour(index: int) -> str:
    return PATH_COLOURS[index % len(PATH_COLOURS)]


def _draw_order(n: int, seed: int = 0) -> np.ndarray:
    """A fixed shuffle, so that no factor value is always painted on top of the others (and a fair subsample)."""
    return np.random.default_rng(seed).permutation(n)


def _pca_view(codes: np.ndarray, n_components: int = 3):
    """(view of the codes, function mapping more points into that view): PCA when D > n_components."""
    if codes.shape[1] <= n_components:
        return codes, lambda points: np.asarray(points, dtype=np.float64)
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, random_state=0).fit(codes)
    return pca.transform(codes), lambda points: pca.transform(np.asarray(points, dtype=np.float64))


def projection_grid(latents: LatentCodes, factors: Sequence[str] = ("var_x", "var_y", "rho", "var_diff"),
                    axis_pairs: Sequence[tuple[int, int]] | None = None, max_points: int = MAX_POINTS) -> Figure:
    """The codes projected on pairs of latent axes (rows), coloured by each factor (columns), as in the seed's "2D".

    Without ``axis_pairs`` every pair of the first three axes is shown; for D > 3 they are the first three
    principal components of the codes (labelled PC), not raw axes.
    """
    codes = np.asarray(latents.codes, dtype=np.float64)
    if axis_pairs is None:
        view, _ = _pca_view(codes)
        label = "PC" if codes.shape[1] > 3 else "z"
        axis_pairs = [(a, b) for a in range(view.shape[1]) for b in range(a + 1, view.shape[1])]
    else:
        view, label = codes, "z"
        for pair in axis_pairs:
            if len(pair) != 2 or not all(0 <= a < codes.shape[1] for a in pair):
                raise AtlasError(f"axis pair {pair} is not two latent axes in 0..{codes.shape[1] - 1}")
    values = {name: latents.factor(name) for name in factors}
    order = _draw_order(len(codes))[:max_points]
    fig = Figure(figsize=(3.0 * len(factors), 2.7 * len(axis_pairs) + 0.6), layout="constrained")
    # A row shows one axis pair: its panels share both axes. A column shows one factor: one colour bar under it.
    axes = fig.subplots(len(axis_pairs), len(factors), squeeze=False, sharex="row", sharey="row")
    for col, name in enumerate(factors):
        for row, (a, b) in enumerate(axis_pairs):
            ax = axes[row, col]
            points = ax.scatter(view[order, a], view[order, b], c=values[name][order], s=2, linewidths=0,
                                cmap=FACTOR_COLOURMAPS.get(name, "viridis"), rasterized=True)
            ax.set_xlabel(f"{label}{a}")
            if col == 0:
                ax.set_ylabel(f"{label}{b}")
        axes[0, col].set_title(name)
        fig.colorbar(points, ax=axes[:, col], location="bottom", shrink=0.85, aspect=25)
    return fig


def embedding_grid(latents: LatentCodes, embeddings: Mapping[str, np.ndarray], index: np.ndarray,
                   factors: Sequence[str] = ("var_x", "var_y", "rho", "var_diff")) -> Figure:
    """2-D embeddings of the codes (rows: PCA, t-SNE, UMAP, ...), coloured by each factor (columns).

    ``embeddings`` maps a method name to (M, 2) coordinates of the codes ``index`` (M,).
    """
    index = np.asarray(index)
    for method, points in embeddings.items():
        if np.shape(points) != (len(index), 2):
            raise AtlasError(f"embedding {method!r} has shape {np.shape(points)}, expected ({len(index)}, 2)")
    values = {name: latents.factor(name)[index] for name in factors}
    order = _draw_order(len(index))
    fig = Figure(figsize=(3.3 * len(factors), 3.0 * len(embeddings)), layout="constrained")
    axes = fig.subplots(len(embeddings), len(factors), squeeze=False)
    for row, (method, points) in enumerate(embeddings.items()):
        for col, name in enumerate(factors):
            ax = axes[row, col]
            shown = ax.scatter(points[order, 0], points[order, 1], c=values[name][order], s=3, linewidths=0,
                               cmap=FACTOR_COLOURMAPS.get(name, "viridis"), rasterized=True)
            fig.colorbar(shown, ax=ax, shrink=0.85)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(method)
            if row == 0:
                ax.set_title(name)
    return fig


def image_strip(images: np.ndarray, recovered: Mapping[str, np.ndarray] | None = None, title: str = "",
                extent: float = 3.0, true_factors: Mapping[str, np.ndarray] | None = None,
                valid: np.ndarray | None = None) -> Figure:
    """Decoded images in a row; under them one panel per recovered factor, a curve along the strip.

    ``true_factors`` (same keys) are drawn dashed beside the recovered ones; ``valid`` (n,) bool frames the
    images that are not valid heatmaps in red and crosses their points on the curves.
    """
    images = np.asarray(images)
    if images.ndim != 3 or len(images) == 0:
        raise AtlasError(f"image_strip needs a non-empty (n, H, W) stack, got shape {images.shape}")
    n = len(images)
    recovered = dict(recovered or {})
    true_factors = dict(true_factors or {})
    for name, values in {**recovered, **true_factors}.items():
        if np.shape(values) != (n,):
            raise AtlasError(f"factor curve {name!r} has shape {np.shape(values)}, expected ({n},)")
    invalid = np.zeros(n, dtype=bool) if valid is None else ~np.asarray(valid, dtype=bool)
    fig = Figure(figsize=(max(6.0, 1.05 * n), 1.3 + 1.25 * len(recovered) + (0.3 if title else 0)),
                 layout="constrained")
    grid = fig.add_gridspec(1 + len(recovered), 1, height_ratios=[1.0] + [0.95] * len(recovered))
    # All images in one axes, image i in the cell [i - 0.5, i + 0.5] (so it sits above step i of the curves):
    # one axes instead of n keeps the layout cheap.
    strip = fig.add_subplot(grid[0, 0])
    half = 0.45
    for i, image in enumerate(images):
        strip.imshow(image, extent=[i - half, i + half, -half, half], interpolation="nearest", **IMAGE_STYLE)
        if invalid[i]:
            strip.add_patch(Rectangle((i - half, -half), 2 * half, 2 * half, fill=False, edgecolor=INVALID_COLOUR,
                                      linewidth=2))
    strip.set_xlim(-0.5, n - 0.5)
    strip.set_ylim(-0.5, 0.5)
    strip.set_aspect("equal")
    strip.set_xticks(np.arange(n) if n <= 30 else np.arange(n)[:: max(1, n // 15)])
    strip.tick_params(axis="x", labelsize=7, length=0, labeltop=True, labelbottom=False)
    strip.set_yticks([])
    for spine in strip.spines.values():
        spine.set_visible(False)
    steps = np.arange(n)
    for row, (name, values) in enumerate(recovered.items(), start=1):
        ax = fig.add_subplot(grid[row, 0])
        ax.plot(steps, values, "o-", color="#1f77b4", markersize=3, linewidth=1.2, label="recovered")
        if name in true_factors:
            ax.plot(steps, true_factors[name], "--", color="grey", linewidth=1, label="true")
            ax.legend(fontsize=7, loc="best")
        if invalid.any():
            ax.plot(steps[invalid], np.asarray(values)[invalid], "x", color=INVALID_COLOUR, markersize=6)
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_xticks(steps if n <= 30 else steps[:: max(1, n // 15)])
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def path_overlay(latents: LatentCodes, paths: Sequence[LatentPath], axes: tuple[int, int] = (0, 2),
                 color_by: str = "rho", max_points: int = MAX_POINTS) -> Figure:
    """The codes projected on two latent axes, coloured by a factor, with each path drawn on top.

    Paths are lines with a square at their start; a path whose ``extras["connected"]`` is False is drawn as points.
    """
    codes = np.asarray(latents.codes, dtype=np.float64)
    a, b = axes
    if a == b or not all(0 <= axis < codes.shape[1] for axis in axes):
        raise AtlasError(f"axes must be two distinct latent axes in 0..{codes.shape[1] - 1}, got {axes}")
    order = _draw_order(len(codes))[:max_points]
    fig = Figure(figsize=(6.4, 5.2), layout="constrained")
    ax = fig.add_subplot()
    background = ax.scatter(codes[order, a], codes[order, b], c=latents.factor(color_by)[order], s=3, alpha=0.35,
                            linewidths=0, cmap=FACTOR_COLOURMAPS.get(color_by, "viridis"), rasterized=True)
    fig.colorbar(background, ax=ax, label=color_by)
    for i, path in enumerate(paths):
        points = np.asarray(path.points)
        colour = _path_colour(i)
        connected = path.extras.get("connected", True)
        ax.plot(points[:, a], points[:, b], "o-" if connected else "o", color=colour, markersize=4, linewidth=1.5,
                label=path.name)
        if connected:
            ax.plot(points[0, a], points[0, b], marker="s", markersize=8, color=colour, markeredgecolor="black")
    ax.set_xlabel(f"z{a}")
    ax.set_ylabel(f"z{b}")
    if paths:
        ax.legend(fontsize=8, loc="best", title="paths (square = start)", title_fontsize=8)
    return fig


def _compact(values: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(values, dtype=np.float64), 4).astype(np.float32)


def scatter3d(latents: LatentCodes, color_by: Sequence[str] = ("rho", "var_diff", "var_x", "var_y"),
              paths: Sequence[LatentPath] = (), max_points: int = 4000, seed: int = 0) -> go.Figure:
    """Interactive 3-D scatter of (a random subsample of) the codes; a dropdown switches the colouring factor.

    Paths are drawn as lines (as points when ``extras["connected"]`` is False). For D > 3 codes and paths share
    one PCA view; for D = 2 the third axis is zero.
    Coordinates are rounded to 4 decimals and stored as float32 so that the embedded figure stays small; the
    colour arrays in the dropdown are plain lists (plotly serialises arrays inside layout arguments as JSON).
    """
    if not color_by:
        raise AtlasError("scatter3d needs at least one factor to colour by")
    codes = np.asarray(latents.codes, dtype=np.float64)
    view, to_view = _pca_view(codes)
    pad = 3 - view.shape[1]
    shown = np.sort(np.random.default_rng(seed).permutation(len(codes))[: int(max_points)])  # (M,)
    xyz = np.pad(view[shown], ((0, 0), (0, pad)))  # (M, 3)
    colours = {name: np.round(latents.factor(name)[shown], 4).tolist() for name in color_by}  # plain JSON lists
    first = color_by[0]
    names = latents.factor_names
    hover = "<br>".join(f"{name}=%{{customdata[{k}]:.2f}}" for k, name in enumerate(names))
    fig = go.Figure(go.Scatter3d(
        x=_compact(xyz[:, 0]), y=_compact(xyz[:, 1]), z=_compact(xyz[:, 2]), mode="markers", name="codes",
        marker=dict(size=2, color=colours[first], colorscale="Viridis", colorbar=dict(title=dict(text=first))),
        customdata=_compact(latents.factors[shown]), hovertemplate=hover + "<extra></extra>",
    ))
    for i, path in enumerate(paths):
        points = np.pad(to_view(path.points), ((0, 0), (0, pad)))
        fig.add_trace(go.Scatter3d(
            x=_compact(points[:, 0]), y=_compact(points[:, 1]), z=_compact(points[:, 2]),
            mode="lines+markers" if path.extras.get("connected", True) else "markers",
            name=path.name, line=dict(color=_path_colour(i), width=5), marker=dict(size=3, color=_path_colour(i)),
            hovertemplate=f"{path.name} %{{pointNumber}}<extra></extra>",
        ))
    buttons = [
        dict(label=name, method="restyle",
             args=[{"marker.color": [colours[name]], "marker.colorbar.title.text": name}, [0]])
        for name in color_by
    ]
    label = "PC" if codes.shape[1] > 3 else "z"
    fig.update_layout(
        updatemenus=[dict(buttons=buttons, direction="down", x=0.0, xanchor="left", y=1.0, yanchor="top")],
        scene=dict(xaxis_title=f"{label}0", yaxis_title=f"{label}1", zaxis_title=f"{label}2"),
        margin=dict(l=0, r=0, t=30, b=0), legend=dict(x=1.0, xanchor="right", y=1.0), height=560,
    )
    return fig
