"""Cross-run aggregates: every number the report compares between models, over training seeds.

Each ``Quantity`` names where a per-run number lives (an analysis's JSON, or the run's metrics.json) and the
equivalence margin a "no difference" verdict is tested at. The margins are written here, before any
multi-seed result was looked at, in the quantity's own units. An aggregate task reads every run of a group
and writes ``aggregates/<name>.json``: per model kind the per-seed values with mean, sd and t interval,
and for two model kinds the paired comparison over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..analysis.evidence import compare_validity, rank_comparison
from ..analysis.seeds import over_seeds, paired_over_seeds
from ..errors import AtlasError
from ..graph import TaskContext
from ..io import read_json, read_npz, write_json
from ..report.html import lookup
from ..training.run import METRICS_FILE
from .registry import analysis_paths, json_safe


@dataclass(frozen=True)
class Quantity:
    name: str  # the key in the aggregate file
    label: str  # what the report calls it
    source: str  # "metrics" (metrics.json) or an analysis name
    key: str  # dotted key inside that file
    margin: float  # equivalence margin for "no difference", in the quantity's units
    better: str | None = None  # "lower" / "higher" / None: which way is better, for the report's wording


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
    write_json(ctx.root / p["path"], json_safe(out))
    return {"file": p["path"], "quantities": len(quantities)}


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
                                            "better": quantity.better, "curve": curve, **extremes}
    write_json(ctx.root / p["path"], json_safe(out))
    return {"file": p["path"], "levels": len(levels)}


def quantity_params(quantities: list[Quantity]) -> list[dict[str, Any]]:
    names = [q.name for q in quantities]
    if len(set(names)) != len(names):
        raise AtlasError(f"aggregate quantities repeat a name: {names}")
    return [q.__dict__ for q in quantities]


# -- threshold-free evidence: whole residual distributions, pooled over seeds ------------------------------

# Where each validity comparison's per-image shape residuals and range checks live in a run folder.
VALIDITY_SOURCES = {
    "reconstructions": ("evaluation.npz", "verdict_shape_residual", "verdict_in_range"),
    "empty_regions": ("analysis/empty_regions.npz", "points/shape_residual", "points/in_range"),
    "tail_paths": ("analysis/tail_paths.npz", "shape_residual", "in_range"),
    "gaussian_sampler": ("analysis/generation.npz", "gaussian/s/shape_residual", "gaussian/s/in_range"),
    "mixture_sampler": ("analysis/generation.npz", "mixture/s/shape_residual", "mixture/s/in_range"),
}


def validity_arrays(root, run_dir: str, source: str) -> tuple[np.ndarray, np.ndarray] | None:
    file, residual_key, range_key = VALIDITY_SOURCES[source]
    path = root / run_dir / file
    if not path.is_file():
        return None
    arrays = read_npz(path, what=f"{source} arrays")
    if residual_key not in arrays or range_key not in arrays:
        return None
    return arrays[residual_key].ravel(), arrays[range_key].ravel().astype(bool)


def validity_evidence(ctx: TaskContext) -> dict[str, Any]:
    """For each validity comparison between the two model kinds: residual ECDFs and valid-fraction curves over
    the threshold (pooled over seeds), the rank statistic and the threshold-band check, and per seed the
    Mann-Whitney AUC with its mean over seeds."""
    p = ctx.params
    threshold = float(read_json(ctx.root / p["oracle"], what="oracle settings")["shape_threshold"])
    kinds = [k.upper() for k in p["models"]]
    band = tuple(p["band"])
    out: dict[str, Any] = {"operating_point": threshold, "band": list(band), "models": kinds, "comparisons": {}}
    for source in VALIDITY_SOURCES:
        per_model: dict[str, dict[int, tuple[np.ndarray, np.ndarray]]] = {k: {} for k in kinds}
        for row in p["runs"]:
            arrays = validity_arrays(ctx.root, row["run_dir"], source)
            if arrays is not None:
                per_model[row["model"].upper()][row["seed"]] = arrays
        if not all(per_model[k] for k in kinds):
            continue
        pooled = {k: tuple(np.concatenate(parts) for parts in zip(*per_model[k].values())) for k in kinds}
        entry = compare_validity(pooled[kinds[0]][0], pooled[kinds[1]][0], threshold, pooled[kinds[0]][1],
                                 pooled[kinds[1]][1], names=kinds, band=band)
        seeds = sorted(set(per_model[kinds[0]]) & set(per_model[kinds[1]]))
        auc = {s: rank_comparison(per_model[kinds[0]][s][0], per_model[kinds[1]][s][0])["auc"] for s in seeds}
        entry["auc_over_seeds"] = over_seeds(auc)
        entry["n_seeds"] = len(seeds)
        out["comparisons"][source] = entry
    write_json(ctx.root / p["path"], json_safe(out))
    return {"file": p["path"], "comparisons": sorted(out["comparisons"])}
