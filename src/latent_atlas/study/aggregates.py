"""Cross-run aggregates: every number the report compares between models, over training seeds.

Each ``Quantity`` names where a per-run number lives (an analysis's JSON, or the run's metrics.json), the
equivalence margin a "no difference" verdict is tested at, and the family of quantities that answer the same
question. The margins are written here, before any multi-seed result was looked at, in the quantity's own
units. An aggregate task reads every run of a group and writes ``aggregates/<name>.json``: per model kind the
per-seed values with mean, sd and t interval, and for two model kinds the paired comparison over seeds, its
verdict decided on p-values Holm-adjusted within the quantity's family (``evidence.adjust_family``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import kendalltau

from ..analysis.evidence import adjust_family, rank_comparison, stability_over_seeds, threshold_multipliers
from ..analysis.seeds import over_seeds, paired_over_seeds
from ..errors import AtlasError
from ..graph import TaskContext
from ..io import read_json, read_npz, write_json
from ..report.html import lookup
from ..training.run import METRICS_FILE
from .registry import analysis_paths, json_safe

# Bumped when what the task computes changes (the task graph then redoes it): 2, verdicts Holm-adjusted within
# families; evidence with the training seed as the unit instead of images pooled over seeds.
COMPARE_VERSION = 2
EVIDENCE_VERSION = 2


@dataclass(frozen=True)
class Quantity:
    name: str  # the key in the aggregate file
    label: str  # what the report calls it
    source: str  # "metrics" (metrics.json) or an analysis name
    key: str  # dotted key inside that file
    margin: float  # equivalence margin for "no difference", in the quantity's units
    better: str | None = None  # "lower" / "higher" / None: which way is better, for the report's wording
    family: str = ""  # the question it answers: its verdict is Holm-adjusted with the family's others ("": alone)


def read_quantity(root, run_dir: str, quantity: Quantity) -> float | None:
    """One run's value of a quantity; None when the file or key is missing (the analysis does not apply)."""
    path = (root / run_dir / METRICS_FILE if quantity.source == "metrics"
            else analysis_paths(root / run_dir, quantity.source)[0])
    if not path.is_file():
        return None
    try:
        value = lookup(read_json(path, what="run results"), quantity.key)
    except (KeyError, IndexError, ValueError, TypeError):
        return None
    return None if value is None else float(value)


def compare_models(ctx: TaskContext) -> dict[str, Any]:
    """Per model kind and seed, and paired between the two model kinds, for every quantity."""
    p = ctx.params
    runs, quantities = p["runs"], [Quantity(**q) for q in p["quantities"]]
    kinds = list(p["models"])
    out: dict[str, Any] = {"models": kinds, "runs": runs, "quantities": {}}
    for quantity in quantities:
        values = {kind: {r["seed"]: read_quantity(ctx.root, r["run_dir"], quantity) for r in runs if r["model"] == kind}
                  for kind in kinds}
        entry: dict[str, Any] = {"label": quantity.label, "source": quantity.source, "key": quantity.key,
                                 "margin": quantity.margin, "better": quantity.better,
                                 "by_model": {kind: over_seeds(values[kind]) for kind in kinds}}
        if len(kinds) == 2 and all(any(v is not None for v in values[k].values()) for k in kinds):
            entry["paired"] = paired_over_seeds(values[kinds[0]], values[kinds[1]], quantity.margin,
                                                names=(kinds[0].upper(), kinds[1].upper()))
        out["quantities"][quantity.name] = entry
    adjust_families(out["quantities"], {q.name: q.family or q.name for q in quantities})
    write_json(ctx.root / p["path"], json_safe(out))
    return {"file": p["path"], "quantities": len(quantities)}


def adjust_families(entries: dict[str, dict[str, Any]], families: dict[str, str]) -> None:
    """Re-decides, in place, the paired verdict of every entry (name -> {"paired": {"verdict": ...}}) with the
    others of its family (name -> family), on Holm-adjusted p-values."""
    members: dict[str, list[str]] = {}
    for name, entry in entries.items():
        if "paired" in entry:
            members.setdefault(families[name], []).append(name)
    for family, names in members.items():
        adjusted = adjust_family([entries[name]["paired"]["verdict"] for name in names], family)
        for name, verdict in zip(names, adjusted):
            entries[name]["paired"]["verdict"] = verdict


def curves_over_setting(ctx: TaskContext) -> dict[str, Any]:
    """Each quantity as a curve over one swept setting (latent dimension, beta), with a band over seeds."""
    p = ctx.params
    runs, quantities, setting = p["runs"], [Quantity(**q) for q in p["quantities"]], p["setting"]
    levels = sorted({r["settings"][setting] for r in runs})
    out: dict[str, Any] = {"setting": setting, "levels": levels, "runs": runs, "quantities": {}}
    for quantity in quantities:
        curve = []
        for level in levels:
            values = {r["seed"]: read_quantity(ctx.root, r["run_dir"], quantity)
                      for r in runs if r["settings"][setting] == level}
            curve.append({"level": level, **over_seeds(values)})
        means = [(point["mean"], i) for i, point in enumerate(curve) if point["mean"] is not None]
        extremes = {}
        if means:
            for name, (_, i) in (("highest", max(means)), ("lowest", min(means))):
                extremes[name] = {"index": i, "level": curve[i]["level"]}
        out["quantities"][quantity.name] = {"label": quantity.label, "source": quantity.source, "key": quantity.key,
                                            "better": quantity.better, "curve": curve, **extremes,
                                            "trend": level_trend(curve, p.get("trend_from"))}
    write_json(ctx.root / p["path"], json_safe(out))
    return {"file": p["path"], "levels": len(levels)}


def level_trend(curve: list[dict[str, Any]], trend_from: float | None = None) -> dict[str, Any]:
    """Does the quantity rise or fall with the setting? Kendall's tau-b (``scipy.stats.kendalltau``) between the
    level and the value over every run at levels >= ``trend_from`` (None: all): each run is its own training, so
    runs are independent replicates, and a rank statistic asks for a monotone trend without a model of its shape.
    Decided in advance instead of reading a trend off the level with the best mean."""
    points = [(point["level"], value) for point in curve if trend_from is None or point["level"] >= trend_from
              for value in point["per_seed"].values()]
    out: dict[str, Any] = {"from": trend_from, "n_runs": len(points), "levels": sorted({x for x, _ in points}),
                           "tau": None, "p_value": None}
    if len(out["levels"]) >= 2 and len({y for _, y in points}) >= 2:
        result = kendalltau(*np.array(points).T)
        out["tau"], out["p_value"] = float(result.statistic), float(result.pvalue)
    return out


def quantity_params(quantities: list[Quantity]) -> list[dict[str, Any]]:
    names = [q.name for q in quantities]
    if len(set(names)) != len(names):
        raise AtlasError(f"aggregate quantities repeat a name: {names}")
    return [q.__dict__ for q in quantities]


# -- threshold-free evidence: whole residual distributions, over seeds ---------------------------------------


@dataclass(frozen=True)
class ValiditySource:
    """Where a validity comparison's per-image shape residuals and range checks live in a run folder. Its
    equivalence margin is that of the quantity it checks (``quantities.EVIDENCE_MARGINS``, a task parameter)."""

    file: str
    residual_key: str
    range_key: str


VALIDITY_SOURCES = {
    "reconstructions": ValiditySource("evaluation.npz", "verdict_shape_residual", "verdict_in_range"),
    "empty_regions": ValiditySource("analysis/empty_regions.npz", "points/shape_residual", "points/in_range"),
    "tail_paths": ValiditySource("analysis/tail_paths.npz", "shape_residual", "in_range"),
    "gaussian_sampler": ValiditySource("analysis/generation.npz", "gaussian/s/shape_residual", "gaussian/s/in_range"),
    "mixture_sampler": ValiditySource("analysis/generation.npz", "mixture/s/shape_residual", "mixture/s/in_range"),
}


def validity_arrays(root, run_dir: str, source: str) -> tuple[np.ndarray, np.ndarray] | None:
    where = VALIDITY_SOURCES[source]
    path = root / run_dir / where.file
    if not path.is_file():
        return None
    arrays = read_npz(path, what=f"{source} arrays")
    if where.residual_key not in arrays or where.range_key not in arrays:
        return None
    return arrays[where.residual_key].ravel(), arrays[where.range_key].ravel().astype(bool)


def _valid_fractions(arrays: tuple[np.ndarray, np.ndarray], thresholds: np.ndarray) -> np.ndarray:
    """(T,) in-distribution valid fraction of one run's images at each threshold."""
    residual, in_range = arrays
    return ((residual[None, :] <= thresholds[:, None]) & in_range[None, :]).mean(axis=1)


def validity_evidence(ctx: TaskContext) -> dict[str, Any]:
    """For each validity comparison between the two model kinds, with the training seed as the unit: per seed
    the Mann-Whitney AUC of the two runs' residuals (a statistic that needs no threshold) and its t interval
    over seeds; the paired difference over seeds of the valid fraction at the operating point; and the paired
    comparison at every threshold of the band (``stability_over_seeds``). Images of one run are not replicates of
    a model kind, so nothing here pools them across seeds as if they were; the report's ECDF and threshold-curve
    figures draw every seed's curve. A sensitivity check of the summary's verdicts, not a family of further
    claims: its p-values are not adjusted, and the verdicts at the operating point are those of the quantities
    (``compare_models``), adjusted within their families."""
    p = ctx.params
    threshold = float(read_json(ctx.root / p["oracle"], what="oracle settings")["shape_threshold"])
    kinds = [k.upper() for k in p["models"]]
    band = tuple(p["band"])
    multipliers = threshold_multipliers(band[0], band[1], p.get("band_points", 9))
    thresholds = threshold * multipliers
    at_operating_point = int(np.flatnonzero(multipliers == 1.0)[0])
    out: dict[str, Any] = {"operating_point": threshold, "band": list(band), "models": kinds, "comparisons": {}}
    for source in VALIDITY_SOURCES:
        margin = float(p["margins"][source])
        per_model: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {k: {} for k in kinds}
        for row in p["runs"]:
            arrays = validity_arrays(ctx.root, row["run_dir"], source)
            if arrays is not None:
                per_model[row["model"].upper()][row["seed"]] = arrays
        seeds = sorted(set(per_model[kinds[0]]) & set(per_model[kinds[1]]))
        if not seeds:
            continue
        fractions = {k: np.array([_valid_fractions(per_model[k][s], thresholds) for s in seeds]) for k in kinds}
        at_point = {k: dict(zip(seeds, fractions[k][:, at_operating_point].tolist())) for k in kinds}
        auc = {s: rank_comparison(per_model[kinds[0]][s][0], per_model[kinds[1]][s][0])["auc"] for s in seeds}
        out["comparisons"][source] = {
            "seeds": seeds, "n_seeds": len(seeds), "margin": margin,
            "n_images": {k: [int(per_model[k][s][0].size) for s in seeds] for k in kinds},
            "auc_over_seeds": over_seeds(auc),
            "paired": paired_over_seeds(at_point[kinds[0]], at_point[kinds[1]], margin, names=tuple(kinds)),
            "stability": stability_over_seeds(fractions[kinds[0]], fractions[kinds[1]], thresholds, band,
                                              names=kinds)}
    write_json(ctx.root / p["path"], json_safe(out))
    return {"file": p["path"], "comparisons": sorted(out["comparisons"])}
