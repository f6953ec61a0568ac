"""Static figures for the evidence the study computes over training seeds: paired per-seed comparisons, the
corruption benchmark that fixes the shape threshold, threshold-free residual evidence, empty regions by distance,
paths against null paths, tail-to-tail paths and the four-factor KNN.

Every function takes the dicts / arrays exactly as the study writes them (aggregates/*.json, oracle/*.json and
*-examples.npz, runs/*/analysis/*.json|npz, runs/*/evaluation.npz) and returns a ``matplotlib.figure.Figure``
(no pyplot state). Models keep one colour across figures, in the order they are given (``figures_compare``'s
palette). Each plotted artist carries a ``gid`` naming what it shows (``"points/vae"``, ``"threshold"``, ...),
so tests and the report can find it.

A residual *sample* (for :func:`residual_ecdfs` and :func:`validity_vs_threshold`) is either an array of shape
residuals or a mapping with ``"shape_residual"`` and optionally ``"in_range"`` (the oracle verdict's field names,
e.g. ``{"shape_residual": npz["verdict_shape_residual"], "in_range": npz["verdict_in_range"]}``); a group is one
sample or a mapping seed -> sample.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter
from matplotlib.transforms import blended_transform_factory
from scipy.stats import ecdf

from ..analysis.evidence import validity_curve
from ..errors import AtlasError
from .figures_compare import COLOURS
from .figures_latent import show_heatmap

PASS_COLOUR = "#2ca02c"
FAIL_COLOUR = "#d62728"
BAND_COLOUR = "#ff7f0e"
PAIR_COLOUR = "0.65"
NULL_KINDS = {"random_direction": ("random direction", "#7f7f7f"), "code_directed": ("code-directed", "#17becf")}
ROLES = {"fixed": "should stay fixed", "intended": "should change"}
VALID_LABEL = "valid fraction (shape ok and in range)"
RESIDUAL_LABEL = "shape residual ‖image − fit‖ / ‖fit‖ (log)"


def _colour(index: int) -> str:
    return COLOURS[index % len(COLOURS)]


def _seed_order(seed: Any) -> tuple[int, Any]:
    text = str(seed)
    return (0, int(text)) if text.lstrip("-").isdigit() else (1, text)


def _by_seed(values: Mapping) -> list[tuple[str, Any]]:
    """(seed as text, value) in numeric seed order (JSON keys are strings, Python callers may pass ints)."""
    return [(str(seed), values[seed]) for seed in sorted(values, key=_seed_order)]


def _number(value: Any) -> float | None:
    """A finite float, or None for None / NaN / infinity."""
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def _wrap(text: str, width: int) -> str:
    return textwrap.fill(str(text), width, break_long_words=False)


def _threshold(value: Any, name: str = "threshold") -> float:
    number = _number(value)
    if number is None or number <= 0:
        raise AtlasError(f"{name} must be a positive number, got {value!r}")
    return number


def _band(band: Sequence[float] | None) -> tuple[float, float] | None:
    if band is None:
        return None
    if len(band) != 2:
        raise AtlasError(f"band must be (low, high), got {band!r}")
    low, high = _threshold(band[0], "band low"), _threshold(band[1], "band high")
    if low > high:
        raise AtlasError(f"band low must not exceed band high, got {band!r}")
    return low, high


def _mark_threshold(ax, threshold: float, band: tuple[float, float] | None, band_name: str = "plausible band") -> None:
    ax.axvline(threshold, color="black", linestyle="--", linewidth=1, label=f"threshold {threshold:g}",
               gid="threshold")
    if band is not None:
        ax.axvspan(*band, color=BAND_COLOUR, alpha=0.18, linewidth=0,
                   label=f"{band_name} {band[0]:g}–{band[1]:g}", gid="band")


def _log_x(ax, low: float, high: float) -> None:
    """Log x with plain-number labels at 1-2-5 steps (1-only past 2.5 decades), no minor labels."""
    ax.set_xscale("log")
    decades = np.log10(high / low) if low > 0 and high > low else 1.0
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0,) if decades > 2.5 else (1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _whisker(ax, x: float, value: float | None, low: float | None, high: float | None, colour: str, gid: str,
             marker: str = "o", size: float = 4.0, linewidth: float = 1.0) -> None:
    """A point with its interval as a vertical line; None parts are left out."""
    if low is not None and high is not None:
        ax.plot([x, x], [low, high], color=colour, linewidth=linewidth, gid=f"interval/{gid}")
    if value is not None:
        ax.plot([x], [value], marker=marker, linestyle="none", color=colour, markersize=size, gid=f"point/{gid}")


# -- 1. per-seed comparison of the two model kinds -------------------------------------------------------------


def _seed_values(stats: Mapping | None) -> dict[str, float]:
    if not stats:
        return {}
    return {seed: v for seed, value in _by_seed(stats.get("per_seed") or {}) if (v := _number(value)) is not None}


def _y_limits(values: list[float]) -> tuple[float, float]:
    low, high = min(values), max(values)
    span = high - low if high > low else max(abs(high) * 0.2, 0.05)
    return low - 0.3 * span, high + 0.3 * span


def _seed_panel(ax, entry: Mapping, models: Sequence[str]) -> None:
    by_model = entry.get("by_model") or {}
    values = {model: _seed_values(by_model.get(model)) for model in models}
    seeds = sorted({s for per_seed in values.values() for s in per_seed}, key=_seed_order)
    for seed in seeds:
        pairs = [(i, values[m][seed]) for i, m in enumerate(models) if seed in values[m]]
        if len(pairs) >= 2:
            ax.plot(*zip(*pairs), color=PAIR_COLOUR, linewidth=0.8, zorder=1, gid=f"pair/{seed}")
    shown: list[float] = []
    summaries = []
    for i, model in enumerate(models):
        colour, per_seed = _colour(i), values[model]
        if per_seed:
            ax.plot(np.full(len(per_seed), float(i)), list(per_seed.values()), "o", color=colour, markersize=4,
                    zorder=3, gid=f"points/{model}")
            shown.extend(per_seed.values())
        stats = by_model.get(model) or {}
        mean, low, high = _number(stats.get("mean")), _number(stats.get("low")), _number(stats.get("high"))
        if mean is not None:
            shown.append(mean)
            summaries.append((i + 0.25, mean, low, high, colour, model))
    if not shown:
        ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center", va="center", color="0.4")
        bottom, top = 0.0, 1.0
    else:
        bottom, top = _y_limits(shown)
    for x, mean, low, high, colour, model in summaries:
        if low is not None and high is not None:
            ax.plot([x, x], [max(low, bottom), min(high, top)], color=colour, linewidth=3, alpha=0.45,
                    solid_capstyle="butt", gid=f"interval/{model}")
            for end, edge, marker in ((low, bottom, "v"), (high, top, "^")):
                if (end < bottom) if marker == "v" else (end > top):
                    ax.plot([x], [edge], marker=marker, color=colour, markersize=5, clip_on=False,
                            gid=f"clipped/{model}")
        ax.plot([x], [mean], marker="_", color=colour, markersize=12, markeredgewidth=2, gid=f"mean/{model}")
    ax.set_ylim(bottom, top)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
    ax.set_xlim(-0.5, len(models) - 0.25)
    ax.set_xticks(range(len(models)), [model.upper() for model in models])
    better = entry.get("better")
    ax.set_ylabel(f"{better} is better" if better else "", fontsize=7)
    ax.tick_params(labelsize=7)
    paired = entry.get("paired")
    verdict = ((paired or {}).get("verdict") or {}).get("verdict") or "no paired test (a model has no value)"
    if len(verdict) > 34:
        verdict = ",\n".join(_wrap(part, 34) for part in verdict.split(", "))
    ax.set_title(f"{_wrap(entry.get('label', ''), 32)}\n{verdict}", fontsize=7)


def seed_comparison(entries: Mapping[str, Mapping], models: Sequence[str], ncols: int = 4) -> Figure:
    """One small panel per quantity of an aggregate's ``quantities`` (in the given order; ``models`` are the keys
    of their ``by_model``, shown upper-case): each model's per-seed
    values as dots, the same seed joined across models by a thin grey line, the mean over seeds with its t interval
    as a bar beside them (clipped ends marked by a triangle), the paired verdict under the panel's title.

    None values are left out; a single seed shows a dot and its mean without an interval.
    """
    names = list(entries)
    models = list(models)
    if not names or not models:
        raise AtlasError("seed_comparison needs at least one quantity and one model")
    if ncols < 1:
        raise AtlasError(f"ncols must be at least 1, got {ncols!r}")
    known = {model for entry in entries.values() for model in (entry.get("by_model") or {})}
    if known and not known & set(models):
        raise AtlasError(f"none of the models {', '.join(models)} is in the quantities' by_model "
                         f"({', '.join(sorted(known))})")
    columns = min(ncols, len(names))
    rows = -(-len(names) // columns)
    fig = Figure(figsize=(2.35 * columns + 0.2, 2.35 * rows + 0.4), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, name in zip(axes, names):
        _seed_panel(ax, entries[name], models)
    for ax in axes[len(names):]:
        fig.delaxes(ax)
    fig.suptitle("Over training seeds: dots are seeds (grey lines join one seed), bars the mean with its 95 % "
                 "t interval", fontsize="medium")
    return fig


# -- 2-4. the corruption benchmark -------------------------------------------------------------------------------


def _oracle_threshold(oracle: Mapping) -> float:
    return _threshold(oracle.get("shape_threshold", oracle.get("threshold")), "the oracle's shape threshold")


def benchmark_roc(oracle: Mapping) -> Figure:
    """Left: the benchmark's ROC per corruption kind and pooled (AUC in the legend), the operating point circled.
    Right: Youden's J (± one standard error), TPR and FPR over the candidate thresholds (log x), with the chosen
    threshold and the plausible band."""
    missing = [key for key in ("roc", "youden_curve") if not oracle.get(key)]
    if missing:
        raise AtlasError(f"the oracle result lacks {', '.join(missing)}")
    threshold = _oracle_threshold(oracle)
    band = _band(oracle.get("plausible_band"))
    fig = Figure(figsize=(9.5, 3.9), layout="constrained")
    roc_ax, j_ax = fig.subplots(1, 2)
    palette = matplotlib.colormaps["tab20"]
    aucs = oracle.get("auc") or {}
    kinds = [kind for kind in oracle["roc"] if kind != "pooled"]
    roc_ax.plot([0, 1], [0, 1], linestyle=":", color="0.7", linewidth=1)
    for i, kind in enumerate(kinds):
        curve, auc = oracle["roc"][kind], _number(aucs.get(kind))
        roc_ax.plot(curve["fpr"], curve["tpr"], color=palette(i % 20), linewidth=1,
                    label=kind if auc is None else f"{kind} {auc:.3f}", gid=f"roc/{kind}")
    if "pooled" in oracle["roc"]:
        curve, auc = oracle["roc"]["pooled"], _number(aucs.get("pooled"))
        roc_ax.plot(curve["fpr"], curve["tpr"], color="black", linewidth=2,
                    label="pooled" if auc is None else f"pooled {auc:.3f}", gid="roc/pooled")
    point = oracle.get("operating_point")
    if point:
        roc_ax.plot([point["fpr"]], [point["tpr"]], "o", markerfacecolor="none", markeredgecolor="black",
                    markersize=9, label=f"threshold {threshold:g}", gid="operating_point")
    roc_ax.set_xlim(-0.01, 1.01)
    roc_ax.set_ylim(-0.01, 1.01)
    roc_ax.set_xlabel("false positive rate (acceptable images flagged)")
    roc_ax.set_ylabel("true positive rate (corrupt images flagged)")
    roc_ax.set_title("ROC of the shape residual per corruption kind")
    roc_ax.legend(fontsize=6, title="kind, AUC", title_fontsize=6, loc="lower right", ncols=2)

    curve = oracle["youden_curve"]
    grid, j = np.asarray(curve["threshold"], float), np.asarray(curve["youden_j"], float)
    j_ax.plot(grid, curve["tpr"], color=FAIL_COLOUR, linewidth=0.8, label="TPR", gid="tpr")
    j_ax.plot(grid, curve["fpr"], color="#1f77b4", linewidth=0.8, label="FPR", gid="fpr")
    if "se" in curve:
        se = np.asarray(curve["se"], float)
        j_ax.fill_between(grid, j - se, j + se, color="black", alpha=0.15, linewidth=0, gid="youden_se")
    j_ax.plot(grid, j, color="black", linewidth=1.5, marker=".", markersize=3, label="J = TPR − FPR", gid="youden")
    _mark_threshold(j_ax, threshold, band)
    _log_x(j_ax, grid.min(), grid.max())
    j_ax.set_ylim(-0.02, 1.02)
    j_ax.set_xlabel("candidate shape threshold (relative residual, log)")
    j_ax.set_ylabel("rate")
    j_ax.set_title("Youden's J over the candidate thresholds (± 1 se)")
    j_ax.legend(fontsize=6, loc="center left")
    fig.suptitle(f"Corruption benchmark ({oracle.get('family', '')}): the shape threshold is fixed before any model "
                 "is judged", fontsize="medium")
    return fig


def benchmark_detection(oracle: Mapping) -> Figure:
    """The fraction flagged (shape residual above the threshold) of every (kind, grade) cell as a heatmap with the
    value printed; cells acceptable a priori (clean, benign grades) are hatched: they should not be flagged.
    Row labels carry each kind's AUC."""
    cells = oracle.get("cells") or []
    if not cells:
        raise AtlasError("the oracle result has no benchmark cells")
    threshold = _oracle_threshold(oracle)
    kinds = list(dict.fromkeys(cell["kind"] for cell in cells))
    grades = sorted({int(cell["grade"]) for cell in cells})
    rates = np.full((len(kinds), len(grades)), np.nan)  # (K, G)
    acceptable = []
    for cell in cells:
        row, column = kinds.index(cell["kind"]), grades.index(int(cell["grade"]))
        rates[row, column] = np.nan if (value := _number(cell.get("detected"))) is None else value
        if cell.get("label") != "corrupt":
            acceptable.append((row, column))
    fig = Figure(figsize=(1.0 + 0.62 * len(grades) + 1.6, 0.27 * len(kinds) + 1.4), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(rates), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (row, column), value in np.ndenumerate(rates):
        if np.isfinite(value):
            ax.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=6.5,
                    color="black" if value > 0.6 else "white")
    for row, column in acceptable:
        ax.add_patch(Rectangle((column - 0.5, row - 0.5), 1, 1, fill=False, hatch="///", edgecolor="white",
                               linewidth=0, alpha=0.6, gid="acceptable"))
    aucs = oracle.get("auc") or {}
    labels = [kind if (auc := _number(aucs.get(kind))) is None else f"{kind} (AUC {auc:.2f})" for kind in kinds]
    ax.set_yticks(range(len(kinds)), labels, fontsize=7)
    ax.set_xticks(range(len(grades)), [str(g) for g in grades], fontsize=7)
    ax.set_xlabel("severity grade (0: clean, 1: mildest)", fontsize=8)
    fig.colorbar(image, ax=ax, label="fraction flagged", shrink=0.8)
    ax.legend(handles=[Patch(facecolor="0.5", hatch="///", edgecolor="white", label="acceptable a priori")],
              fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    ax.set_title(f"Flagged at threshold {threshold:g}", fontsize=9)
    return fig


def threshold_examples(examples: Mapping[str, np.ndarray], extent: float = 3.0) -> Figure:
    """Benchmark images just below (top row) and just above (bottom row) the shape threshold, nearest first, each
    titled with its kind, grade, a-priori label and shape residual and framed green (passes) or red (fails).

    ``examples``: the ``oracle/<family>-examples.npz`` arrays (``images``, ``shape_residual``, ``kind``,
    ``grade``, ``label``, ``passes``, ``threshold``).
    """
    images = np.asarray(examples["images"])  # (M, H, W)
    residuals = np.asarray(examples["shape_residual"], dtype=np.float64).ravel()
    passes = np.asarray(examples["passes"], dtype=bool).ravel()
    kinds, grades = np.asarray(examples["kind"]).ravel(), np.asarray(examples["grade"]).ravel()
    corrupt = np.asarray(examples["label"], dtype=bool).ravel()
    lengths = {len(images), len(residuals), len(passes), len(kinds), len(grades), len(corrupt)}
    if images.ndim != 3 or len(lengths) != 1:
        raise AtlasError(f"examples must hold M images (M, H, W) and M entries per field, got images {images.shape}")
    if len(images) == 0:
        raise AtlasError("examples hold no images")
    threshold = _threshold(np.asarray(examples["threshold"]).item(), "examples threshold")
    rows = [np.flatnonzero(passes), np.flatnonzero(~passes)]
    columns = max(len(r) for r in rows)
    fig = Figure(figsize=(1.0 * columns + 0.7, 2.85), layout="constrained")
    grid = fig.subplots(2, columns, squeeze=False)
    for r, (members, colour, name) in enumerate(zip(rows, (PASS_COLOUR, FAIL_COLOUR), ("passes", "fails"))):
        for c in range(columns):
            ax = grid[r, c]
            if c >= len(members):
                fig.delaxes(ax)
                continue
            i = members[c]
            title = (f"{kinds[i]}\ngrade {int(grades[i])}, {'corrupt' if corrupt[i] else 'ok'}\n"
                     f"r = {residuals[i]:.4f}")
            show_heatmap(ax, images[i], extent, title)
            ax.title.set_fontsize(6)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(2.5)
            if c == 0:
                sign = "≤" if name == "passes" else ">"
                ax.set_ylabel(f"{name}\n(r {sign} {threshold:g})", fontsize=7, color=colour)
    fig.suptitle(f"Benchmark images either side of the shape threshold {threshold:g} (label: corrupt or ok a priori)",
                 fontsize="medium")
    return fig


# -- 5-6. threshold-free residual evidence -----------------------------------------------------------------------


def _sample(value: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        if isinstance(value, Mapping):
            residual = np.asarray(value["shape_residual"], dtype=np.float64).ravel()
            in_range = value.get("in_range")
        else:
            residual, in_range = np.asarray(value, dtype=np.float64).ravel(), None
    except (KeyError, TypeError, ValueError) as error:
        raise AtlasError(f"{where} is neither an array of shape residuals nor a mapping with a 'shape_residual' "
                         f"array ({error})") from None
    in_range = np.ones(residual.shape, dtype=bool) if in_range is None else np.asarray(in_range).ravel()
    if residual.size == 0 or not np.all(np.isfinite(residual)):
        raise AtlasError(f"residuals of {where} must be a non-empty array of finite numbers, "
                         f"got {residual.size} values")
    if in_range.dtype != bool or in_range.shape != residual.shape:
        raise AtlasError(f"in_range of {where} must be a boolean array of {residual.size} entries, "
                         f"got {in_range.dtype} {in_range.shape}")
    return residual, in_range


def _groups(groups: Mapping[str, Any]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """{group: {seed: (residuals, in_range)}}; a group given as one sample has the single seed ""."""
    if not groups:
        raise AtlasError("need at least one group of residuals")
    out = {}
    for name, value in groups.items():
        if isinstance(value, Mapping) and "shape_residual" not in value:
            if not value:
                raise AtlasError(f"group {name!r} has no seeds")
            out[str(name)] = {seed: _sample(v, f"{name!r} seed {seed}") for seed, v in _by_seed(value)}
        else:
            out[str(name)] = {"": _sample(value, repr(name))}
    return out


def _pooled(seeds: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return (np.concatenate([r for r, _ in seeds.values()]), np.concatenate([v for _, v in seeds.values()]))


def _ecdf_line(ax, residuals: np.ndarray, **style) -> None:
    cdf = ecdf(residuals).cdf
    ax.plot(cdf.quantiles, cdf.probabilities, drawstyle="steps-post", **style)


def residual_ecdfs(groups: Mapping[str, Any], threshold: float, band: Sequence[float] | None = None,
                   title: str = "Shape residuals: empirical CDF") -> Figure:
    """Each group's empirical CDF of shape residuals (``scipy.stats.ecdf``, log x): one thin line per seed and a
    thick line for the seeds pooled (the only line when a group is one sample), the threshold dashed and the
    band of thresholds the verdict is checked over shaded. Groups take the model colours in the order given."""
    threshold, band = _threshold(threshold), _band(band)
    samples = _groups(groups)
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.add_subplot()
    span = [np.inf, threshold]
    for i, (name, seeds) in enumerate(samples.items()):
        colour = _colour(i)
        if len(seeds) > 1:
            for seed, (residuals, _) in seeds.items():
                _ecdf_line(ax, residuals, color=colour, linewidth=0.7, alpha=0.5, gid=f"seed/{name}/{seed}")
        pooled, _ = _pooled(seeds)
        positive = pooled[pooled > 0]
        span = [min(span[0], positive.min() if positive.size else threshold), max(span[1], pooled.max())]
        _ecdf_line(ax, pooled, color=colour, linewidth=2,
                   label=f"{name} (n {pooled.size}, median {np.median(pooled):.3g})", gid=f"group/{name}")
    _mark_threshold(ax, threshold, band, "band checked")
    _log_x(ax, *span)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel(RESIDUAL_LABEL)
    ax.set_ylabel("fraction with residual ≤ x")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6.5, loc="lower right", title="thin: one seed", title_fontsize=6)
    return fig


def validity_vs_threshold(groups: Mapping[str, Any], threshold: float, band: Sequence[float] | None = None,
                          title: str = "Valid fraction over the shape threshold") -> Figure:
    """The valid fraction (residual ≤ t and in range) as a curve over thresholds t from 0.25x to 4x the operating
    point (``evidence.validity_curve``, log x). With several seeds: thin lines per seed, a thick line for their
    mean and the band they span (the seed is the unit: no interval that counts images as independent); a group of
    one sample: its curve with its Wilson 95 % band. The operating point is marked on the thick line."""
    threshold, band = _threshold(threshold), _band(band)
    samples = _groups(groups)
    fig = Figure(figsize=(5.2, 3.6), layout="constrained")
    ax = fig.add_subplot()
    for i, (name, seeds) in enumerate(samples.items()):
        colour = _colour(i)
        curves = [validity_curve(residuals, threshold, in_range) for residuals, in_range in seeds.values()]
        if len(curves) > 1:
            for seed, curve in zip(seeds, curves):
                ax.plot(curve["thresholds"], curve["fraction"], color=colour, linewidth=0.7, alpha=0.5,
                        gid=f"seed/{name}/{seed}")
            fractions = np.array([curve["fraction"] for curve in curves])  # (seeds, thresholds)
            x, line, low, high = curves[0]["thresholds"], fractions.mean(axis=0), fractions.min(axis=0), fractions.max(axis=0)
            at = {"fraction": float(np.mean([c["at_operating_point"]["fraction"] for c in curves])),
                  "text": f"mean of {len(curves)} seeds"}
        else:
            (curve,) = curves
            x, line, low, high = curve["thresholds"], curve["fraction"], curve["low"], curve["high"]
            at = {"fraction": curve["at_operating_point"]["fraction"], "text": f"n {curve['at_operating_point']['n']}"}
        ax.fill_between(x, low, high, color=colour, alpha=0.15, linewidth=0, gid=f"spread/{name}")
        ax.plot(x, line, color=colour, linewidth=2, label=f"{name}: {at['fraction']:.3f} at the threshold ({at['text']})",
                gid=f"group/{name}")
        ax.plot([threshold], [at["fraction"]], "o", color=colour, markersize=5, gid=f"operating/{name}")
    _mark_threshold(ax, threshold, band, "band checked")
    _log_x(ax, min(x), max(x))
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("shape threshold (relative residual, log)")
    ax.set_ylabel(VALID_LABEL)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=6.5, loc="lower right", title="thin: one seed; band: the seeds' range", title_fontsize=6)
    return fig


# -- 7. empty regions by distance from the codes -----------------------------------------------------------------


def _offsets(n: int, width: float) -> np.ndarray:
    return (np.arange(n) - (n - 1) / 2) * (width / max(n, 1))


def _mean_over_seeds(rows: np.ndarray) -> np.ndarray:
    """(B,) mean over seeds (rows) of each bin, ignoring NaN; NaN where no seed has a value."""
    finite = np.isfinite(rows)
    counts = finite.sum(axis=0)
    sums = np.where(finite, rows, 0.0).sum(axis=0)
    return np.divide(sums, counts, out=np.full(rows.shape[1], np.nan), where=counts > 0)


def _distance_panel(ax, runs: Mapping[str, Mapping[str, Mapping]], key: str, colours: Mapping[str, str]) -> str:
    edges = None
    for model, seeds in runs.items():
        for seed, result in seeds.items():
            these = list(result[key]["edges"])
            if edges is None:
                edges, unit = these, result[key].get("unit", "")
            elif these != edges:
                raise AtlasError(f"{key} bin edges differ between runs ({model} seed {seed}: {these} vs {edges})")
    n_bins = len(edges) - 1
    centres = np.arange(n_bins, dtype=np.float64)
    offsets = _offsets(len(runs), 0.5)
    for offset, (model, seeds) in zip(offsets, runs.items()):
        colour, x = colours[model], centres + offset
        seed_offsets = _offsets(len(seeds), 0.12)
        fractions = []
        for jitter, (seed, result) in zip(seed_offsets, _by_seed(seeds)):
            bins = result[key]["bins"]
            fraction = np.array([np.nan if (v := _number(b.get("fraction"))) is None else v for b in bins])
            low = np.array([np.nan if (v := _number(b.get("low"))) is None else v for b in bins])
            high = np.array([np.nan if (v := _number(b.get("high"))) is None else v for b in bins])
            ax.fill_between(x, low, high, color=colour, alpha=0.1, linewidth=0, gid=f"wilson/{model}/{seed}")
            ax.plot(x + jitter, fraction, "o", linestyle="none", color=colour, markersize=3, alpha=0.8,
                    gid=f"seed/{model}/{seed}")
            fractions.append(fraction)
        ax.plot(x, _mean_over_seeds(np.vstack(fractions)), "-", color=colour, linewidth=2, label=model,
                gid=f"mean/{model}")
    outside = sum(int(result[key].get("n_outside") or 0) for seeds in runs.values() for result in seeds.values())
    if outside:
        ax.text(0.99, 0.99, f"{outside} points beyond {edges[-1]:g} left out", transform=ax.transAxes,
                ha="right", va="top", fontsize=6, color="0.35", gid="outside")
    ax.set_xticks(centres, [f"{a:g}–{b:g}" for a, b in zip(edges[:-1], edges[1:])], fontsize=7)
    ax.set_xlim(-0.5, n_bins - 0.5)
    ax.set_ylim(-0.01, 1.01)
    ax.legend(fontsize=7, title="line: mean over seeds", title_fontsize=6, loc="lower left")
    return unit


def distance_validity(by_model_by_seed: Mapping[str, Mapping[Any, Mapping]]) -> Figure:
    """Empty regions: the valid fraction in each bin of nearest-code distance, per seed as dots and as the mean
    over seeds per model (line), each seed's Wilson 95 % interval as a light band. Left: distance in median code
    spacings (``by_spacing``); right, when any run has it: in posterior standard deviations (``by_sigma``, VAE).

    ``by_model_by_seed``: {model: {seed: the run's ``empty_regions.json``}}; None results are left out.
    """
    runs = {model: {seed: r for seed, r in (seeds or {}).items() if r and r.get("by_spacing")}
            for model, seeds in by_model_by_seed.items()}
    runs = {model: seeds for model, seeds in runs.items() if seeds}
    if not runs:
        raise AtlasError("distance_validity needs at least one run's empty_regions result")
    colours = {model: _colour(i) for i, model in enumerate(by_model_by_seed)}
    sigma_runs = {model: {s: r for s, r in seeds.items() if r.get("by_sigma")} for model, seeds in runs.items()}
    sigma_runs = {model: seeds for model, seeds in sigma_runs.items() if seeds}
    panels = [("by_spacing", runs, "in median code spacings")]
    if sigma_runs:
        panels.append(("by_sigma", sigma_runs, "in posterior standard deviations"))
    fig = Figure(figsize=(4.4 * len(panels) + 0.3, 3.5), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (key, subset, title) in zip(axes, panels):
        unit = _distance_panel(ax, subset, key, colours)
        ax.set_xlabel(_wrap(f"distance to the nearest code / {unit}", 45), fontsize=8)
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel(VALID_LABEL)
    fig.suptitle("Empty regions: valid decodes by distance from the codes (dots: seeds; bands: Wilson 95 %)",
                 fontsize="medium")
    return fig


# -- 8. paths against null paths ---------------------------------------------------------------------------------


def _quantities(against_null_by_run: Mapping[str, Mapping | None]) -> list[tuple[str, str]]:
    """(quantity, role) in first-seen order over the runs, fixed ones first."""
    seen: dict[tuple[str, str], None] = {}
    for role in ROLES:
        for result in against_null_by_run.values():
            for name in (result or {}).get(role) or []:
                seen.setdefault((name, role), None)
    return list(seen)


def null_drift(against_null_by_run: Mapping[str, Mapping | None], path: str = "") -> Figure:
    """One panel per quantity of a path (isovariance, bounding planes), one row per run: each null kind's 5–95 %
    range (bar) and median (tick) over null paths of the same length from the same start, and the path's own
    value (black diamond). Quantities meant to stay fixed should sit low among the nulls; intended ones high.

    ``against_null_by_run``: {run: the path's ``against_null`` dict from ``exploration.json``} (None: no result);
    a null kind with ``skipped`` is written as such on its row.
    """
    quantities = _quantities(against_null_by_run)
    if not quantities:
        raise AtlasError("null_drift needs at least one run with an against_null result")
    runs = list(against_null_by_run)
    fig = Figure(figsize=(2.9 * len(quantities) + 1.3, 0.42 * len(runs) + 1.8), layout="constrained")
    axes = fig.subplots(1, len(quantities), sharey=True, squeeze=False)[0]
    row_offsets = dict(zip(NULL_KINDS, (-0.17, 0.17)))
    for ax, (quantity, role) in zip(axes, quantities):
        unit, measure = quantity, ""
        for r, run in enumerate(runs):
            result = against_null_by_run[run] or {}
            path_value = None
            for kind, (label, colour) in NULL_KINDS.items():
                comparison = result.get(kind)
                if comparison is None:
                    continue
                y = r + row_offsets[kind]
                if "skipped" in comparison:
                    ax.text(0.01, y, f"{label} null skipped", transform=blended_transform_factory(ax.transAxes,
                            ax.transData), fontsize=5.5, color=colour, va="center", gid=f"skipped/{kind}/{run}")
                    continue
                stats = (comparison.get(role) or {}).get(quantity)
                if not stats:
                    continue
                unit = (comparison.get("units") or {}).get(quantity, unit)
                measure = stats.get("measure", measure)
                low, high, median = (_number(stats.get(k)) for k in ("null_q05", "null_q95", "null_median"))
                if low is not None and high is not None:
                    ax.plot([low, high], [y, y], color=colour, linewidth=4, alpha=0.6, solid_capstyle="butt",
                            gid=f"null/{kind}/{run}")
                if median is not None:
                    ax.plot([median], [y], "|", color="black", markersize=7, markeredgewidth=1,
                            gid=f"median/{kind}/{run}")
                path_value = path_value if path_value is not None else _number(stats.get("path"))
            if path_value is not None:
                ax.plot([path_value], [r], "D", color="black", markersize=4, gid=f"path/{run}")
        ax.set_title(f"{quantity} {measure}\n({ROLES[role]})", fontsize=8)
        ax.set_xlabel(_wrap(unit, 38), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", color="0.92", linewidth=0.6)
    axes[0].set_yticks(range(len(runs)), runs)
    axes[0].set_ylim(len(runs) - 0.5, -0.5)
    handles = [Patch(color=colour, alpha=0.6, label=f"{label} null 5–95 %") for label, colour in NULL_KINDS.values()]
    handles.append(Line2D([], [], marker="|", color="black", linestyle="none", label="null median"))
    handles.append(Line2D([], [], marker="D", color="black", linestyle="none", markersize=4, label="this path"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7, frameon=False)
    fig.suptitle(f"{path + ' path: ' if path else ''}drift against null paths of the same length", fontsize="medium")
    return fig


# -- 9. tail-to-tail paths ---------------------------------------------------------------------------------------


def tail_validity(pointwise_by_model_by_seed: Mapping[str, Mapping[Any, Sequence[float | None]]]) -> Figure:
    """The fraction of tail-to-tail paths whose decode is valid at each position along the path, per model: one
    thin line per seed, the mean over seeds thick. ``pointwise_by_model_by_seed``: {model: {seed:
    ``tail_paths.json``'s ``validity.pointwise``}}; None entries are gaps, None seeds left out."""
    fig = Figure(figsize=(5.2, 3.4), layout="constrained")
    ax = fig.add_subplot()
    drawn = 0
    for i, (model, seeds) in enumerate(pointwise_by_model_by_seed.items()):
        colour = _colour(i)
        rows = []
        for seed, pointwise in _by_seed(seeds or {}):
            if pointwise is None:
                continue
            values = np.array([np.nan if (v := _number(p)) is None else v for p in pointwise])
            if rows and values.size != rows[0].size:
                raise AtlasError(f"{model}: seed {seed} has {values.size} points per path, another seed "
                                 f"{rows[0].size}")
            if values.size < 2:
                raise AtlasError(f"{model} seed {seed}: a path needs at least 2 points, got {values.size}")
            ax.plot(np.linspace(0, 1, values.size), values, color=colour, linewidth=0.7, alpha=0.5,
                    gid=f"seed/{model}/{seed}")
            rows.append(values)
        if not rows:
            continue
        ax.plot(np.linspace(0, 1, rows[0].size), _mean_over_seeds(np.vstack(rows)), color=colour, linewidth=2.2,
                label=f"{model} (mean of {len(rows)} seed{'s' if len(rows) > 1 else ''})", gid=f"mean/{model}")
        drawn += 1
    if not drawn:
        raise AtlasError("tail_validity needs at least one model with a seed")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("position along the path (0: one var_x − var_y tail, 1: the other)")
    ax.set_ylabel("fraction of paths valid at this point")
    ax.set_title("Tail-to-tail paths: valid decodes along the way", fontsize=10)
    ax.legend(fontsize=7)
    return fig


# -- 10. the four-factor KNN -------------------------------------------------------------------------------------


def _accuracy(result: Mapping | None, subset: str | None) -> tuple[float | None, float | None, float | None]:
    if not result or result.get("skipped"):
        return None, None, None
    if subset is not None:
        result = (result.get("subsets") or {}).get(subset) or {}
    interval = result.get("accuracy_ci") or (None, None)
    return _number(result.get("accuracy")), _number(interval[0]), _number(interval[1])


def knn_band(knn_by_model_by_seed: Mapping[str, Mapping[Any, Mapping]], baselines: Mapping) -> Figure:
    """KNN accuracy for the heavy-tailed class (df = 2) on all test images (left) and on the ambiguous band where
    the covariance leaves df open (right): each model's codes per seed (dots with bootstrap 95 % intervals, the
    mean over seeds as a bar), the true covariance factors and the pixels, and the Bayes ceiling of any
    classifier of the covariance alone (dashed).

    ``knn_by_model_by_seed``: {model: {seed: the run's ``knn_df.json``}}; ``baselines``: the dataset's
    ``knn_baselines.json``.
    """
    models = list(knn_by_model_by_seed)
    band = baselines.get("band") or {}
    features = [(name, label) for name, label in (("factors", "true factors"), ("pixels", "pixels"))
                if baselines.get(name)]
    labels = [f"{model}\ncodes" for model in models] + [label for _, label in features]
    panels = [(None, "all test images", band.get("n"), band.get("bayes_ceiling")),
              ("band", "ambiguous band", band.get("n_band"), band.get("bayes_ceiling_band"))]
    fig = Figure(figsize=(1.6 * len(labels) + 1.2, 3.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    shown: list[float] = []
    for ax, (subset, title, n, ceiling) in zip(axes, panels):
        for i, model in enumerate(models):
            colour, seeds = _colour(i), _by_seed(knn_by_model_by_seed[model] or {})
            values = []
            for jitter, (seed, result) in zip(_offsets(len(seeds), 0.4), seeds):
                value, low, high = _accuracy(result, subset)
                _whisker(ax, i + jitter, value, low, high, colour, f"{model}/{seed}")
                values.extend(v for v in (value, low, high) if v is not None)
            means = [a for _, r in seeds if (a := _accuracy(r, subset)[0]) is not None]
            if means:
                ax.plot([i - 0.3, i + 0.3], [np.mean(means)] * 2, color=colour, linewidth=2, alpha=0.7,
                        gid=f"mean/{model}")
            shown.extend(values)
        for j, (name, _) in enumerate(features):
            value, low, high = _accuracy(baselines[name], subset)
            _whisker(ax, len(models) + j, value, low, high, "0.25", name, marker="s")
            shown.extend(v for v in (value, low, high) if v is not None)
        ceiling = _number(ceiling)
        if ceiling is not None:
            ax.axhline(ceiling, color="black", linestyle="--", linewidth=1,
                       label=f"Bayes ceiling, covariance only: {ceiling:.3f}", gid="ceiling")
            shown.append(ceiling)
            ax.legend(fontsize=6.5, loc="lower left")
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlim(-0.6, len(labels) - 0.4)
        ax.set_title(title + (f" (n {n})" if n is not None else ""), fontsize=9)
    bottom = min(shown) if shown else 0.5
    axes[0].set_ylim(max(0.0, bottom - 0.05), 1.01)
    axes[0].set_ylabel("test accuracy (bootstrap 95 % interval)")
    rule = {"heavy": " (df = 2 where the seed's rule holds)", "light": " (df = 2 where the seed's rule fails)"}
    fig.suptitle("KNN for df = 2: codes against the true factors and the pixels"
                 + rule.get(baselines.get("df_rule_gives"), ""), fontsize="medium")
    return fig
