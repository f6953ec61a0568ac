"""Static figures for the latent-dimension study (curves over a swept setting, samplers, the soap bubble, posterior
collapse) and for the toolbox section (anomaly detection, imputation, clustering, attribute vectors, conditional
generation).

Every function takes the dicts exactly as the study writes them (``aggregates/dimensions.json`` and
``aggregates/betas.json``, and a run's
``analysis/{generation,anomaly,imputation,clustering,attributes,conditional_generation}.json``) and
returns a ``matplotlib.figure.Figure`` (no pyplot state). Models keep one colour across figures, in the order they
are given (``figures_compare``'s palette). Each plotted artist carries a ``gid`` naming what it shows
(``"mean"``, ``"seed/1"``, ``"hist/prior"``, ...), so tests and the report can find it. None (a quantity a run
did not compute, a seed without a value) is left out, never drawn as zero.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, NullFormatter, NullLocator
from matplotlib.transforms import blended_transform_factory

from ..errors import AtlasError
from .figures_evidence import _colour, _number, _offsets, _seed_order, _wrap, _y_limits

SETTING_LABELS = {"model.latent_dim": "latent dimension D", "model.beta": "β, the KL weight (log scale)"}
LOG_SETTINGS = frozenset({"model.beta"})
SAMPLERS = ("prior", "gaussian", "mixture", "two_stage")
SAMPLER_STYLE = {
    "prior": ("prior N(0, I)", "#444444"),
    "gaussian": ("Gaussian fitted to the codes", "#17becf"),
    "mixture": ("Gaussian mixture fitted to the codes", "#9467bd"),
    "two_stage": ("two-stage VAE on the codes", "#ff7f0e"),
}
NORM_SETS = {
    "prior": ("prior draws N(0, I)", "#7f7f7f"),
    "aggregate": ("aggregate-posterior draws q(z)", "#ff7f0e"),
    "codes": ("codes (posterior means)", "#1f77b4"),
}
COLLAPSED_KL_NATS = 0.01
SCORE_LABELS = {
    "reconstruction_error": "reconstruction error",
    "reconstruction_nll": "reconstruction NLL",
    "reconstruction_nll_excess": "reconstruction NLL − floor",
    "negative_elbo": "negative ELBO",
    "negative_elbo_excess": "negative ELBO − floor",
    "latent_density": "latent density (GMM)",
    "latent_density_aggregate": "latent density (q(z))",
    "oracle_shape_residual": "oracle shape residual (reference)",
}
REFERENCE_SCORE = "oracle_shape_residual"
ANOMALY_METRICS = {"auroc": "AUROC", "auprc": "AUPRC"}
IMPUTATION_METHODS = {"start": "start (zeros)", "iterative": "iterative", "optimise": "optimise z"}
MASK_LABELS = {"quadrant": "a quadrant missing", "central_block": "central block missing",
               "random_pixels": "50 % random pixels missing"}
FEATURE_STYLE = {"codes": ("codes", "#9467bd"), "factors": ("true factors", "#2ca02c"),
                 "pixels": ("pixels (PCA)", "#7f7f7f")}
CLUSTER_METHODS = {"kmeans": ("k-means", "o"), "gmm": ("Gaussian mixture", "s")}
CLUSTER_METRICS = {"ari": "adjusted Rand index (0 = chance)", "nmi": "normalised mutual information"}
BAND_NOTE = "line: mean over seeds; band: its 95 % t interval; dots: seeds"
FACTOR_ORDER = ("var_x", "var_y", "rho", "df")
KIND_LABELS = {"student_t_df2": "Student t heatmaps, df = 2"}


def _ordered(names: Sequence[str], preferred: Sequence[str]) -> list[str]:
    """The distinct names, those in ``preferred`` first in its order, then the rest as first seen."""
    distinct = list(dict.fromkeys(names))
    return [name for name in preferred if name in distinct] + [name for name in distinct if name not in preferred]


def _level_order(value: Any) -> float:
    number = _number(value)
    if number is None:
        raise AtlasError(f"a level must be a number, got {value!r}")
    return number


def _nan(value: Any) -> float:
    number = _number(value)
    return np.nan if number is None else number


def _quantity(aggregate: Mapping, name: str) -> Mapping:
    quantities = aggregate.get("quantities")
    if not isinstance(quantities, Mapping):
        raise AtlasError("the aggregate has no 'quantities' (expected aggregates/dimensions.json or betas.json)")
    if name not in quantities:
        raise AtlasError(f"the aggregate has no quantity {name!r}; it has {', '.join(quantities) or 'none'}")
    entry = quantities[name]
    if not isinstance(entry, Mapping) or not isinstance(entry.get("curve"), Sequence):
        raise AtlasError(f"quantity {name!r} has no curve")
    return entry


def _curve(entry: Mapping) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(L,) levels in increasing order, mean, low, high (NaN for None), and seed -> (L,) values."""
    points = sorted(entry["curve"], key=lambda point: _level_order(point.get("level")))
    levels = np.array([_level_order(point["level"]) for point in points])
    mean, low, high = (np.array([_nan(point.get(key)) for point in points]) for key in ("mean", "low", "high"))
    seeds = sorted({str(seed) for point in points for seed in (point.get("per_seed") or {})}, key=_seed_order)
    per_seed = {seed: np.array([_nan({str(s): v for s, v in (point.get("per_seed") or {}).items()}.get(seed))
                                for point in points]) for seed in seeds}
    return levels, mean, low, high, per_seed


def _setting_axis(ax, setting: str, levels: np.ndarray, log_x: bool) -> None:
    if log_x:
        if (levels <= 0).any():
            raise AtlasError(f"a log axis needs positive levels, got {levels.tolist()}")
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_minor_formatter(NullFormatter())
        low, high = levels.min(), levels.max()
        pad = (high / low) ** 0.06 if high > low else 1.5
        ax.set_xlim(low / pad, high * pad)
    else:
        low, high = levels.min(), levels.max()
        pad = 0.05 * (high - low) if high > low else 0.5
        ax.set_xlim(low - pad, high + pad)
    ax.set_xticks(levels, [f"{level:g}" for level in levels])
    ax.set_xlabel(SETTING_LABELS.get(setting, setting), fontsize=7)
    ax.tick_params(labelsize=7)


def _draw_curve(ax, entry: Mapping, colour: str, prefix: str = "", label: str | None = None,
                seed_size: float = 3.5, band_alpha: float = 0.16) -> list[float]:
    """The mean over seeds (line), its interval (band) and the seeds (dots, a thin line per seed); returns the
    values drawn as points (seeds and means) for the axis limits."""
    levels, mean, low, high, per_seed = _curve(entry)
    banded = np.isfinite(low) & np.isfinite(high)
    if banded.any():
        ax.fill_between(levels, np.where(banded, low, 0.0), np.where(banded, high, 0.0), where=banded,
                        color=colour, alpha=band_alpha, linewidth=0, gid=f"{prefix}band")
    for seed, values in per_seed.items():
        kept = np.isfinite(values)
        if kept.any():
            ax.plot(levels[kept], values[kept], marker="o", markersize=seed_size, linestyle="-", linewidth=0.5,
                    color=colour, alpha=0.55, gid=f"{prefix}seed/{seed}")
    kept = np.isfinite(mean)
    if kept.any():
        ax.plot(levels[kept], mean[kept], color=colour, linewidth=2, label=label, gid=f"{prefix}mean")
    shown = [float(v) for values in per_seed.values() for v in values[np.isfinite(values)]]
    return shown + [float(v) for v in mean[kept]]


def _clip_note(ax, entries: Sequence[Mapping], bottom: float, top: float) -> None:
    for entry in entries:
        _, _, low, high, _ = _curve(entry)
        if (low[np.isfinite(low)] < bottom).any() or (high[np.isfinite(high)] > top).any():
            ax.text(0.99, 0.01, "band clipped", transform=ax.transAxes, ha="right", va="bottom", fontsize=5.5,
                    color="0.4", gid="clipped")
            return


def _log_setting(aggregate: Mapping, log_x: bool | None) -> bool:
    return aggregate.get("setting") in LOG_SETTINGS if log_x is None else bool(log_x)


# -- 1. any quantity over the swept setting ---------------------------------------------------------------------


def setting_curves(aggregate: Mapping, names: Sequence[str] | None = None, log_x: bool | None = None,
                   ncols: int = 4) -> Figure:
    """One small panel per quantity of a curves aggregate (``aggregates/dimensions.json`` or ``betas.json``), in
    the order of ``names`` (default: all): the mean over seeds against the setting's levels (line), its 95 % t
    interval (band, clipped to the panel where two seeds make it far wider than the points; "band clipped" then
    says so) and each seed's values (dots joined by a thin line). None values are left out; a quantity without any
    value shows "no values". ``log_x``: None takes a log axis for beta and a linear one otherwise."""
    names = list(aggregate.get("quantities") or {}) if names is None else list(names)
    if not names:
        raise AtlasError("setting_curves needs at least one quantity")
    if ncols < 1:
        raise AtlasError(f"ncols must be at least 1, got {ncols!r}")
    setting = str(aggregate.get("setting", ""))
    entries = [_quantity(aggregate, name) for name in names]
    log_x = _log_setting(aggregate, log_x)
    columns = min(ncols, len(names))
    rows = -(-len(names) // columns)
    fig = Figure(figsize=(2.4 * columns + 0.2, 2.25 * rows + 0.45), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, name, entry in zip(axes, names, entries):
        shown = _draw_curve(ax, entry, _colour(0))
        levels = _curve(entry)[0]
        if levels.size:
            _setting_axis(ax, setting, levels, log_x)
        if shown:
            bottom, top = _y_limits(shown)
            ax.set_ylim(bottom, top)
            _clip_note(ax, [entry], bottom, top)
        else:
            ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center", va="center", color="0.4",
                    gid="empty")
        better = entry.get("better")
        ax.set_ylabel(f"{better} is better" if better else "", fontsize=7)
        ax.set_title(_wrap(entry.get("label") or name, 34), fontsize=7)
        ax.grid(color="0.93", linewidth=0.6)
    for ax in axes[len(names):]:
        fig.delaxes(ax)
    what = SETTING_LABELS.get(setting, setting).split(",")[0].split(" (")[0]
    fig.suptitle(f"Over {what or 'the setting'}: {BAND_NOTE}", fontsize="medium")
    return fig


# -- 2. samplers over the latent dimension -------------------------------------------------------------------------


def sampler_curves(aggregate: Mapping, samplers: Sequence[str] = SAMPLERS, log_x: bool | None = None) -> Figure:
    """Left: each sampler's valid fraction of decoded samples (``<sampler>_valid``); right: its factor-space
    two-sample AUC against the data (``<sampler>_fidelity_auc``; 0.5, marked, is indistinguishable from the data),
    against the setting's levels: the mean over seeds as a line, its t interval as a band (clipped to the panel),
    seeds as dots. Samplers without any value (absent from the aggregate, or all None) are left out."""
    setting = str(aggregate.get("setting", ""))
    quantities = aggregate.get("quantities")
    if not isinstance(quantities, Mapping):
        raise AtlasError("the aggregate has no 'quantities' (expected aggregates/dimensions.json)")
    log_x = _log_setting(aggregate, log_x)
    panels = (("valid", "valid fraction of decoded samples", (-0.02, 1.02)),
              ("fidelity_auc", "factor-space AUC, samples vs data", (0.4, 1.02)))
    fig = Figure(figsize=(8.6, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    all_levels: list[float] = []
    drawn = set()
    for ax, (suffix, ylabel, (bottom, top)) in zip(axes, panels):
        entries = []
        for i, sampler in enumerate(samplers):
            label, colour = SAMPLER_STYLE.get(sampler, (sampler, _colour(i)))
            entry = quantities.get(f"{sampler}_{suffix}")
            if entry is None:
                continue
            shown = _draw_curve(ax, entry, colour, prefix=f"{sampler}/", label=label, seed_size=2.5,
                                band_alpha=0.07)
            if shown:
                drawn.add(sampler)
                entries.append(entry)
                all_levels.extend(_curve(entry)[0].tolist())
                bottom, top = min(bottom, min(shown) - 0.03), max(top, max(shown) + 0.03)
        ax.set_ylim(bottom, top)
        _clip_note(ax, entries, bottom, top)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(color="0.93", linewidth=0.6)
    if not drawn:
        raise AtlasError(f"sampler_curves: none of the samplers {', '.join(samplers)} has a value in the aggregate")
    _setting_axis(axes[0], setting, np.unique(all_levels), log_x)
    _setting_axis(axes[1], setting, np.unique(all_levels), log_x)
    axes[1].axhline(0.5, color="black", linestyle="--", linewidth=1, label="0.5: indistinguishable from the data",
                    gid="chance")
    axes[0].set_title("Are the decoded samples heatmaps at all? (oracle verdict)", fontsize=9)
    axes[1].set_title("Do their factors look like the data's? (lower is better)", fontsize=9)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(handles), 3), fontsize=7, frameon=False)
    fig.suptitle(f"Samplers scored by the oracle ({BAND_NOTE})", fontsize="medium")
    return fig


# -- 3-4. the soap bubble and posterior collapse ---------------------------------------------------------------


def _prior_holes(generation: Mapping | None, key: str) -> Any:
    """``prior_holes[key]`` of a run's generation.json (None for an AE or a missing result)."""
    if not generation:
        return None
    holes = generation.get("prior_holes")
    return None if not holes else holes.get(key)


def _by_dim(generation_by_dim: Mapping[Any, Mapping | None], key: str, dims: Sequence[Any] | None
            ) -> list[tuple[int, Any]]:
    chosen = list(generation_by_dim) if dims is None else list(dims)
    lookup = {int(_level_order(dim)): value for dim, value in generation_by_dim.items()}
    out = []
    for dim in sorted({int(_level_order(d)) for d in chosen}):
        if dim not in lookup:
            raise AtlasError(f"no generation result for latent dimension {dim}; have {sorted(lookup)}")
        value = _prior_holes(lookup[dim], key)
        if value is not None:
            out.append((dim, value))
    return out


def norm_profiles(generation_by_dim: Mapping[Any, Mapping | None], dims: Sequence[Any] | None = None,
                  ncols: int = 3) -> Figure:
    """The soap bubble made visible: one panel per latent dimension (``dims``, default every one given) with the
    density histograms of the norms of prior draws, aggregate-posterior draws and the codes, and the chi(D) density
    of the prior's norm (``prior_holes.norms`` of each run's generation.json). Each set's median norm is a triangle
    on the panel's top edge and a number in its title. The y axis stops at twice the highest prior / chi density,
    so a tall spike of codes does not flatten the shell; "histogram clipped" marks it.

    ``generation_by_dim``: {latent dimension: the run's generation.json}; runs without ``prior_holes`` (an AE) are
    left out.
    """
    profiles = _by_dim(generation_by_dim, "norms", dims)
    if not profiles:
        raise AtlasError("norm_profiles needs at least one run with prior_holes.norms")
    columns = min(ncols, len(profiles))
    rows = -(-len(profiles) // columns)
    fig = Figure(figsize=(2.9 * columns + 0.2, 2.3 * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (dim, norms) in zip(axes, profiles):
        edges = np.asarray(norms["edges"], dtype=np.float64)
        reference = max(max(norms.get("prior") or [0.0]), max(norms.get("chi_density") or [0.0]))
        highest = 0.0
        medians = []
        top_edge = blended_transform_factory(ax.transData, ax.transAxes)
        for name, (label, colour) in NORM_SETS.items():
            if norms.get(name) is None:
                continue
            values = np.asarray(norms[name], dtype=np.float64)
            if values.shape != (len(edges) - 1,):
                raise AtlasError(f"D = {dim}: {name} has {values.size} bins for {len(edges)} edges")
            ax.stairs(values, edges, color=colour, linewidth=1.3, fill=name == "prior",
                      alpha=0.35 if name == "prior" else 1.0, label=label, gid=f"hist/{name}")
            highest = max(highest, float(values.max()))
            median = _number(norms.get(f"median_{name}"))
            if median is not None:
                ax.plot([median], [1.0], marker="v", markersize=6, color=colour, clip_on=False, transform=top_edge,
                        linestyle="none", gid=f"median/{name}")
                medians.append(f"{name} {median:.2f}")
        ax.plot(norms["centres"], norms["chi_density"], color="black", linestyle="--", linewidth=1,
                label="chi(D) density of the prior's norm", gid="chi")
        top = min(highest, 2.0 * reference) if reference > 0 else highest
        if highest > top:
            ax.text(0.99, 0.97, "histogram clipped", transform=ax.transAxes, ha="right", va="top", fontsize=5.5,
                    color="0.4", gid="clipped")
        ax.set_ylim(0, max(top, reference) * 1.08)
        ax.set_xlim(0, edges[-1])
        ax.set_title(f"D = {dim}" + (f"\nmedian ‖z‖: {', '.join(medians)}" if medians else ""), fontsize=7)
        ax.set_xlabel("Euclidean norm ‖z‖", fontsize=7)
        ax.set_ylabel("density", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in axes[len(profiles):]:
        fig.delaxes(ax)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(handles), fontsize=7, frameon=False)
    fig.suptitle("The soap bubble: norms of prior draws, aggregate-posterior draws and codes against chi(D) "
                 "(▼ medians)", fontsize="medium")
    return fig


def kl_spectrum(generation_by_dim: Mapping[Any, Mapping | None], dims: Sequence[Any] | None = None) -> Figure:
    """Posterior collapse made visible: each latent dimension's KL per unit (``prior_holes.kl_per_unit``, the mean
    over the data of KL(q(z_d | x) || N(0, 1)) in nats), sorted from the largest, on a log axis, with the 0.01-nat
    line below which a unit counts as collapsed. Values under 1e-4 nats are drawn at 1e-4 (open marker)."""
    spectra = _by_dim(generation_by_dim, "kl_per_unit", dims)
    if not spectra:
        raise AtlasError("kl_spectrum needs at least one run with prior_holes.kl_per_unit")
    floor = 1e-4
    fig = Figure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.add_subplot()
    palette = matplotlib.colormaps["viridis"]
    highest, lowest = 1.0, COLLAPSED_KL_NATS
    for i, (dim, values) in enumerate(spectra):
        kl = np.sort(np.array([_nan(v) for v in values]))[::-1]
        kl = kl[np.isfinite(kl)]
        if kl.size == 0:
            continue
        colour = palette(i / max(len(spectra) - 1, 1) * 0.9)
        units = np.arange(1, kl.size + 1)
        collapsed = int((kl < COLLAPSED_KL_NATS).sum())
        ax.plot(units, np.maximum(kl, floor), marker="o", markersize=4, color=colour, linewidth=1.4,
                label=f"D = {dim}: total {kl.sum():.2f} nats, {collapsed} collapsed", gid=f"kl/{dim}")
        below = kl < floor
        if below.any():
            ax.plot(units[below], np.full(below.sum(), floor), marker="v", markersize=6, markerfacecolor="white",
                    color=colour, linestyle="none", gid=f"floor/{dim}")
        highest, lowest = max(highest, float(kl.max())), min(lowest, float(kl.min()))
    ax.axhline(COLLAPSED_KL_NATS, color="#d62728", linestyle="--", linewidth=1,
               label=f"{COLLAPSED_KL_NATS:g} nats: collapsed below", gid="collapse")
    ax.set_yscale("log")
    ax.set_ylim(max(floor, min(lowest, COLLAPSED_KL_NATS)) / 2.5, highest * 2.0)
    ax.set_xlabel("latent unit, sorted by its KL (largest first)")
    ax.set_ylabel("KL(q(z_d | x) || N(0, 1)), nats (log)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("KL per latent unit, sorted: units under 0.01 nats have collapsed onto the prior", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper right")
    ax.grid(color="0.93", linewidth=0.6)
    return fig


# -- 5. anomaly detection --------------------------------------------------------------------------------------


def _score_order(names: set[str]) -> list[str]:
    known = [name for name in SCORE_LABELS if name in names and name != REFERENCE_SCORE]
    others = sorted(name for name in names if name not in SCORE_LABELS)
    return known + others + ([REFERENCE_SCORE] if REFERENCE_SCORE in names else [])


def anomaly_auroc(detection_by_model: Mapping[str, Mapping | None], metric: str = "auroc") -> Figure:
    """AUROC (or AUPRC, ``metric="auprc"``) of every anomaly kind (rows) by every score (columns), one heatmap
    per model with the value printed (cells a model has no score for, like the AE's negative ELBO, blank), and the
    oracle's shape residual column framed as the reference. AUROC's colours diverge at 0.5 (chance): red detects,
    blue ranks the anomalies as *more* normal than the normal images.

    ``detection_by_model``: {model: the run's anomaly.json ``detection``} (kind -> score -> metrics); None left out.
    """
    if metric not in ANOMALY_METRICS:
        raise AtlasError(f"unknown metric {metric!r}; choose one of {', '.join(ANOMALY_METRICS)}")
    models = {model: detection for model, detection in detection_by_model.items() if detection}
    if not models:
        raise AtlasError("anomaly_auroc needs at least one model's detection table")
    kinds = list(dict.fromkeys(kind for detection in models.values() for kind in detection))
    kinds.sort(key=lambda kind: kind.startswith("corruption:"))
    scores = _score_order({score for detection in models.values() for table in detection.values() for score in table})
    cmap = matplotlib.colormaps["RdBu_r" if metric == "auroc" else "viridis"].with_extremes(bad="0.88")
    fig = Figure(figsize=(0.72 * len(scores) + 3.2, (0.24 * len(kinds) + 0.35) * len(models) + 1.5),
                 layout="constrained")
    axes = fig.subplots(len(models), 1, squeeze=False)[:, 0]
    for ax, (model, detection) in zip(axes, models.items()):
        values = np.full((len(kinds), len(scores)), np.nan)  # (K, S)
        for row, kind in enumerate(kinds):
            for column, score in enumerate(scores):
                values[row, column] = _nan(((detection.get(kind) or {}).get(score) or {}).get(metric))
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto",
                          gid=f"{metric}/{model}")
        for (row, column), value in np.ndenumerate(values):
            if not np.isfinite(value):
                ax.text(column, row, "n/a", ha="center", va="center", fontsize=5.5, color="0.45",
                        gid=f"missing/{model}/{kinds[row]}/{scores[column]}")
            else:
                dark = (metric == "auroc" and abs(value - 0.5) > 0.35) or (metric == "auprc" and value < 0.35)
                ax.text(column, row, f"{value:.2f}", ha="center", va="center", fontsize=6.5,
                        color="white" if dark else "black", gid=f"value/{model}/{kinds[row]}/{scores[column]}")
        if REFERENCE_SCORE in scores:
            column = scores.index(REFERENCE_SCORE)
            ax.add_patch(Rectangle((column - 0.5, -0.5), 1, len(kinds), fill=False, edgecolor="black", linewidth=2,
                                   gid="reference"))
        ax.set_yticks(range(len(kinds)), [KIND_LABELS.get(kind, kind.replace("corruption:", "corruption: "))
                                          for kind in kinds], fontsize=7)
        ax.set_xticks(range(len(scores)), [_wrap(SCORE_LABELS.get(s, s), 14) for s in scores], fontsize=6.5)
        ax.tick_params(axis="x", top=ax is axes[0], labeltop=ax is axes[0], bottom=False, labelbottom=False)
        ax.set_title(f"{model}", fontsize=9, color=_colour(list(detection_by_model).index(model)))
    fig.colorbar(image, ax=list(axes), label=f"{ANOMALY_METRICS[metric]}"
                 + (" (0.5 = chance)" if metric == "auroc" else ""), shrink=0.9)
    fig.suptitle(f"Anomaly detection: {ANOMALY_METRICS[metric]} per anomaly kind and score (framed: the oracle's "
                 "reference)", fontsize="medium")
    return fig


# -- 6. imputation ---------------------------------------------------------------------------------------------


def _summary_point(summary: Mapping | None) -> tuple[float | None, float | None]:
    """(median, p90) of an ``evaluation.summarize`` dict, None parts where absent."""
    if not summary:
        return None, None
    return _number(summary.get("median")), _number(summary.get("p90"))


def imputation_errors(imputation_by_model: Mapping[str, Mapping | None], factors: Sequence[str] | None = None,
                      methods: Sequence[str] = tuple(IMPUTATION_METHODS)) -> Figure:
    """One column per mask, one row per error: the missing-pixel RMSE and each factor's error of the oracle's
    reading of the completed image (relative for variances, absolute for rho), for each method (start: the
    missing pixels set to zero, the baseline; iterative encode-decode; optimising the code). Per model a dot at the
    median over images and a line up to the 90th percentile (cap). Log y where a row spans over a decade.

    ``imputation_by_model``: {model: the run's imputation.json}; None left out. ``factors``: default all the
    results have.
    """
    models = {model: result for model, result in imputation_by_model.items() if result and result.get("masks")}
    if not models:
        raise AtlasError("imputation_errors needs at least one model's imputation result")
    colours = {model: _colour(i) for i, model in enumerate(imputation_by_model)}
    masks = _ordered([mask for result in models.values() for mask in result["masks"]], tuple(MASK_LABELS))
    if factors is None:
        factors = _ordered([name for result in models.values() for by_method in result["masks"].values()
                            for scores in by_method.values() for name in (scores.get("factor_errors") or {})],
                           FACTOR_ORDER)
    rows = [("missing_rmse", "missing-pixel RMSE")] + [
        (name, f"{name} {'relative' if name.startswith('var') else 'log10 ratio' if name == 'df' else 'absolute'} "
               "error") for name in factors]
    fig = Figure(figsize=(2.75 * len(masks) + 0.5, 1.65 * len(rows) + 0.9), layout="constrained")
    axes = fig.subplots(len(rows), len(masks), squeeze=False, sharex=True)
    offsets = _offsets(len(models), 0.5)
    for r, (key, ylabel) in enumerate(rows):
        row_values: list[float] = []
        for c, mask in enumerate(masks):
            ax = axes[r, c]
            for offset, (model, result) in zip(offsets, models.items()):
                by_method = result["masks"].get(mask) or {}
                for m, method in enumerate(methods):
                    scores = by_method.get(method) or {}
                    summary = scores.get("missing_rmse") if key == "missing_rmse" else (
                        scores.get("factor_errors") or {}).get(key)
                    median, p90 = _summary_point(summary)
                    x = m + offset
                    if median is not None and p90 is not None:
                        ax.plot([x, x], [median, p90], color=colours[model], linewidth=1,
                                gid=f"p90/{model}/{method}")
                        ax.plot([x], [p90], marker="_", markersize=7, color=colours[model],
                                gid=f"cap/{model}/{method}")
                    if median is not None:
                        ax.plot([x], [median], marker="o", markersize=4.5, linestyle="none", color=colours[model],
                                gid=f"median/{model}/{method}")
                    row_values.extend(v for v in (median, p90) if v is not None)
            ax.set_xticks(range(len(methods)), [IMPUTATION_METHODS.get(m, m) for m in methods], fontsize=6.5)
            ax.set_xlim(-0.5, len(methods) - 0.5)
            ax.tick_params(labelsize=6.5)
            ax.grid(axis="y", color="0.93", linewidth=0.6)
            if r == 0:
                ax.set_title(MASK_LABELS.get(mask, mask), fontsize=8)
        positive = [v for v in row_values if v > 0]
        if positive and max(positive) / min(positive) > 10 and len(positive) == len(row_values):
            for ax in axes[r]:
                ax.set_yscale("log")
            ylabel += " (log)"
        axes[r, 0].set_ylabel(_wrap(ylabel, 24), fontsize=7)
        low = [ax.get_ylim()[0] for ax in axes[r]]
        high = [ax.get_ylim()[1] for ax in axes[r]]
        for ax in axes[r]:
            ax.set_ylim(min(low), max(high))
    handles = [Line2D([], [], marker="o", color=colours[model], label=model) for model in models]
    handles.append(Line2D([], [], marker="_", color="0.3", markersize=7, label="line to the 90th percentile"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7, frameon=False)
    fig.suptitle("Imputation: error on the missing pixels and of the factors the oracle reads from the completed "
                 "image (dot: median over images)", fontsize="medium")
    return fig


# -- 7. clustering ---------------------------------------------------------------------------------------------


def clustering_scores(clustering_by_run: Mapping[str, Mapping | None], metric: str = "ari", ncols: int = 2) -> Figure:
    """Agreement (ARI, or NMI with ``metric="nmi"``) of unsupervised clusters with each label set (df; quartile
    bins of var_x, var_y, rho), one panel per label set: for every run, clusters of its codes, of the true
    covariance factors and of the pixels (PCA), by k-means (filled circle) and a Gaussian mixture (open square).
    A run appears in a panel only when it has that label set (df: Student t data only). Panels fill ``ncols``
    columns.

    ``clustering_by_run``: {run: the run's clustering.json}; None left out.
    """
    if metric not in CLUSTER_METRICS:
        raise AtlasError(f"unknown metric {metric!r}; choose one of {', '.join(CLUSTER_METRICS)}")
    runs = {run: result["scores"] for run, result in clustering_by_run.items() if result and result.get("scores")}
    if not runs:
        raise AtlasError("clustering_scores needs at least one run's clustering result")
    features = [f for f in FEATURE_STYLE if any(f in scores for scores in runs.values())]
    features += sorted({f for scores in runs.values() for f in scores} - set(features))
    label_sets = _ordered([label for scores in runs.values() for by_label in scores.values() for label in by_label],
                          ("df", *(f"{name}_bins" for name in FACTOR_ORDER)))
    methods = _ordered([m for scores in runs.values() for by_label in scores.values() for by_method in by_label.values()
                        for m in by_method], tuple(CLUSTER_METHODS))
    if ncols < 1:
        raise AtlasError(f"ncols must be at least 1, got {ncols!r}")
    columns = min(ncols, len(label_sets))
    rows = -(-len(label_sets) // columns)
    fig = Figure(figsize=(min(1.6 + 0.7 * len(runs), 4.4) * columns + 0.5, 2.6 * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, columns, sharey=True, squeeze=False).ravel()
    for ax in axes[len(label_sets):]:
        fig.delaxes(ax)
    axes = axes[: len(label_sets)]
    slots = _offsets(len(features) * len(methods), 0.8)
    shown: list[float] = []
    for ax, label_set in zip(axes, label_sets):
        members = [run for run, scores in runs.items() if any(label_set in scores.get(f, {}) for f in features)]
        for i, run in enumerate(members):
            for f, feature in enumerate(features):
                _, colour = FEATURE_STYLE.get(feature, (feature, _colour(f)))
                by_method = (runs[run].get(feature) or {}).get(label_set) or {}
                for m, method in enumerate(methods):
                    value = _number((by_method.get(method) or {}).get(metric))
                    if value is None:
                        continue
                    marker = CLUSTER_METHODS.get(method, (method, "D"))[1]
                    ax.plot([i + slots[f * len(methods) + m]], [value], marker=marker, markersize=5,
                            linestyle="none", color=colour, markerfacecolor=colour if m == 0 else "white",
                            gid=f"{metric}/{run}/{feature}/{method}")
                    shown.append(value)
        ax.set_xticks(range(len(members)), [_wrap(run, 12) for run in members], fontsize=6.5)
        ax.set_xlim(-0.6, len(members) - 0.4)
        ax.axhline(0.0, color="0.6", linewidth=0.8, gid="chance")
        n_classes = next((by_method[m].get("n_clusters") for run in members for f in features
                          if (by_method := (runs[run].get(f) or {}).get(label_set)) for m in by_method), None)
        title = "df (2 or 200)" if label_set == "df" else label_set.replace("_bins", " quantile bins")
        ax.set_title(title + (f", k = {n_classes}" if n_classes else ""), fontsize=8)
        ax.grid(axis="y", color="0.93", linewidth=0.6)
    low = min(shown + [0.0])
    axes[0].set_ylim(min(-0.05, low - 0.05), 1.02)
    for ax in axes[::columns]:
        ax.set_ylabel(_wrap(CLUSTER_METRICS[metric], 24), fontsize=7)
    handles = [Line2D([], [], marker="o", linestyle="none", color=FEATURE_STYLE.get(f, (f, _colour(i)))[1],
                      label=FEATURE_STYLE.get(f, (f,))[0]) for i, f in enumerate(features)]
    handles += [Line2D([], [], marker=CLUSTER_METHODS.get(m, (m, "D"))[1], linestyle="none", color="0.3",
                       markerfacecolor="0.3" if i == 0 else "white", label=CLUSTER_METHODS.get(m, (m,))[0])
                for i, m in enumerate(methods)]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7, frameon=False)
    fig.suptitle("Clustering against the known labels: the codes beside the true factors and the pixels",
                 fontsize="medium")
    return fig


# -- 8. attribute vectors --------------------------------------------------------------------------------------


def attribute_effects(attributes_by_model: Mapping[str, Mapping | None]) -> Figure:
    """Is each factor's code direction selective? One panel per factor: for each model the direction's |slope|
    (how far the intended factor moves per unit step, in its SDs; 1 is the direction's promise) against the
    others' drift (mean |change| of the other factors per unit step), as a filled marker; the random directions of
    the same length (the null) as an open marker at their median drift and median |slope|, with a line up to their
    95th percentile of |slope|. Selective directions sit high and left, above their null's line; the dotted
    diagonal is |slope| = drift (selectivity 0.5).

    ``attributes_by_model``: {model: the run's attributes.json} (``evaluation.factors``); None left out.
    """
    models = {model: ((result or {}).get("evaluation") or {}).get("factors") for model, result in
              attributes_by_model.items()}
    models = {model: factors for model, factors in models.items() if factors}
    if not models:
        raise AtlasError("attribute_effects needs at least one model's attributes result")
    colours = {model: _colour(i) for i, model in enumerate(attributes_by_model)}
    factors = _ordered([name for by_factor in models.values() for name in by_factor], FACTOR_ORDER)
    fig = Figure(figsize=(2.9 * len(factors) + 0.4, 3.4), layout="constrained")
    axes = fig.subplots(1, len(factors), squeeze=False)[0]
    for ax, factor in zip(axes, factors):
        top = 1.0
        right = 0.1
        lines = []
        for model, by_factor in models.items():
            entry = by_factor.get(factor)
            if not entry:
                continue
            colour = colours[model]
            slope, drift = _number(entry.get("slope")), _number(entry.get("others_drift"))
            null = entry.get("null") or {}
            null_slope, null_p95 = _number(null.get("abs_slope_median")), _number(null.get("abs_slope_p95"))
            null_drift = _number(null.get("others_drift_median"))
            if null_slope is not None and null_drift is not None:
                if null_p95 is not None:
                    ax.plot([null_drift, null_drift], [null_slope, null_p95], color=colour, linewidth=1,
                            alpha=0.7, gid=f"null_p95/{model}")
                    ax.plot([null_drift], [null_p95], marker="_", markersize=8, color=colour, gid=f"null_cap/{model}")
                ax.plot([null_drift], [null_slope], marker="o", markersize=6, markerfacecolor="white",
                        color=colour, linestyle="none", gid=f"null/{model}")
                top, right = max(top, null_p95 or null_slope), max(right, null_drift)
            if slope is not None and drift is not None:
                ax.plot([drift], [abs(slope)], marker="D", markersize=6, color=colour, linestyle="none",
                        gid=f"direction/{model}")
                top, right = max(top, abs(slope)), max(right, drift)
            selectivity, null_selectivity = _number(entry.get("selectivity")), _number(null.get("selectivity_median"))
            if selectivity is not None:
                lines.append(f"{model}: selectivity {selectivity:.2f}"
                             + (f" (null {null_selectivity:.2f})" if null_selectivity is not None else ""))
        limit = max(top, right) * 1.12
        ax.plot([0, limit], [0, limit], linestyle=":", color="0.6", linewidth=0.8, gid="diagonal")
        ax.axhline(1.0, color="0.75", linewidth=0.8, gid="promise")
        ax.set_xlim(0, right * 1.15)
        ax.set_ylim(0, top * 1.12)
        ax.set_title(f"direction of {factor}", fontsize=9)
        ax.set_xlabel(_wrap("drift of the other factors per unit step (SDs)", 34), fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(color="0.93", linewidth=0.6)
        if lines:
            ax.text(0.98, 0.03, "\n".join(lines), transform=ax.transAxes, ha="right", va="bottom", fontsize=6,
                    gid="selectivity")
    axes[0].set_ylabel(_wrap("|change of the factor| per unit step (SDs; 1 = as promised)", 34), fontsize=7)
    handles = [Line2D([], [], marker="D", linestyle="none", color=colours[m], label=f"{m} direction") for m in models]
    handles.append(Line2D([], [], marker="o", linestyle="none", color="0.3", markerfacecolor="white",
                          label="random directions: median, line to 95th percentile of |slope|"))
    handles.append(Line2D([], [], linestyle=":", color="0.6", label="|slope| = drift"))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=7, frameon=False)
    fig.suptitle("Attribute vectors: does the direction move its factor, and only it?", fontsize="medium")
    return fig


# -- 9. conditional generation ---------------------------------------------------------------------------------


def _match_keys(levels: Sequence[Mapping]) -> list[str]:
    return list(dict.fromkeys(key for level in levels for key in (level.get("match") or {})))


def conditional_match(conditional_by_run: Mapping[str, Mapping | None], seeds: Mapping[str, Any] | None = None
                      ) -> Figure:
    """Does the CVAE draw what it is asked for? One panel per conditioning factor: for each requested level (x) the
    fraction of prior draws whose recovered factor matches it, one marker per run (seed) with its Wilson interval
    (filled: the first match rule, e.g. the tighter tolerance, ``tolerances`` giving each rule's value; open: the
    others), and the data's base rate under
    the same rule (a grey dash: what a decoder that ignores its condition would score).

    ``conditional_by_run``: {run: the run's conditional_generation.json}, None left out; ``seeds``: {run: seed}
    for the legend (the run's name otherwise).
    """
    runs = {run: result for run, result in conditional_by_run.items() if result and result.get("levels")}
    if not runs:
        raise AtlasError("conditional_match needs at least one run's conditional generation result")
    conditions = _ordered([result["condition"] for result in runs.values()], ("df", "rho", "var_x", "var_y"))
    colours = {run: _colour(i) for i, run in enumerate(runs)}
    fig = Figure(figsize=(3.6 * len(conditions) + 0.6, 3.4), layout="constrained")
    axes = fig.subplots(1, len(conditions), squeeze=False, sharey=True)[0]
    for ax, condition in zip(axes, conditions):
        members = [run for run, result in runs.items() if result["condition"] == condition]
        levels = list(dict.fromkeys(str(level["requested"]) for run in members for level in runs[run]["levels"]))
        numeric = condition != "df"
        positions = {level: (float(level) if numeric else i) for i, level in enumerate(levels)}
        spacing = float(np.min(np.diff(sorted(positions.values())))) if len(levels) > 1 else 1.0
        keys = _match_keys([level for run in members for level in runs[run]["levels"]])
        slots = _offsets(len(members) * len(keys), 0.6 * spacing)
        for k, key in enumerate(keys):
            chance = {str(level["requested"]): _number((level.get("chance") or {}).get(key))
                      for run in members for level in runs[run]["levels"]}
            for level, value in chance.items():
                if value is not None:
                    x = positions[level]
                    ax.plot([x - 0.35 * spacing, x + 0.35 * spacing], [value, value], color="0.55",
                            linewidth=1.4 if k == 0 else 0.8, linestyle="-" if k == 0 else ":",
                            gid=f"chance/{condition}/{key}/{level}")
            for r, run in enumerate(members):
                x, y, low, high = [], [], [], []
                for level in runs[run]["levels"]:
                    match = (level.get("match") or {}).get(key) or {}
                    fraction = _number(match.get("fraction"))
                    if fraction is None:
                        continue
                    x.append(positions[str(level["requested"])] + slots[r * len(keys) + k])
                    y.append(fraction)
                    lo, hi = _number(match.get("low")), _number(match.get("high"))
                    low.append(0.0 if lo is None else max(fraction - lo, 0.0))
                    high.append(0.0 if hi is None else max(hi - fraction, 0.0))
                if not x:
                    continue
                colour = colours[run]
                bars = ax.errorbar(x, y, yerr=[low, high], fmt="o" if k == 0 else "s", markersize=4, color=colour,
                                   markerfacecolor=colour if k == 0 else "white", elinewidth=0.8, capsize=1.5,
                                   linestyle="none")
                bars.lines[0].set_gid(f"match/{run}/{key}")  # the points
                bars.lines[2][0].set_gid(f"wilson/{run}/{key}")  # the vertical interval segments
        if numeric:
            ax.set_xlabel(f"requested {condition}", fontsize=8)
        else:
            ax.set_xticks(range(len(levels)), [f"{level} tails" for level in levels], fontsize=8)
            ax.set_xlim(-0.6, len(levels) - 0.4)
        tolerances = {key: value for run in members for key, value in (runs[run].get("tolerances") or {}).items()}
        rule = ("recovered df on the requested class's side" if condition == "df"
                else f"|recovered {condition} − requested| ≤ "
                + " / ".join(f"{tolerances[key]:g}" if key in tolerances else key for key in keys))
        ax.set_title(_wrap(f"conditioned on {condition}: {rule}", 48), fontsize=8)
        ax.set_ylim(-0.02, 1.04)
        ax.tick_params(labelsize=7)
        ax.grid(axis="y", color="0.93", linewidth=0.6)
    axes[0].set_ylabel(_wrap("fraction of samples matching the request (95 % Wilson)", 30), fontsize=7)
    handles = [Line2D([], [], marker="o", linestyle="none", color=colours[run],
                      label=f"seed {seeds[run]}" if seeds and run in seeds else run) for run in runs]
    if any(len(_match_keys(result["levels"])) > 1 for result in runs.values()):
        handles += [Line2D([], [], marker="o", linestyle="none", color="0.3", label="tighter tolerance"),
                    Line2D([], [], marker="s", linestyle="none", color="0.3", markerfacecolor="white",
                           label="looser tolerance")]
    handles.append(Line2D([], [], color="0.55", label="data's base rate (a decoder ignoring its condition)"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=7, frameon=False)
    fig.suptitle("Conditional generation: prior draws decoded at each requested condition, read by the oracle",
                 fontsize="medium")
    return fig


def conditional_samples(images_by_level: Mapping[str, np.ndarray], extent: float, title: str) -> Figure:
    """A row of decoded samples per requested condition (the same prior draws in every row, so a column differs
    only by its condition). ``images_by_level``: {level label: (n, H, W) images}."""
    rows = {level: np.asarray(images, dtype=np.float32) for level, images in images_by_level.items() if len(images)}
    if not rows:
        raise AtlasError("conditional_samples needs at least one level with images")
    columns = max(len(images) for images in rows.values())
    fig = Figure(figsize=(0.75 * columns + 1.2, 0.75 * len(rows) + 0.6), layout="constrained")
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for r, (level, images) in enumerate(rows.items()):
        for c in range(columns):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.set_axis_off()
                continue
            ax.imshow(images[c], origin="lower", cmap="viridis", vmin=0.0, vmax=1.0,
                      extent=(-extent, extent, -extent, extent), gid=f"sample/{level}/{c}")
            for spine in ax.spines.values():
                spine.set_linewidth(0.4)
        axes[r, 0].set_ylabel(level, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize="small")
    return fig
