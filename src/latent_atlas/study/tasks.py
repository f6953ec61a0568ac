"""The functions the study's and sweeps' tasks run. Each takes a ``TaskContext`` (its parameters, its
inputs' ids, the root folder), writes its files under the root and returns a small JSON-able summary.
They are module-level so that Ray workers import them by name.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.latents import encode_dataset
from ..config import DataConfig, ModelConfig, TrainConfig, build
from ..data import make_dataset
from ..evaluation import evaluate
from ..graph import TaskContext
from ..io import file_sha256, read_json, write_json, write_npz
from ..training import load_run, train
from ..training.run import (
    CONFIG_FILE,
    EVALUATION_FILE,
    HISTORY_FILE,
    LATENTS_FILE,
    METRICS_FILE,
    MODEL_FILE,
    run_config,
    same_settings,
)
from ..training.tracking import open_tracker
from .registry import ANALYSES, RunInputs, analysis_rng, json_safe, save_output
from .resources import dataset_at, oracle_for

# What a finished training and a finished evaluation leave in the run folder (the tasks' declared outputs): both
# write parts of metrics.json, each declaring its own top-level keys.
TRAINING_FILES = (CONFIG_FILE, MODEL_FILE, HISTORY_FILE, f"{METRICS_FILE}#training")
EVALUATION_FILES = (EVALUATION_FILE, LATENTS_FILE, f"{METRICS_FILE}#test_frobenius",
                    f"{METRICS_FILE}#reconstruction_verdict")


def run_files(run_dir: str, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{run_dir}/{name}" for name in names)


def make_data(ctx: TaskContext) -> dict[str, Any]:
    config = build(DataConfig, ctx.params["data"], section="data")
    dataset = make_dataset(config)
    dataset.save(ctx.root / ctx.params["path"])
    return {"path": ctx.params["path"], "content_hash": dataset.content_hash, "n_images": len(dataset),
            "n_train": int(len(dataset.train_idx)), "n_test": int(len(dataset.test_idx))}


def fix_shape_threshold(ctx: TaskContext) -> dict[str, Any]:
    """The oracle's shape threshold for a data config, from the corruption benchmark's written rule alone."""
    from ..corruptions import BENCHMARK_SEED, evaluate, make_benchmark, shape_residuals, shape_threshold_for

    config = build(DataConfig, ctx.params["data"], section="data")
    started = time.perf_counter()
    benchmark = make_benchmark(config, np.random.default_rng(BENCHMARK_SEED))
    residuals = shape_residuals(benchmark)
    report = evaluate(benchmark, residuals, shape_threshold_for(config))
    report["shape_threshold"] = report["threshold"]
    write_npz(ctx.root / ctx.params["examples"], either_side(benchmark, residuals, report["threshold"]))
    summary = {"family": config.kind, "grid_size": config.grid_size, **json_safe(report),
               "seconds": round(time.perf_counter() - started, 2)}
    write_json(ctx.root / ctx.params["path"], summary)
    return {"shape_threshold": summary["shape_threshold"]}


def either_side(benchmark, residuals: np.ndarray, threshold: float, n: int = 8) -> dict[str, np.ndarray]:
    """The benchmark images whose shape residual lies just below and just above the threshold (n of each,
    nearest first), so a reader can see what the line means."""
    below = np.flatnonzero(residuals <= threshold)
    above = np.flatnonzero(residuals > threshold)
    below = below[np.argsort(threshold - residuals[below])][:n]
    above = above[np.argsort(residuals[above] - threshold)][:n]
    rows = np.concatenate([below, above])
    return {"images": benchmark.images[rows].astype(np.float32), "shape_residual": residuals[rows],
            "kind": benchmark.kind[rows], "grade": benchmark.grade[rows], "label": benchmark.label[rows],
            "passes": residuals[rows] <= threshold, "threshold": np.asarray(threshold)}


def train_run(ctx: TaskContext) -> dict[str, Any]:
    """Train one run; a folder holding the same run's interrupted training is resumed from its last epoch.

    A run folder that holds a run with other settings (an earlier config's) is kept until the new training has
    finished: the new one trains in a sibling staging folder (``.<run>.training``, resumed like any run) and
    replaces it only then, so a new config that fails, or a kill, loses nothing that had finished."""
    p = ctx.params
    dataset_path = ctx.root / p["dataset"]
    dataset = dataset_at(dataset_path)
    model = build(ModelConfig, p["model"], section="model").for_images(dataset.image_shape)
    train_config = build(TrainConfig, p["train"], section="train")
    run_dir = ctx.root / p["run_dir"]
    wanted = run_config(dataset, dataset_path, model, train_config, run_dir)  # the same from a sibling folder

    def holds_this_run(folder: Path) -> bool:
        return (folder / CONFIG_FILE).is_file() and same_settings(read_json(folder / CONFIG_FILE, what="run config"),
                                                                   wanted)

    staging = run_dir.with_name(f".{run_dir.name}.training")
    if holds_this_run(run_dir):
        target = run_dir
    else:  # train beside what the run folder holds; a staged run of these settings (a kill mid-swap) goes on
        target = staging if run_dir.exists() or holds_this_run(staging) else run_dir
    resume = holds_this_run(target)
    if target.exists() and not resume:
        shutil.rmtree(target)
    result = train(dataset, dataset_path, model, train_config, target, resume=resume, progress=False,
                   tracking=ctx.options.get("tracking", "none"))
    if target == staging:
        _replace_folder(run_dir, staging)
    return {"run_dir": p["run_dir"], "epochs": result.epochs_run, "best_epoch": result.best_epoch,
            "seconds": round(result.seconds, 2), "images_per_second": round(result.images_per_second, 1),
            "resumed": resume, "model_sha256": file_sha256(run_dir / MODEL_FILE)}


def _replace_folder(old: Path, new: Path) -> None:
    """Put folder ``new`` where ``old`` is: ``old`` is renamed aside first and removed last, so at every moment one
    complete run is in one of the two places (a kill in between leaves ``new`` staged, resumed as finished)."""
    aside = old.with_name(f".{old.name}.replaced")
    if aside.exists():
        shutil.rmtree(aside)
    if old.exists():  # absent when a kill came between the two renames: the run to keep is ``new``
        os.replace(old, aside)
    os.replace(new, old)
    if aside.exists():
        shutil.rmtree(aside)


def evaluate_run(ctx: TaskContext) -> dict[str, Any]:
    """Test-set reconstruction errors and the oracle's verdict on the reconstructions; the codes of every image."""
    p = ctx.params
    run_dir = ctx.root / p["run_dir"]
    run = load_run(run_dir)
    dataset = dataset_at(ctx.root / p["dataset"])
    oracle = oracle_for(ctx.root / p["dataset"], ctx.root / p["oracle"])
    model = run.load_model()
    evaluation = evaluate(model, dataset)
    verdict = oracle.verdict(evaluation.reconstructions, novelty=False)
    model_hash = file_sha256(run_dir / MODEL_FILE)
    encode_dataset(model, dataset, model_hash=model_hash).save(run_dir / LATENTS_FILE)
    provenance = run.provenance()
    write_npz(run_dir / EVALUATION_FILE, {"test_idx": dataset.test_idx, "frobenius": evaluation.errors,
                                          **{f"verdict_{k}": v for k, v in verdict.to_arrays().items()}})
    metrics_path = run_dir / METRICS_FILE
    metrics = read_json(metrics_path, what="metrics") if metrics_path.exists() else {}
    reconstructions = json_safe(verdict.summary())
    metrics.update(evaluation.results, reconstruction_verdict=reconstructions, provenance=provenance)
    write_json(metrics_path, metrics)
    training = metrics.get("training", {})
    tracker = open_tracker(ctx.options.get("tracking", "none"), run_dir)
    try:
        tracker.log_final({"test_frobenius": evaluation.results["test_frobenius"],
                           "reconstructions_valid": reconstructions.get("valid")})
    finally:
        tracker.close()
    return {"run_dir": p["run_dir"], "test_frobenius": evaluation.results["test_frobenius"],
            "reconstructions_valid": reconstructions.get("valid"),
            "epochs": training.get("epochs_run"), "train_seconds": training.get("seconds")}


def analyse_run(ctx: TaskContext) -> dict[str, Any]:
    """One registered analysis of one run (``study.registry``), written to ``analysis/<name>.json|npz``."""
    p = ctx.params
    analysis = ANALYSES[p["analysis"]]
    run_dir = ctx.root / p["run_dir"]
    inputs = RunInputs(run_dir=run_dir, dataset_path=ctx.root / p["dataset"], oracle_path=ctx.root / p["oracle"],
                       params=p["settings"], rng=analysis_rng(p["analysis_seed"], run_dir.name, analysis.name),
                       analysis_seed=p["analysis_seed"])
    output = analysis.fn(inputs)
    output.results = json_safe(output.results)
    written = save_output(run_dir, analysis.name, output, {"model_sha256": file_sha256(run_dir / MODEL_FILE),
                                                            "dataset_hash": inputs.dataset.content_hash,
                                                            "analysis": analysis.name, "version": analysis.version})
    files = [f"{p['run_dir']}/{path.relative_to(run_dir).as_posix()}" for path in written]
    return {"file": files[0], "files": files}
