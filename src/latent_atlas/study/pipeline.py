"""Run the study stage by stage into one folder, reusing what an earlier run of the same config produced."""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..data import HeatmapDataset, load_dataset, make_dataset
from ..errors import AtlasError
from ..evaluation import evaluate_run
from ..io import read_json
from ..training import Run, load_run, train
from ..training.run import CONFIG_FILE, MODEL_FILE, run_config
from .config import StudyConfig


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


def prepare_dataset(config: StudyConfig, kind: str, data_dir: Path, progress: bool) -> tuple[HeatmapDataset, Path]:
    """The dataset file for ``kind``: reused when it exists with the same config, else generated."""
    path = data_dir / f"{kind}.npz"
    data_config = config.data_for(kind)
    if path.exists():
        try:
            existing = load_dataset(path)
            if existing.config == data_config:
                _say(progress, f"[data] reusing {path}")
                return existing, path
        except AtlasError:
            pass
    started = time.perf_counter()
    dataset = make_dataset(data_config)
    dataset.save(path)
    _say(progress, f"[data] wrote {path}: {len(dataset)} images in {time.perf_counter() - started:.1f} s")
    return dataset, path


def prepare_run(
    config: StudyConfig, dataset: HeatmapDataset, dataset_path: Path, kind: str, run_dir: Path, retrain: bool,
    progress: bool,
) -> Run:
    """A trained run for this dataset and model kind: reused when finished with the same config, else trained."""
    model_config = config.model_for(kind).for_images(dataset.image_shape)
    wanted = run_config(dataset, dataset_path, model_config, config.train, run_dir)
    if not retrain and (run_dir / MODEL_FILE).is_file():
        saved = read_json(run_dir / CONFIG_FILE, what="run config")
        if {k: v for k, v in saved.items() if k != "latent_atlas_version"} == {
            k: v for k, v in wanted.items() if k != "latent_atlas_version"
        }:
            _say(progress, f"[train] reusing {run_dir}")
            return load_run(run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    _say(progress, f"[train] {kind} on {dataset.config.kind} -> {run_dir}")
    result = train(dataset, dataset_path, model_config, config.train, run_dir, progress=progress)
    _say(progress, f"[train] {result.epochs_run} epochs in {result.seconds:.1f} s ({result.images_per_second:,.0f} images/s)")
    return result.run


@dataclass
class StudyResult:
    output: Path
    runs: dict[str, Run]
    metrics: dict[str, dict]
    seconds: float


def summary_table(result: StudyResult) -> str:
    header = f"{'run':<20} {'epochs':>6} {'train s':>8} {'mean':>7} {'median':>7} {'p90':>7} {'p99':>7} {'max':>7}"
    lines = ["test reconstruction error (Frobenius norm per image)", header, "-" * len(header)]
    for name, metrics in result.metrics.items():
        fro, training = metrics["test_frobenius"], metrics["training"]
        lines.append(
            f"{name:<20} {training['epochs_run']:>6} {training['seconds']:>8.1f} {fro['mean']:>7.3f} "
            f"{fro['median']:>7.3f} {fro['p90']:>7.3f} {fro['p99']:>7.3f} {fro['max']:>7.3f}"
        )
    return "\n".join(lines)


def run_study(config: StudyConfig, output: Path, retrain: bool = False, progress: bool = True) -> StudyResult:
    started = time.perf_counter()
    output = Path(output)
    runs: dict[str, Run] = {}
    metrics: dict[str, dict] = {}
    for dataset_kind in config.datasets:
        dataset, dataset_path = prepare_dataset(config, dataset_kind, output / "data", progress)
        if dataset_kind != "gaussian":
            continue
        for model_kind in config.models:
            name = f"{dataset_kind}-{model_kind}"
            run = prepare_run(config, dataset, dataset_path, model_kind, output / "runs" / name, retrain, progress)
            metrics[name] = {**run.metrics(), **evaluate_run(run, dataset)}
            runs[name] = run
    result = StudyResult(output=output, runs=runs, metrics=metrics, seconds=time.perf_counter() - started)
    print(summary_table(result))
    print(f"\nstudy finished in {result.seconds:.0f} s; files under {output}/ (data/, runs/)")
    return result
