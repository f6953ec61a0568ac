"""Dataset-level analyses: what the oracle makes of the real test images, and what the covariance and the
pixels say about df (the baselines the four-factor codes are measured against). Each writes
``datasets/<kind>/<name>.json``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..analysis.classify import band_summary, df_classification, heavy_tail_labels, missing_class
from ..graph import TaskContext
from ..io import write_json
from .analyses.four_factor import band_mask
from .registry import json_safe
from .resources import dataset_at, oracle_for


def _error_stats(values: np.ndarray) -> dict[str, float]:
    values = np.abs(values)
    return {"median": float(np.median(values)), "p99": float(np.percentile(values, 99)), "max": float(values.max())}


def oracle_accuracy(ctx: TaskContext) -> dict[str, Any]:
    """The oracle on the real test images: every one should be a valid heatmap with its true factors."""
    dataset = dataset_at(ctx.root / ctx.params["dataset"])
    oracle = oracle_for(ctx.root / ctx.params["dataset"], ctx.root / ctx.params["oracle"])
    verdict = oracle.verdict(dataset.images[dataset.test_idx], novelty=False)
    truth = dataset.factors[dataset.test_idx]
    result: dict[str, Any] = {
        "n_images": int(len(truth)),
        "var_x_relative_error": _error_stats(verdict.factor("var_x") / truth[:, 0] - 1),
        "var_y_relative_error": _error_stats(verdict.factor("var_y") / truth[:, 1] - 1),
        "rho_absolute_error": _error_stats(verdict.factor("rho") - truth[:, 2]),
        "verdict": verdict.summary(),
    }
    if "df" in dataset.factor_names:
        config = dataset.config
        df = verdict.factor("df")
        predicted_heavy = np.abs(np.log(df / config.df_heavy)) < np.abs(np.log(df / config.df_light))
        result["df_accuracy"] = float(np.mean(predicted_heavy == (truth[:, 3] == config.df_heavy)))
    return _write(ctx, result)


def knn_baselines(ctx: TaskContext) -> dict[str, Any]:
    """The df classifier on the true covariance factors and on raw pixels, overall and on the ambiguous band,
    with the Bayes ceiling of any classifier of the covariance alone."""
    dataset = dataset_at(ctx.root / ctx.params["dataset"])
    config, test = dataset.config, dataset.test_idx
    labels = heavy_tail_labels(dataset.factors, dataset.factor_names, config.df_heavy)
    summary: dict[str, Any] = {
        "df_rule_gives": config.df_rule_gives,
        "band": band_summary(dataset.factor("var_x")[test], dataset.factor("var_y")[test], config.df_threshold,
                             config.df_noise_max, config.df_rule_gives),
        "skipped": missing_class(labels, dataset.train_idx, test),
    }
    if not summary["skipped"]:
        results = df_classification(None, dataset.factors, dataset.factor_names, dataset.images, dataset.train_idx,
                                    test, seed=ctx.params["seed"], heavy_df=config.df_heavy,
                                    test_subsets={"band": band_mask(dataset)})
        summary.update({name: result.to_dict() for name, result in results.items()})
    return _write(ctx, summary)


def _write(ctx: TaskContext, result: dict[str, Any]) -> dict[str, Any]:
    write_json(ctx.root / ctx.params["path"], json_safe(result))
    return {"file": ctx.params["path"]}


@dataclass(frozen=True)
class DatasetAnalysis:
    fn: Callable[[TaskContext], dict[str, Any]]
    kinds: tuple[str, ...] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    def applies(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds


DATASET_ANALYSES = {
    "oracle_accuracy": DatasetAnalysis(oracle_accuracy),
    "knn_baselines": DatasetAnalysis(knn_baselines, kinds=("student_t",)),
}
