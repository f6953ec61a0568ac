"""The report's view of a study folder: which runs exist, and every file the report quotes or draws.

Everything is read from the study folder (results.json, the aggregates, each run's analyses), never from
memory, so the report shows exactly what the files say.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.latents import LatentCodes
from ..data import HeatmapDataset, load_dataset
from ..io import read_json, read_npz
from ..study.config import StudyConfig
from ..study.registry import analysis_paths
from ..training.history import read_history
from ..training.run import EVALUATION_FILE, HISTORY_FILE, LATENTS_FILE


@dataclass(frozen=True)
class RunRow:
    run: str
    run_dir: str
    model: str
    seed: int
    data: str
    settings: dict[str, Any]
    groups: tuple[str, ...]


class StudyFiles:
    def __init__(self, root: Path, results: dict[str, Any]):
        self.root = Path(root)
        self.results = results
        self.config = StudyConfig.model_validate(results["config"])
        self.rows = [RunRow(**{**row, "groups": tuple(row.get("groups", ()))}) for row in results["runs"]]
        self._datasets: dict[str, HeatmapDataset] = {}

    # -- runs ---------------------------------------------------------------------------------------------

    def runs(self, data: str | None = None, model: str | None = None, group: str = "core",
             seed: int | None = None) -> list[RunRow]:
        return [r for r in self.rows if (data is None or r.data == data) and (model is None or r.model == model)
                and group in r.groups and (seed is None or r.seed == seed)]

    @property
    def first_seed(self) -> int:
        return self.config.seeds[0]

    def representative(self, data: str, model: str) -> RunRow | None:
        """The core run of this dataset and model with the study's first seed: the one whose pictures are shown."""
        found = self.runs(data, model, seed=self.first_seed)
        return found[0] if found else None

    # -- files --------------------------------------------------------------------------------------------

    def analysis_file(self, row: RunRow, name: str) -> str:
        return f"{row.run_dir}/analysis/{name}.json"

    def has_analysis(self, row: RunRow, name: str) -> bool:
        return analysis_paths(self.root / row.run_dir, name)[0].is_file()

    def analysis(self, row: RunRow, name: str) -> dict[str, Any]:
        return read_json(analysis_paths(self.root / row.run_dir, name)[0], what=f"analysis {name}")

    def arrays(self, row: RunRow, name: str) -> dict[str, np.ndarray]:
        return read_npz(analysis_paths(self.root / row.run_dir, name)[1], what=f"analysis {name} arrays")

    def evaluation(self, row: RunRow) -> dict[str, np.ndarray]:
        return read_npz(self.root / row.run_dir / EVALUATION_FILE, what="evaluation")

    def latents(self, row: RunRow) -> LatentCodes:
        return LatentCodes.load(self.root / row.run_dir / LATENTS_FILE)

    def history(self, row: RunRow) -> list[dict[str, float]]:
        return read_history(self.root / row.run_dir / HISTORY_FILE)

    def aggregate_path(self, name: str) -> str | None:
        return self.results["aggregates"].get(name)

    def aggregate(self, name: str) -> dict[str, Any] | None:
        path = self.aggregate_path(name)
        return read_json(self.root / path, what="aggregate") if path else None

    def dataset_analysis_path(self, data: str, name: str) -> str | None:
        return self.results["dataset_analyses"].get(f"{data}/{name}")

    def data_file(self, data: str, what: str) -> str:
        """The study's file of kind ``data``: "data", "oracle" or "examples" (the names the graph gave them; a
        folder may hold other configs' files beside them)."""
        default = {"data": f"data/{data}.npz", "oracle": f"oracle/{data}.json",
                   "examples": f"oracle/{data}-examples.npz"}[what]
        return self.results.get("datasets", {}).get(data, {}).get(what, default)

    def oracle_path(self, data: str) -> str:
        return self.data_file(data, "oracle")

    def oracle(self, data: str) -> dict[str, Any]:
        return read_json(self.root / self.oracle_path(data), what="oracle settings")

    def oracle_examples(self, data: str) -> dict[str, np.ndarray]:
        return read_npz(self.root / self.data_file(data, "examples"), what="oracle examples")

    def dataset(self, data: str) -> HeatmapDataset:
        if data not in self._datasets:
            self._datasets[data] = load_dataset(self.root / self.data_file(data, "data"))
        return self._datasets[data]

    @cached_property
    def datasets(self) -> tuple[str, ...]:
        return tuple(kind for kind in self.config.datasets if self.runs(kind))
