"""The study and sweeps as task graphs: dataset -> shape threshold -> train -> evaluate -> analyses ->
aggregates -> report (or, for a sweep, the results table).

    data/<kind>.npz                 dataset          (make_data)
    oracle/<kind>.json              shape threshold  (fix_shape_threshold: the corruption benchmark's rule)
    runs/<run>/                     training         (train_run), evaluation (evaluate_run)
    runs/<run>/analysis/<name>.*    registered analyses (analyse_run)
    aggregates/<name>.json          statistics over seeds and settings
    report.html, figures/           the report
    tasks/<task>.json               the ledger: one entry per finished task
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import DataConfig
from ..graph import Task
from ..graph.task import ledger_entry
from . import tasks
from .registry import ANALYSES
from .runs import RunSpec

TRAIN_VERSION = 1


def _short_hash(value: dict) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


@dataclass
class RunTasks:
    spec: RunSpec
    data: Task
    oracle: Task
    train: Task
    evaluate: Task
    analyses: dict[str, Task] = field(default_factory=dict)

    @property
    def run_dir(self) -> str:
        return self.train.params["run_dir"]


class GraphBuilder:
    """Builds each dataset's and oracle's task once, however many runs share them."""

    def __init__(self, analysis_seed: int = 0, tracking: str = "none", quick: bool = False, root: Path | None = None):
        self.analysis_seed = analysis_seed
        self.root = root  # the output folder, when known: its finished datasets keep their names
        self.quick = quick  # analyses use their smaller --quick settings
        self.tracking = tracking  # experiment tracking of training and evaluation; not part of any key
        self._data: dict[str, tuple[DataConfig, Task, Task]] = {}

    def data_tasks(self, config: DataConfig) -> tuple[Task, Task]:
        """(dataset task, shape threshold task), named by :meth:`_data_name`."""
        key = json.dumps(config.to_dict(), sort_keys=True)
        if key not in self._data:
            name = self._data_name(config)
            data = Task(f"data-{name}", "data", tasks.make_data,
                        {"data": config.to_dict(), "path": f"data/{name}.npz"}, outputs=(f"data/{name}.npz",))
            oracle_files = {"path": f"oracle/{name}.json", "examples": f"oracle/{name}-examples.npz"}
            oracle = Task(f"oracle-{name}", "oracle", tasks.fix_shape_threshold,
                          {"data": config.to_dict(), **oracle_files}, outputs=tuple(oracle_files.values()))
            self._data[key] = (config, data, oracle)
        _, data, oracle = self._data[key]
        return data, oracle

    def _data_name(self, config: DataConfig) -> str:
        """The kind alone ("gaussian") for one config of each kind, kind + hash for the others. Which config holds
        the plain name is settled by the output folder when it has finished that dataset (its ledger), so that a
        later graph with other data configs, or the same ones in another order, never rewrites a dataset that
        finished runs were trained on; in a new folder the first config of its kind in the graph takes it."""
        hashed = f"{config.kind}-{_short_hash(config.to_dict())}"
        recorded = None if self.root is None else ledger_entry(self.root, f"data-{config.kind}")
        if recorded is not None:
            same = json.dumps((recorded.get("params") or {}).get("data"), sort_keys=True) == json.dumps(
                config.to_dict(), sort_keys=True)
            return config.kind if same else hashed
        plain_taken = any(c.kind == config.kind and data.params["path"] == f"data/{config.kind}.npz"
                          for c, data, _ in self._data.values())
        return hashed if plain_taken else config.kind

    @staticmethod
    def _groups(analysis, spec: RunSpec) -> dict:
        """For an analysis that behaves differently per study section: the run's sections it applies to."""
        return {"groups": sorted(spec.groups & set(analysis.groups))} if analysis.group_aware else {}

    def run(self, spec: RunSpec, analyses: Iterable[str] = ()) -> RunTasks:
        data, oracle = self.data_tasks(spec.data)
        run_dir = f"runs/{spec.name}"
        train = Task(f"train-{spec.name}", "train", tasks.train_run,
                     {"dataset": data.params["path"], "model": spec.model.to_dict(), "train": spec.train.to_dict(),
                      "run_dir": run_dir}, {"data": data}, version=TRAIN_VERSION,
                     options={"tracking": self.tracking}, outputs=tasks.run_files(run_dir, tasks.TRAINING_FILES))
        paths = {"dataset": data.params["path"], "oracle": oracle.params["path"], "run_dir": run_dir}
        evaluate = Task(f"evaluate-{spec.name}", "evaluate", tasks.evaluate_run, paths,
                        {"train": train, "oracle": oracle}, options={"tracking": self.tracking},
                        outputs=tasks.run_files(run_dir, tasks.EVALUATION_FILES))
        run_tasks = RunTasks(spec, data, oracle, train, evaluate)
        for name in analyses:
            analysis = ANALYSES[name]
            run_tasks.analyses[name] = Task(
                f"analyse-{spec.name}-{name}", "analyse", tasks.analyse_run,
                {**paths, "analysis": name, "analysis_seed": self.analysis_seed,
                 "settings": {**analysis.settings(self.quick), **self._groups(analysis, spec)}},
                {"evaluate": evaluate}, version=analysis.version)
        return run_tasks
