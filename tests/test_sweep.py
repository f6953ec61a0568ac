"""`latent-atlas sweep` through a real local Ray instance: results.csv, caching, and a SIGKILL mid-run."""

from __future__ import annotations

import csv
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from latent_atlas.errors import ConfigError
from latent_atlas.graph.ray_backend import SESSION_ENV, is_loopback_address, processes_with_marker, stop_processes
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


def sweep(config: Path, output: Path, quiet: bool = False, extra: tuple[str, ...] = (),
          env: dict[str, str] | None = None) -> subprocess.Popen:
    stream = subprocess.DEVNULL if quiet else subprocess.PIPE
    return subprocess.Popen([sys.executable, "-m", "latent_atlas.cli", "sweep", str(config), "-o", str(output), *extra],
                            stdout=stream, stderr=stream, text=True, env=env)


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


def test_sweep_terminated_mid_training_stops_ray_and_leaves_nothing(config, tmp_path):
    output = tmp_path / "terminated"
    process = sweep(config, output, extra=("-q",))  # stderr read: no progress lines to fill the pipe
    deadline = time.monotonic() + 300
    while not list((output / "runs").glob("*/training_state.safetensors")):
        assert process.poll() is None and time.monotonic() < deadline, "the sweep never reached a training epoch"
        time.sleep(0.05)
    session = read_json(output / "tasks" / "ray-session.json")
    os.kill(process.pid, signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "latent-atlas sweep: terminated" and "SIGTERM received" not in err
    assert not Path(session["temp_dir"]).exists() and not (output / "tasks" / "ray-session.json").exists()
    assert processes_with_marker(session["marker"]) == []


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


def test_run_folders_name_each_grid_value_readably():
    specs = sweep_runs({"sweep": {"train.adam_betas": [[0.9, 0.95], [0.9, 0.999]], "model.beta": [0.5, 4]}})
    assert [spec.name for spec in specs] == [
        "gaussian-vae-beta0.5-adam_betas0.9_0.95-s0", "gaussian-vae-beta4-adam_betas0.9_0.95-s0",
        "gaussian-vae-beta0.5-adam_betas0.9_0.999-s0", "gaussian-vae-beta4-adam_betas0.9_0.999-s0",
    ]
    assert specs[0].train.adam_betas == (0.9, 0.95)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ray_head():
    """A Ray cluster head started the way a user would (`ray start --head`), on loopback, with token
    authentication on; yields (address, token, session marker) and stops its processes afterwards."""
    marker, token = secrets.token_hex(8), secrets.token_hex(16)
    temp_dir = tempfile.mkdtemp(prefix="la-head-")  # short: Ray's socket paths have a length limit
    port = free_port()
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, SESSION_ENV: marker}
    ray = Path(sys.executable).with_name("ray")
    try:
        subprocess.run([str(ray), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                        "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
                       env=env, check=True, capture_output=True, timeout=180)
        yield f"127.0.0.1:{port}", token, marker
    finally:
        stop_processes(marker)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:6379", True), ("localhost:6379", True), ("ray://127.0.0.1:10001", True), ("[::1]:6379", True),
    ("10.0.0.5:6379", False), ("head.cluster:6379", False), ("auto", False),
])
def test_loopback_addresses_are_recognised(address, expected):
    assert is_loopback_address(address) is expected


@pytest.mark.slow
def test_sweep_joins_an_existing_cluster_with_token_auth(finished, config, ray_head, tmp_path):
    reference, _ = finished
    address, token, marker = ray_head
    # The token reaches the driver as a user would give it; the driver must switch to token mode itself.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"RAY_AUTH_TOKEN": token}
    process = sweep(config, tmp_path / "cluster", extra=("--address", address), env=env)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert rows(tmp_path / "cluster" / "results.csv") == rows(reference / "results.csv")  # same runs as locally
    assert "[11/11 tasks | runs 4/4]" in err
    assert processes_with_marker(marker), "the driver must leave a cluster it joined running"


def test_an_address_where_nothing_listens_fails_at_once(config, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    process = sweep(config, tmp_path / "nowhere", extra=("--address", address))
    _, err = process.communicate(timeout=120)  # Ray alone retries a refused connection for minutes
    assert process.returncode != 0
    assert f"could not connect to the Ray cluster at {address}: nothing answers there" in err
    assert "Traceback" not in err and not (tmp_path / "nowhere" / "results.csv").exists()


@pytest.mark.slow
def test_a_cluster_refusing_the_driver_is_one_clear_error(config, ray_head, tmp_path):
    address, _, _ = ray_head
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"RAY_AUTH_TOKEN": "wrong-token"}
    process = sweep(config, tmp_path / "refused", extra=("--address", address), env=env)
    _, err = process.communicate(timeout=300)
    assert process.returncode != 0
    assert f"could not connect to the Ray cluster at {address}" in err
    assert "Traceback" not in err
    assert not (tmp_path / "refused" / "results.csv").exists()
