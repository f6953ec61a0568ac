"""Study and sweep folders in the explorer: every run listed from its config.json, loaded only when used, the
study's own shape threshold, unfinished and unreadable runs said as such; the ``explore`` command."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from latent_atlas.cli import main
from latent_atlas.config import DataConfig
from latent_atlas.data import make_dataset
from latent_atlas.explorer import create_app
from latent_atlas.explorer.service import Explorer, dataset_size, default_pair, discover, safe_id
from latent_atlas.io import read_json, write_json
from latent_atlas.models.inference import decode
from latent_atlas.training import load_run

from .conftest import tiny_data_config

STUDY_THRESHOLD = 0.2


def copy_run(source: Path, target: Path, dataset: str, **changes) -> None:
    """A copy of a run folder whose config points at ``dataset`` (relative to the run) with some settings changed."""
    shutil.copytree(source, target)
    config = read_json(target / "config.json")
    config["data"]["path"] = dataset
    for dotted, value in changes.items():
        section, field = dotted.split("__")
        config[section][field] = value
    write_json(target / "config.json", config)


@pytest.fixture(scope="module")
def study(tmp_path_factory, trained_runs) -> Path:
    """A study-shaped folder: data/, oracle/ with its own threshold, and runs/ (one unfinished, one unreadable)."""
    root = tmp_path_factory.mktemp("study")
    (root / "data").mkdir()
    shutil.copy(trained_runs["vae"].dataset_path, root / "data" / "gaussian.npz")
    write_json(root / "oracle" / "gaussian.json", {"shape_threshold": STUDY_THRESHOLD, "family": "gaussian"})
    runs, data = root / "runs", "../../data/gaussian.npz"
    copy_run(trained_runs["vae"].path, runs / "gaussian-vae-s0", data)
    copy_run(trained_runs["ae"].path, runs / "gaussian-ae-s0", data)
    copy_run(trained_runs["vae"].path, runs / "gaussian-vae-beta4-s1", data, model__beta=4.0, train__seed=1)
    copy_run(trained_runs["vae"].path, runs / "gaussian-vae-latent_dim8-s0", data, model__latent_dim=8)
    (runs / "gaussian-vae-latent_dim8-s0" / "model.safetensors").unlink()  # still training
    (runs / "broken").mkdir()
    (runs / "broken" / "config.json").write_text("{not json")
    write_json(root / "results.json", {})
    return root


def test_a_conditional_run_in_a_study_is_skipped_with_its_reason(study, trained_runs, tmp_path):
    shutil.copytree(study, tmp_path / "study")
    copy_run(trained_runs["vae"].path, tmp_path / "study" / "runs" / "gaussian-cvae-s0", "../../data/gaussian.npz",
             model__kind="cvae", model__condition="rho")
    entries, skipped = discover([tmp_path / "study"])
    assert "gaussian-cvae-s0" not in {entry.id for entry in entries} and len(entries) == 4
    (cvae,) = [s for s in skipped if s["path"].endswith("gaussian-cvae-s0")]
    assert "is a cvae" in cvae["reason"] and "condition (rho)" in cvae["reason"]


@pytest.fixture(scope="module")
def client(study):
    with TestClient(create_app([study], max_batch=16)) as test_client:
        yield test_client


def test_a_study_folder_lists_every_run_with_its_settings(client, study):
    answer = client.get("/api/runs").json()
    listed = {r["id"]: (r["dataset_kind"], r["kind"], r["seed"], r["beta"], r["latent_dim"], r["ready"])
              for r in answer["runs"]}
    assert listed == {
        "gaussian-ae-s0": ("gaussian", "ae", 0, 1.0, 3, True),
        "gaussian-vae-beta4-s1": ("gaussian", "vae", 1, 4.0, 3, True),
        "gaussian-vae-latent_dim8-s0": ("gaussian", "vae", 0, 1.0, 8, False),
        "gaussian-vae-s0": ("gaussian", "vae", 0, 1.0, 3, True),
    }
    assert {r["collection"] for r in answer["runs"]} == {str(study)}
    (skipped,) = answer["skipped"]
    assert skipped["path"].endswith("broken") and "run config" in skipped["reason"]
    assert answer["default"] == {"a": "gaussian-vae-s0", "b": "gaussian-ae-s0"}  # the first VAE and its AE twin


def test_the_studys_own_shape_threshold_judges_its_runs(client, study):
    info = client.get("/api/runs/gaussian-vae-s0").json()
    assert info["oracle"]["threshold"] == STUDY_THRESHOLD
    assert "oracle/gaussian.json" in info["oracle"]["source"].replace("\\", "/")
    answer = client.post("/api/runs/gaussian-vae-s0/decode", json={"codes": [[0.0, 0.0, 0.0]]}).json()
    assert answer["threshold"] == STUDY_THRESHOLD
    assert answer["shape_ok"] == [answer["shape_residual"][0] <= STUDY_THRESHOLD]


def test_an_unfinished_run_is_listed_but_answers_409_until_trained(client):
    response = client.get("/api/runs/gaussian-vae-latent_dim8-s0")
    assert response.status_code == 409 and "has training finished" in response.json()["detail"]
    decode_eight = client.post("/api/runs/gaussian-vae-latent_dim8-s0/decode", json={"codes": [[0.0] * 8]})
    assert decode_eight.status_code == 409


def test_runs_load_when_first_used(study):
    app = create_app([study])
    explorer: Explorer = app.state.explorer
    with TestClient(app) as lazy:
        lazy.get("/api/runs")
        assert all(explorer.loaded(run_id) is None for run_id in explorer.ids)
        lazy.get("/api/runs/gaussian-ae-s0/codes", params={"limit": 1})
        assert [run_id for run_id in explorer.ids if explorer.loaded(run_id)] == ["gaussian-ae-s0"]


def test_a_run_from_the_study_decodes_as_its_model_does(client, study):
    codes = np.array([[0.3, -0.2, 0.1]], dtype=np.float32)
    answer = client.post("/api/runs/gaussian-ae-s0/decode", json={"codes": codes.tolist()}).json()
    image = np.frombuffer(base64.b64decode(answer["images"][0]), dtype=np.uint8).reshape(answer["image_shape"])
    model = load_run(study / "runs" / "gaussian-ae-s0").load_model()
    np.testing.assert_allclose(image / 255.0, decode(model, codes)[0], atol=0.5 / 255 + 1e-6)


def test_a_sweep_folder_and_a_run_folder_together(study, trained_runs, tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "data").mkdir(parents=True)
    shutil.copy(trained_runs["vae"].dataset_path, sweep / "data" / "gaussian.npz")
    copy_run(trained_runs["vae"].path, sweep / "runs" / "gaussian-vae-s0", "../../data/gaussian.npz")
    (sweep / "results.csv").write_text("run\n")
    entries, skipped = discover([sweep, trained_runs["ae"].path])
    assert [e.id for e in entries] == ["gaussian-vae-s0", "ae"] and skipped == []
    assert entries[0].oracle_path is None  # no oracle/ folder: the benchmark's rule will be used
    assert entries[1].collection == ""
    app = create_app([study, sweep])
    ids = app.state.run_ids
    assert "gaussian-vae-s0" in ids and "gaussian-vae-s0-2" in ids  # the same run name in two folders


def test_default_pair_for_runs_named_directly_is_their_order(trained_runs):
    entries, _ = discover([trained_runs["ae"].path, trained_runs["vae"].path])
    assert default_pair(entries, named_directly=True) == ("ae", "vae")
    assert default_pair(entries[:1], named_directly=True) == ("ae", None)


def test_run_ids_are_safe_url_segments():
    assert safe_id("gaussian-vae-beta0.5-s1") == "gaussian-vae-beta0.5-s1"
    assert safe_id("my run#1/x") == "my_run_1_x"
    assert safe_id("..") == "run.."


@pytest.mark.parametrize("config", [tiny_data_config(), tiny_data_config(sampling="random", n_samples=17),
                                    tiny_data_config(kind="student_t")], ids=["grid", "random", "student_t"])
def test_dataset_size_from_the_config_matches_the_dataset(config: DataConfig):
    assert dataset_size(config) == len(make_dataset(config))


def test_explore_reports_a_folder_without_runs(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["explore", str(tmp_path / "empty"), "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert "neither a run folder" in error and error.count("\n") == 1


def test_explore_takes_any_number_of_folders(study, trained_runs, monkeypatch):
    served = []
    monkeypatch.setattr("latent_atlas.explorer.serve", lambda folders, host, port: served.append((folders, host, port)))
    folders = [str(study), str(trained_runs["vae"].path), str(trained_runs["ae"].path)]
    assert main(["explore", *folders]) == 0
    assert served == [(folders, "127.0.0.1", 8000)]


def test_study_oracle_settings_without_a_threshold_make_the_run_unavailable(study, tmp_path):
    copy = tmp_path / "study"
    shutil.copytree(study, copy)
    (copy / "oracle" / "gaussian.json").write_text(json.dumps({"family": "gaussian"}))
    with TestClient(create_app([copy])) as broken:
        response = broken.get("/api/runs/gaussian-vae-s0")
    assert response.status_code == 409 and "shape_threshold" in response.json()["detail"]
