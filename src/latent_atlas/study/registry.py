"""The registry of analyses. An analysis is a function of one run's inputs plus one registration that says
which runs it applies to; it returns JSON-able numbers (the report quotes them) and, optionally, arrays
(the report's figures draw them). Adding one is a function and a decorator, not a branch in a pipeline.

    @analysis("reconstruction")
    def reconstruction(inputs: RunInputs) -> AnalysisOutput: ...

Its outputs land in the run folder as ``analysis/<name>.json`` and ``analysis/<name>.npz``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.latents import LatentCodes, run_latents
from ..data import HeatmapDataset
from ..errors import AtlasError
from ..io import read_json, read_npz, write_json, write_npz
from ..models import Autoencoder
from ..oracle import HeatmapOracle
from ..training.run import EVALUATION_FILE, Run, load_run
from .resources import dataset_at, oracle_for
from .runs import CORE, RunSpec

ANALYSIS_DIR = "analysis"


@dataclass
class AnalysisOutput:
    results: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class RunInputs:
    """Everything an analysis of one run may read; loaded on first use."""

    run_dir: Path
    dataset_path: Path
    oracle_path: Path
    params: dict[str, Any]
    rng: np.random.Generator
    analysis_seed: int = 0

    @cached_property
    def run(self) -> Run:
        return load_run(self.run_dir)

    @cached_property
    def dataset(self) -> HeatmapDataset:
        return dataset_at(self.dataset_path)

    @cached_property
    def model(self) -> Autoencoder:
        return self.run.load_model()

    @cached_property
    def oracle(self) -> HeatmapOracle:
        return oracle_for(self.dataset_path, self.oracle_path)

    @cached_property
    def latents(self) -> LatentCodes:
        return run_latents(self.run, self.dataset, self.model)

    @cached_property
    def evaluation(self) -> dict[str, np.ndarray]:
        return read_npz(self.run_dir / EVALUATION_FILE, what="evaluation")

    @property
    def kind(self) -> str:
        return self.run.kind

    def shared_rng(self, name: str) -> np.random.Generator:
        """A stream that is the same for every run of the study (e.g. to draw the same image pairs for every
        model and seed, so that their results are paired)."""
        return np.random.default_rng([self.analysis_seed, zlib.crc32(name.encode())])


@dataclass(frozen=True)
class Analysis:
    name: str
    fn: Callable[[RunInputs], AnalysisOutput]
    datasets: tuple[str, ...] | None = None  # None: every dataset
    models: tuple[str, ...] | None = None
    groups: tuple[str, ...] = (CORE,)
    params: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    group_aware: bool = False  # its settings include the run's groups (it behaves differently per study section)
    quick: dict[str, Any] = field(default_factory=dict)  # the settings a --quick study overrides (fewer draws)

    def settings(self, quick: bool = False) -> dict[str, Any]:
        return {**self.params, **self.quick} if quick else dict(self.params)

    def applies(self, spec: RunSpec) -> bool:
        return ((self.datasets is None or spec.data_kind in self.datasets)
                and (self.models is None or spec.model_kind in self.models)
                and bool(spec.groups & set(self.groups)))


ANALYSES: dict[str, Analysis] = {}


def analysis(name: str, *, datasets: tuple[str, ...] | None = None, models: tuple[str, ...] | None = None,
             groups: tuple[str, ...] = (CORE,), version: int = 1, group_aware: bool = False,
             quick: dict[str, Any] | None = None, **params: Any):
    """Register ``fn`` as the analysis ``name`` for the runs it applies to; ``params`` are its settings and
    ``quick`` the smaller ones a ``--quick`` study uses instead."""
    quick = dict(quick or {})
    if set(quick) - set(params):
        raise ValueError(f"analysis {name!r}: quick settings {sorted(set(quick) - set(params))} are not settings")

    def register(fn: Callable[[RunInputs], AnalysisOutput]) -> Callable[[RunInputs], AnalysisOutput]:
        if name in ANALYSES:
            raise ValueError(f"analysis {name!r} is registered twice")
        ANALYSES[name] = Analysis(name, fn, datasets, models, groups, dict(params), version, group_aware, quick)
        return fn

    return register


def analysis_rng(seed: int, run_name: str, name: str) -> np.random.Generator:
    """An analysis's own random stream: the study's analysis seed, the run and the analysis."""
    return np.random.default_rng([seed, zlib.crc32(run_name.encode()), zlib.crc32(name.encode())])


def analysis_paths(run_dir: Path, name: str) -> tuple[Path, Path]:
    return run_dir / ANALYSIS_DIR / f"{name}.json", run_dir / ANALYSIS_DIR / f"{name}.npz"


def save_output(run_dir: Path, name: str, output: AnalysisOutput, provenance: dict[str, Any]) -> list[Path]:
    """Write the analysis' results (and arrays, if any); returns the files written, the results first."""
    json_path, npz_path = analysis_paths(run_dir, name)
    if output.arrays:
        write_npz(npz_path, output.arrays)
    else:
        npz_path.unlink(missing_ok=True)
    write_json(json_path, {**output.results, "provenance": provenance})
    return [json_path, npz_path] if output.arrays else [json_path]


def load_results(run_dir: Path, name: str) -> dict[str, Any]:
    return read_json(analysis_paths(Path(run_dir), name)[0], what=f"analysis {name}")


def load_arrays(run_dir: Path, name: str) -> dict[str, np.ndarray]:
    path = analysis_paths(Path(run_dir), name)[1]
    if not path.is_file():
        raise AtlasError(f"analysis {name} of {run_dir} saved no arrays")
    return read_npz(path, what=f"analysis {name} arrays")


def json_safe(value: Any) -> Any:
    """Plain JSON values: NumPy scalars and arrays converted, tuples as lists, NaN and infinities as None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
