"""Run the study stage by stage into one folder, reusing what an earlier run of the same config produced.

    DIR/data/{gaussian,student_t}.npz           datasets
    DIR/runs/{dataset}-{vae,ae}/                run folders (+ latents.npz, oracle.json, analysis.json)
    DIR/results.json                            study-level numbers: oracle accuracy, KNN baselines, timings
    DIR/figures/*.png, DIR/report.html          the report
"""

from __future__ import annotations

import shutil
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..analysis.classify import KnnResult
from ..analysis.latents import run_latents
from ..analysis.validity import calibrate_oracle, calibration_reconstructions
from ..data import HeatmapDataset, load_dataset, make_dataset
from ..errors import AtlasError
from ..evaluation import evaluate_run
from ..io import read_json, write_json
from ..oracle import HeatmapOracle
from ..training import Run, load_run, train
from ..training.run import (
    ANALYSIS_FILE,
    CONFIG_FILE,
    MODEL_FILE,
    ORACLE_FILE,
    run_config,
    same_settings,
)
from .analyses import (
    RunAnalysis,
    embed_codes,
    explore_run,
    knn_baselines,
    knn_on_codes,
    latent_structure,
    oracle_accuracy,
    prior_decodes,
    reconstruction_analysis,
)
from .config import StudyConfig

RESULTS_FILE = "results.json"


class Progress:
    """Stage messages on stderr and the seconds each stage took."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.seconds: dict[str, float] = {}

    def say(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)

    @contextmanager
    def stage(self, name: str, message: str | None = None) -> Iterator[None]:
        if message:
            self.say(message)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 2)


def prepare_dataset(config: StudyConfig, kind: str, data_dir: Path, progress: Progress) -> tuple[HeatmapDataset, Path]:
    """The dataset file for ``kind``: reused when it exists with the same config, else generated."""
    path = data_dir / f"{kind}.npz"
    data_config = config.data_for(kind)
    if path.exists():
        try:
            existing = load_dataset(path)
            if existing.config == data_config:
                progress.say(f"[data] reusing {path}")
                return existing, path
        except AtlasError:
            pass
    dataset = make_dataset(data_config)
    dataset.save(path)
    progress.say(f"[data] wrote {path}: {len(dataset)} images")
    return dataset, path


def prepare_run(config: StudyConfig, dataset: HeatmapDataset, dataset_path: Path, kind: str, run_dir: Path,
                retrain: bool, progress: Progress, latent_dim: int | None = None) -> Run:
    """A trained run for this dataset and model kind.

    A finished run with the same config is reused, an interrupted one resumed; anything else is replaced.
    """
    model_config = config.model_for(kind, latent_dim).for_images(dataset.image_shape)
    wanted = run_config(dataset, dataset_path, model_config, config.train, run_dir)
    same = (run_dir / CONFIG_FILE).is_file() and same_settings(read_json(run_dir / CONFIG_FILE, what="run config"),
                                                                wanted)
    if same and not retrain and (run_dir / MODEL_FILE).is_file():
        progress.say(f"[train] reusing {run_dir}")
        return load_run(run_dir)
    resume = same and not retrain and not (run_dir / MODEL_FILE).is_file()
    if run_dir.exists() and not resume:
        shutil.rmtree(run_dir)
    progress.say(f"[train] {'resuming' if resume else 'training'} {kind} on {dataset.config.kind} -> {run_dir}")
    result = train(dataset, dataset_path, model_config, config.train, run_dir, resume=resume,
                   progress=progress.enabled)
    progress.say(f"[train] {result.epochs_run} epochs in {result.seconds:.1f} s "
                 f"({result.images_per_second:,.0f} images/s)")
    return result.run


@dataclass
class DatasetStudy:
    """Everything the report needs about one dataset and the models trained on it."""

    kind: str
    dataset: HeatmapDataset
    oracle: HeatmapOracle
    runs: dict[str, RunAnalysis] = field(default_factory=dict)  # by run name
    sweep: dict[str, RunAnalysis] = field(default_factory=dict)  # extra VAEs of other latent dimensions
    oracle_file: dict[str, Any] = field(default_factory=dict)  # what oracle.json holds in each run folder
    knn_baselines: dict[str, KnnResult] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudyResult:
    output: Path
    config: StudyConfig
    datasets: dict[str, DatasetStudy]
    runs: dict[str, Run]
    seconds: float
    report: Path | None = None


def run_rng(seed: int, name: str) -> np.random.Generator:
    """The analyses' random stream for one run: the study's seed and a stable hash of the run's name."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def evaluated(run: Run, model, dataset: HeatmapDataset) -> RunAnalysis:
    """Evaluate a run on the test split and gather what every analysis starts from."""
    evaluation = evaluate_run(run, dataset, model=model)
    return RunAnalysis(name=run.name, kind=run.kind, latents=run_latents(run, dataset, model),
                       errors=evaluation.errors, reconstructions=evaluation.reconstructions)


def latent_dimension_sweep(config: StudyConfig, study: DatasetStudy, dataset_path: Path, test_reading,
                           output: Path, retrain: bool, progress: Progress, runs: dict[str, Run]) -> dict[str, RunAnalysis]:
    """Extra VAEs on the same data, one per latent dimension: reconstruction, holes, generation quality."""
    sweep = {}
    seed = config.train.seed
    for dim in config.sweep_dims:
        name = f"{study.kind}-vae-d{dim}"
        with progress.stage("training"):
            runs[name] = prepare_run(config, study.dataset, dataset_path, "vae", output / "runs" / name, retrain,
                                     progress, latent_dim=dim)
        with progress.stage("analysis", f"[analyse] {name}"):
            model = runs[name].load_model()
            analysis = evaluated(runs[name], model, study.dataset)
            rng = run_rng(seed, name)
            reconstruction_analysis(analysis, test_reading, study.oracle)
            latent_structure(analysis, rng)
            prior_decodes(analysis, model, study.oracle, rng)
            embed_codes(analysis, rng, seed)
        write_json(runs[name].path / ANALYSIS_FILE, {**analysis.results, "provenance": runs[name].provenance()})
        write_json(runs[name].path / ORACLE_FILE, study.oracle_file)
        sweep[name] = analysis
    return sweep


def study_dataset(config: StudyConfig, kind: str, output: Path, retrain: bool, progress: Progress,
                  runs: dict[str, Run]) -> DatasetStudy:
    seed = config.train.seed
    with progress.stage("data"):
        dataset, dataset_path = prepare_dataset(config, kind, output / "data", progress)
    names = {model_kind: f"{kind}-{model_kind}" for model_kind in config.models}
    with progress.stage("training"):
        for model_kind, name in names.items():
            runs[name] = prepare_run(config, dataset, dataset_path, model_kind, output / "runs" / name, retrain,
                                     progress)
    models = {}
    with progress.stage("evaluation", f"[evaluate] {', '.join(names.values())}"):
        for name in names.values():
            models[name] = runs[name].load_model()
        analyses = {name: evaluated(runs[name], models[name], dataset) for name in names.values()}
    with progress.stage("oracle", f"[oracle] calibrating on {kind} validation reconstructions"):
        oracle = calibrate_oracle(
            dataset, [calibration_reconstructions(runs[name], models[name], dataset) for name in names.values()]
        )
        accuracy, test_reading = oracle_accuracy(oracle, dataset)
        oracle_file = {**oracle.to_dict(), "provenance": {
            "dataset_hash": dataset.content_hash,
            "calibrated_on": {name: runs[name].provenance()["model_sha256"] for name in names.values()},
        }}
        for name in names.values():
            write_json(runs[name].path / ORACLE_FILE, oracle_file)
    study = DatasetStudy(kind=kind, dataset=dataset, oracle=oracle, runs=analyses, oracle_file=oracle_file)
    oracle_state = {k: v for k, v in oracle.to_dict().items() if k != "axis"}
    study.results = {"n_images": len(dataset), "n_test": int(len(dataset.test_idx)),
                     "content_hash": dataset.content_hash, "oracle": oracle_state, "oracle_accuracy": accuracy}
    for name, analysis in analyses.items():
        rng = run_rng(seed, name)
        with progress.stage("analysis", f"[analyse] {name}"):
            reconstruction_analysis(analysis, test_reading, oracle)
            latent_structure(analysis, rng)
            embed_codes(analysis, rng, seed)
            if kind == "gaussian":
                explore_run(analysis, models[name], oracle, rng)
            if "df" in dataset.factor_names:
                knn_on_codes(analysis, dataset, seed)
        write_json(runs[name].path / ANALYSIS_FILE, {**analysis.results, "provenance": runs[name].provenance()})
    if kind == "gaussian" and config.sweep_dims:
        study.sweep = latent_dimension_sweep(config, study, dataset_path, test_reading, output, retrain, progress,
                                             runs)
    if "df" in dataset.factor_names:
        with progress.stage("analysis", f"[analyse] KNN baselines on {kind}"):
            study.knn_baselines, study.results["knn_baselines"] = knn_baselines(dataset, seed)
    return study


def run_study(config: StudyConfig, output: Path, retrain: bool = False, progress: bool = True,
              report: bool = True) -> StudyResult:
    """Reproduce the whole study into ``output``; returns what the report was built from."""
    started = time.perf_counter()
    output = Path(output)
    stages = Progress(progress)
    runs: dict[str, Run] = {}
    datasets = {kind: study_dataset(config, kind, output, retrain, stages, runs) for kind in config.datasets}
    result = StudyResult(output=output, config=config, datasets=datasets, runs=runs, seconds=0.0)
    results = {
        "latent_atlas_version": __version__,
        "config": config.to_dict(),
        "datasets": {kind: study.results for kind, study in datasets.items()},
        "runs": {name: {"kind": run.kind, "path": f"runs/{name}"} for name, run in runs.items()},
    }
    timings = results["timings"] = dict(stages.seconds)
    timings["before_report"] = round(time.perf_counter() - started, 1)
    write_json(output / RESULTS_FILE, results)
    if report:
        from ..report.build import build_report

        with stages.stage("report", "[report] figures and HTML"):
            result.report = build_report(result)
        timings["report"] = stages.seconds["report"]
    result.seconds = time.perf_counter() - started
    timings["total"] = round(result.seconds, 1)
    write_json(output / RESULTS_FILE, results)
    print(summary_table(result))
    where = f"report {result.report}" if result.report else f"files under {output}/"
    print(f"\nstudy finished in {result.seconds:.0f} s; {where}")
    return result


def summary_table(result: StudyResult) -> str:
    header = (f"{'run':<16} {'epochs':>6} {'train s':>8} {'mean':>7} {'median':>7} {'p90':>7} {'p99':>7} {'max':>7} "
              f"{'valid':>6} {'knn':>6}")
    lines = ["test reconstruction error (Frobenius norm per image), valid decodes in empty regions, KNN df accuracy",
             header, "-" * len(header)]
    for study in result.datasets.values():
        for name, analysis in study.runs.items():
            metrics = result.runs[name].metrics()
            fro, training = metrics["test_frobenius"], metrics["training"]
            valid = analysis.results.get("exploration", {}).get("valid_decodes", {}).get("empty_regions", {})
            knn = analysis.results.get("knn_df", {})
            valid_text = f"{valid['fraction']:.2f}" if valid.get("fraction") is not None else "-"
            knn_text = f"{knn['accuracy']:.3f}" if "accuracy" in knn else "-"
            lines.append(
                f"{name:<16} {training['epochs_run']:>6} {training['seconds']:>8.1f} {fro['mean']:>7.3f} "
                f"{fro['median']:>7.3f} {fro['p90']:>7.3f} {fro['p99']:>7.3f} {fro['max']:>7.3f} {valid_text:>6} {knn_text:>6}"
            )
    return "\n".join(lines)
