"""Sweeps: any grid over dataset, model and training settings, run through the study's task graph.

    [sweep]                        # dotted config keys -> the values to try; the grid is their product
    "model.kind" = ["vae", "ae"]
    "train.seed" = [0, 1, 2]
    [data]                         # fixed values, exactly as `latent-atlas data` / `train` read them
    kind = "gaussian"
    [model]
    [train]

Writes ``DIR/results.csv`` (one row per run: the grid's settings, the run folder and its headline
metrics) beside the runs, datasets and the task ledger.
"""

from __future__ import annotations

import csv
import io
import itertools
from pathlib import Path
from typing import Any

from ..config import DataConfig, ModelConfig, TrainConfig, build, section
from ..errors import AtlasError, ConfigError
from ..graph import Task, TaskContext, run_tasks
from ..io import read_json, write_text
from ..training.run import METRICS_FILE
from ..training.tracking import open_tracker
from .plan import GraphBuilder
from .runs import RunSpec, run_name

RESULTS_FILE = "results.csv"
CONFIG_CLASSES = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
METRIC_COLUMNS = ("test_frobenius_mean", "test_frobenius_median", "test_frobenius_p99", "reconstructions_valid",
                  "epochs", "train_seconds")


def parse_grid(document: dict[str, Any]) -> dict[str, list[Any]]:
    grid = section(document, "sweep")
    if not grid:
        raise ConfigError("invalid config: [sweep] needs at least one dotted key with a list of values, "
                          'e.g. "train.seed" = [0, 1]')
    for key, values in grid.items():
        table, _, field = key.partition(".")
        if table not in CONFIG_CLASSES or not field or "." in field:
            raise ConfigError(f"invalid config: sweep.{key}: keys look like data.<field>, model.<field> or "
                              "train.<field>")
        if field not in CONFIG_CLASSES[table].model_fields:
            raise ConfigError(f"invalid config: sweep.{key}: {table} has no field {field!r}")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"invalid config: sweep.{key}: needs a non-empty list of values")
    return grid


def sweep_runs(document: dict[str, Any]) -> list[RunSpec]:
    """One RunSpec per point of the grid, every config validated before anything runs."""
    grid = parse_grid(document)
    base = {name: section(document, name) for name in CONFIG_CLASSES}
    specs, names = [], set()
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        tables = {name: dict(base[name]) for name in CONFIG_CLASSES}
        for key, value in point.items():
            table, _, field = key.partition(".")
            tables[table][field] = value
        configs = {name: build(cls, tables[name], section=name) for name, cls in CONFIG_CLASSES.items()}
        named = {k: v for k, v in point.items() if k not in ("data.kind", "model.kind", "train.seed")}
        name = run_name(configs["data"].kind, configs["model"].kind, configs["train"].seed, named)
        if name in names:
            raise ConfigError(f"invalid config: the sweep names two runs {name}; make the grid's values distinct")
        names.add(name)
        specs.append(RunSpec(name, configs["data"], configs["model"], configs["train"], frozenset({"sweep"}),
                             tuple(point.items())))
    return specs


def write_results_table(ctx: TaskContext) -> dict[str, Any]:
    """``results.csv``: one row per run, the grid's settings first, then the run folder and its metrics."""
    keys = ctx.params["keys"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*keys, "run_dir", *METRIC_COLUMNS])
    for row in ctx.params["rows"]:
        metrics = read_json(ctx.root / row["run_dir"] / METRICS_FILE, what="run metrics")
        fro, training = metrics["test_frobenius"], metrics.get("training", {})
        valid = metrics.get("reconstruction_verdict", {}).get("valid")
        writer.writerow([*row["values"], row["run_dir"], fro["mean"], fro["median"], fro["p99"], valid,
                         training.get("epochs_run"), training.get("seconds")])
    write_text(ctx.root / RESULTS_FILE, buffer.getvalue())
    return {"rows": len(ctx.params["rows"]), "file": RESULTS_FILE}


def sweep_graph(document: dict[str, Any], tracking: str = "none", root: Path | None = None) -> Task:
    """The sweep's task graph; ``root``, the output folder, keeps the names of the datasets it has finished."""
    specs = sweep_runs(document)
    builder = GraphBuilder(tracking=tracking, root=root)
    keys = list(parse_grid(document))
    runs = [builder.run(spec) for spec in specs]
    rows = [{"values": [dict(spec.settings)[k] for k in keys], "run_dir": r.run_dir} for spec, r in zip(specs, runs)]
    return Task("results", "results", write_results_table, {"keys": keys, "rows": rows},
                {r.spec.name: r.evaluate for r in runs}, outputs=(RESULTS_FILE,))


def run_sweep(document: dict[str, Any], output: str | Path, backend: str = "ray", address: str | None = None,
              max_parallel: int | None = None, progress: bool = True, tracking: str = "none") -> Path:
    """Run the sweep into ``output``; returns the path of results.csv."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise AtlasError(f"-o {output} is a file; give a folder for the sweep")
    open_tracker(tracking, None)  # an unknown tracker or a missing package fails before any work
    target = sweep_graph(document, tracking=tracking, root=output)
    run_tasks([target], output, backend=backend, address=address, max_parallel=max_parallel, progress=progress)
    return output / RESULTS_FILE
