"""The study as one task graph (see ``study.plan``): every run of every section, every registered analysis
that applies to it, the dataset-level analyses, the aggregates over seeds and settings, and the report."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..graph import Task, run_tasks
from ..training.tracking import open_tracker
from . import analyses as _registered  # noqa: F401  (registers the analyses)
from .aggregates import (
    COMPARE_VERSION,
    EVIDENCE_VERSION,
    compare_models,
    curves_over_setting,
    quantity_params,
    validity_evidence,
)
from .config import StudyConfig
from .datasets import DATASET_ANALYSES
from .plan import GraphBuilder, RunTasks
from .quantities import COMPARISONS, CURVES, EVIDENCE_BAND, EVIDENCE_MARGINS
from .registry import ANALYSES
from .runs import CORE, study_runs


@dataclass
class StudyGraph:
    runs: dict[str, RunTasks]
    dataset_tasks: dict[str, Task]
    aggregates: dict[str, Task]
    report: Task


def _run_rows(runs: list[RunTasks]) -> list[dict[str, Any]]:
    return [{"run": r.spec.name, "run_dir": r.run_dir, "model": r.spec.model_kind, "seed": r.spec.seed,
             "data": r.spec.data_kind, "settings": dict(r.spec.settings), "groups": sorted(r.spec.groups)}
            for r in runs]


def study_graph(config: StudyConfig, with_report: bool = True, tracking: str = "none",
                root: Path | None = None) -> StudyGraph:
    """The study's task graph; ``root``, the output folder, keeps the names of the datasets it has finished."""
    builder = GraphBuilder(config.analysis_seed, tracking=tracking, quick=config.quick, root=root)
    runs = {spec.name: builder.run(spec, [n for n, a in ANALYSES.items() if a.applies(spec)])
            for spec in study_runs(config)}
    dataset_tasks: dict[str, Task] = {}
    for kind in config.datasets:
        data, oracle = builder.data_tasks(config.data_for(kind))
        for name, entry in DATASET_ANALYSES.items():
            if entry.applies(kind):
                path = f"datasets/{kind}/{name}.json"
                dataset_tasks[f"{kind}/{name}"] = Task(
                    f"dataset-{kind}-{name}", "analyse", entry.fn,
                    {"dataset": data.params["path"], "oracle": oracle.params["path"], "analysis": name,
                     "path": path, "seed": config.analysis_seed, **entry.params},
                    {"data": data, "oracle": oracle}, version=entry.version, outputs=(path,))
    aggregates: dict[str, Task] = {}
    for comparison in COMPARISONS:
        members = [r for r in runs.values() if comparison.group in r.spec.groups
                   and r.spec.data_kind == comparison.dataset and r.spec.model_kind in config.models]
        if not members or comparison.dataset not in config.datasets:
            continue
        path = f"aggregates/{comparison.name}.json"
        aggregates[comparison.name] = Task(
            f"aggregate-{comparison.name}", "aggregate", compare_models,
            {"runs": _run_rows(members), "models": list(config.models),
             "quantities": quantity_params(comparison.quantities), "path": path},
            {name: task for r in members for name, task in _analysis_inputs(r).items()}, version=COMPARE_VERSION,
            outputs=(path,))
    for kind in config.datasets:
        members = [r for r in runs.values() if CORE in r.spec.groups and r.spec.data_kind == kind
                   and r.spec.model_kind in config.models]
        if len(config.models) != 2 or not members:
            continue
        _, oracle = builder.data_tasks(config.data_for(kind))
        path = f"aggregates/evidence-{kind}.json"
        aggregates[f"evidence-{kind}"] = Task(
            f"aggregate-evidence-{kind}", "aggregate", validity_evidence,
            {"runs": _run_rows(members), "models": list(config.models), "oracle": oracle.params["path"],
             "band": list(EVIDENCE_BAND), "margins": EVIDENCE_MARGINS, "path": path},
            {name: task for r in members for name, task in _analysis_inputs(r).items()}, version=EVIDENCE_VERSION,
            outputs=(path,))
    for curve in CURVES:
        members = [r for r in runs.values() if curve.group in r.spec.groups]
        if not members:
            continue
        path = f"aggregates/{curve.name}.json"
        aggregates[curve.name] = Task(
            f"aggregate-{curve.name}", "aggregate", curves_over_setting,
            {"runs": _run_rows(members), "setting": curve.setting, "quantities": quantity_params(curve.quantities),
             "trend_from": curve.trend_from, "path": path},
            {name: task for r in members for name, task in _analysis_inputs(r).items()}, outputs=(path,))
    from ..report.build import ReportBuilder
    from .report_task import draw_report_section, report_files, write_report

    results = {"config": config.to_dict(), "runs": _run_rows(list(runs.values())),
               "aggregates": {name: t.params["path"] for name, t in aggregates.items()},
               "dataset_analyses": {name: t.params["path"] for name, t in dataset_tasks.items()},
               "datasets": {kind: _data_files(*builder.data_tasks(config.data_for(kind))) for kind in config.datasets}}
    everything = {**{name: t for r in runs.values() for name, t in _analysis_inputs(r).items()},
                  **{t.id: t for t in dataset_tasks.values()}, **{t.id: t for t in aggregates.values()}}
    sections = {}
    if with_report:
        sections = {f"report-{name}": Task(f"report-{name}", "report", draw_report_section,
                                           {**results, "section": name}, everything)
                    for name in ReportBuilder.SECTIONS}
    report = Task("report", "report", write_report, {**results, "with_report": with_report},
                  {**everything, **sections}, outputs=report_files(with_report))
    return StudyGraph(runs, dataset_tasks, aggregates, report)


def _data_files(data: Task, oracle: Task) -> dict[str, str]:
    """Where a kind's dataset, shape threshold and threshold examples are (named by ``GraphBuilder``)."""
    return {"data": data.params["path"], "oracle": oracle.params["path"], "examples": oracle.params["examples"]}


def _analysis_inputs(run: RunTasks) -> dict[str, Task]:
    return {run.evaluate.id: run.evaluate, **{t.id: t for t in run.analyses.values()}}


@dataclass
class StudyResult:
    output: Path
    config: StudyConfig
    graph: StudyGraph
    summaries: dict[str, dict[str, Any]]
    seconds: float

    @property
    def report(self) -> Path:
        return self.output / "report.html"


def run_study(config: StudyConfig, output: str | Path, backend: str = "ray", address: str | None = None,
              max_parallel: int | None = None, progress: bool = True, report: bool = True,
              tracking: str = "none") -> StudyResult:
    """Run (or resume) the whole study into ``output``: only tasks whose inputs changed are run again.
    ``tracking="tensorboard"`` logs every training to ``runs/<run>/tensorboard``."""
    started = time.perf_counter()
    output = Path(output)
    open_tracker(tracking, None)  # an unknown tracker or a missing package fails before any work
    graph = study_graph(config, with_report=report, tracking=tracking, root=output)
    summaries = run_tasks([graph.report], output, backend=backend, address=address, max_parallel=max_parallel,
                          progress=progress)
    return StudyResult(output, config, graph, summaries, time.perf_counter() - started)
