"""`latent-atlas sweep` through a real local Ray instance: results.csv, caching, and a SIGKILL mid-run."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latent_atlas.errors import ConfigError
from latent_atlas.graph.ray_backend import processes_with_marker
from latent_atlas.io import read_json
from latent_atlas.study.sweep import sweep_runs

SWEEP_TOML = """
[sweep]
"model.kind" = ["vae", "ae"]
"train.seed" = [0, 1]
[data]
kind = "gaussian"
grid_size = 12
var_x = { values = [0.3, 1.0, 2.5] }
var_y = { values = [0.3, 1.0, 2.5] }
rho = { values = [-0.6, 0.0, 0.3, 0.7] }
[model]
channels = [4, 8]
hidden_dims = [16]
[train]
epochs = 6
batch_size = 4
early_stopping_patience = 10
"""


def sweep(config: Path, output: Path, quiet: bool = False) -> subprocess.Popen:
    stream = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen([sys.executable, "-m", "latent_atlas.cli", "sweep", str(config), "-o", str(output)],
                            stdout=stream, stderr=stream, text=True)


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return [{k: v for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(handle)]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sweep") / "sweep.toml"
    path.write_text(SWEEP_TOML)
    return path


@pytest.fixture(scope="module")
def finished(config, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    output = tmp_path_factory.mktemp("sweep") / "out"
    process = sweep(config, output)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    return output, subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_sweep_writes_one_row_per_run(finished):
    output, result = finished
    table = rows(output / "results.csv")
    assert [(r["model.kind"], r["train.seed"]) for r in table] == [("vae", "0"), ("vae", "1"), ("ae", "0"), ("ae", "1")]
    for row in table:
        metrics = read_json(output / row["run_dir"] / "metrics.json")
        assert float(row["test_frobenius_mean"]) == pytest.approx(metrics["test_frobenius"]["mean"])
        assert int(row["epochs"]) == metrics["training"]["epochs_run"] == 6
    assert "wrote" in result.stdout and "results.csv: 4 runs" in result.stdout
    assert "[11/11 tasks | runs 4/4]" in result.stderr  # progress: tasks and runs done / total
    assert "\r" not in result.stderr and "\x1b" not in result.stderr  # stderr is not a terminal: no bar redraws


def test_sweep_started_again_redoes_nothing(finished, config):
    output, _ = finished
    before = {p: p.stat().st_mtime_ns for p in (output / "runs").rglob("model.safetensors")}
    started = time.perf_counter()
    process = sweep(config, output)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0
    assert "11 tasks, 11 already done, 0 to run" in err
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert time.perf_counter() - started < 30


def test_sweep_killed_mid_training_resumes_to_the_same_rows(finished, config, tmp_path):
    reference, _ = finished
    output = tmp_path / "killed"
    process = sweep(config, output, quiet=True)
    deadline = time.monotonic() + 300
    while not list((output / "runs").glob("*/training_state.safetensors")):
        assert process.poll() is None and time.monotonic() < deadline, "the sweep never reached a training epoch"
        time.sleep(0.05)
    marker = read_json(output / "tasks" / "ray-session.json")["marker"]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (output / "results.csv").exists()

    restarted = sweep(config, output)
    _, err = restarted.communicate(timeout=600)
    assert restarted.returncode == 0, err
    assert rows(output / "results.csv") == rows(reference / "results.csv")
    assert processes_with_marker(marker) == []  # the killed run's Ray processes were stopped
    assert not (output / "tasks" / "ray-session.json").exists()


def test_bad_sweep_tables_name_the_key():
    with pytest.raises(ConfigError, match="sweep.model.depth: model has no field 'depth'"):
        sweep_runs({"sweep": {"model.depth": [1, 2]}})
    with pytest.raises(ConfigError, match="keys look like data"):
        sweep_runs({"sweep": {"seed": [1, 2]}})
    with pytest.raises(ConfigError, match="non-empty list"):
        sweep_runs({"sweep": {"train.seed": 3}})
    with pytest.raises(ConfigError, match="model.beta"):
        sweep_runs({"sweep": {"model.beta": [-1.0]}})
    with pytest.raises(ConfigError, match="needs at least one dotted key"):
        sweep_runs({"data": {}})
