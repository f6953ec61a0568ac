"""The study's last task: results.json (study-level numbers, stage timings from the ledger) and the report."""

from __future__ import annotations

import platform
from typing import Any

from .. import __version__
from ..graph import TaskContext
from ..graph.task import LEDGER_DIR
from ..io import read_json, write_json

RESULTS_FILE = "results.json"


def stage_seconds(root) -> dict[str, float]:
    """Seconds of task time per stage, summed over the ledger (task time, not wall time: tasks overlap)."""
    totals: dict[str, float] = {}
    for path in sorted((root / LEDGER_DIR).glob("*.json")):
        entry = read_json(path, what="ledger entry")
        if isinstance(entry, dict) and "stage" in entry:
            totals[entry["stage"]] = round(totals.get(entry["stage"], 0.0) + float(entry.get("seconds", 0.0)), 2)
    return totals


def machine() -> dict[str, Any]:
    import os

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    except OSError:
        pass

    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform()}


def report_results(params: dict[str, Any]) -> dict[str, Any]:
    return {"latent_atlas_version": __version__, "config": params["config"], "runs": params["runs"],
            "aggregates": params["aggregates"], "dataset_analyses": params["dataset_analyses"]}


def draw_report_section(ctx: TaskContext) -> dict[str, Any]:
    """One section of the report's figures (sections are independent tasks, so they run in parallel)."""
    from ..report.build import FIGURES_DIR, ReportBuilder, section_manifest

    section = ctx.params["section"]
    manifest = ReportBuilder(ctx.root, report_results(ctx.params)).draw_section(section)
    files = [section_manifest(section), *(f"{FIGURES_DIR}/{entry['file']}" for entry in manifest.values())]
    return {"figures": len(manifest), "files": files}


def write_report(ctx: TaskContext) -> dict[str, Any]:
    """results.json (with the ledger's task times and the machine), then the HTML from the drawn sections."""
    results = {**report_results(ctx.params), "task_seconds_by_stage": stage_seconds(ctx.root), "machine": machine()}
    write_json(ctx.root / RESULTS_FILE, results)
    report = None
    if ctx.params["with_report"]:
        from ..report.build import write_report_html

        report = write_report_html(ctx.root, results).relative_to(ctx.root).as_posix()
    return {"results": RESULTS_FILE, "report": report}


def report_files(with_report: bool) -> tuple[str, ...]:
    """What the report task leaves: results.json, and the HTML when it writes one."""
    from ..report.build import REPORT_FILE

    return (RESULTS_FILE, REPORT_FILE) if with_report else (RESULTS_FILE,)
