import json
import sys

import pytest

from latent_atlas.errors import AtlasError
from latent_atlas.training import train
from latent_atlas.training.history import read_history
from latent_atlas.training.tracking import TENSORBOARD_DIR, flatten, open_tracker

from .conftest import tiny_model_config, tiny_train_config


def _events(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    return EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "tensors": 0}).Reload()


def _scalars(events, tag):
    return [(event.step, event.value) for event in events.Scalars(tag)]


def _train(dataset, data_path, run_dir, **kwargs):
    return train(dataset, data_path, tiny_model_config(kind="vae"), tiny_train_config(epochs=3), run_dir,
                 progress=False, **kwargs)


def test_tensorboard_logs_params_epochs_and_final_metrics(tmp_path, tiny_dataset, tiny_dataset_file):
    result = _train(tiny_dataset, tiny_dataset_file, tmp_path / "r", tracking="tensorboard")
    events = _events(tmp_path / "r" / TENSORBOARD_DIR)
    history = read_history(tmp_path / "r" / "history.csv")

    for name in ("train_loss", "val_loss", "val_kl", "learning_rate"):
        logged = _scalars(events, f"epoch/{name}")
        assert [step for step, _ in logged] == [1, 2, 3]
        assert [value for _, value in logged] == pytest.approx([row[name] for row in history], rel=1e-6)
    assert _scalars(events, "final/best_val_loss") == [(0, pytest.approx(result.best_val_loss, rel=1e-6))]
    assert _scalars(events, "final/epochs_run") == [(0, 3.0)]

    text = events.Tensors("params/text_summary")[0].tensor_proto.string_val[0].decode()
    params = json.loads(text.removeprefix("```json\n").removesuffix("\n```"))
    assert params == json.loads((tmp_path / "r" / "config.json").read_text())
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["train.learning_rate"].number_value == params["train"]["learning_rate"]
    assert hparams["model.kind"].string_value == "vae"
    assert json.loads(hparams["model.channels"].string_value) == [4, 8]


def test_final_metrics_can_be_added_after_evaluation(trained_runs, tmp_path, tiny_dataset, tiny_dataset_file):
    run = _train(tiny_dataset, tiny_dataset_file, tmp_path / "r", tracking="tensorboard").run
    tracker = open_tracker("tensorboard", run.path)
    tracker.log_final({"test_frobenius": {"mean": 0.25, "p99": 0.5}, "n_test_images": 7, "label": "text is skipped"})
    tracker.close()
    events = _events(run.path / TENSORBOARD_DIR)
    assert _scalars(events, "final/test_frobenius.mean") == [(0, 0.25)]
    assert _scalars(events, "final/n_test_images") == [(0, 7.0)]
    assert _scalars(events, "final/epochs_run") == [(0, 3.0)]  # the training's own, from the first event file
    assert "final/label" not in events.Tags()["scalars"]


def test_resumed_run_logs_each_epoch_once(tmp_path, tiny_dataset, tiny_dataset_file):
    partial = _train(tiny_dataset, tiny_dataset_file, tmp_path / "r", tracking="tensorboard", max_new_epochs=1)
    assert partial.run is None
    assert "final/epochs_run" not in _events(tmp_path / "r" / TENSORBOARD_DIR).Tags()["scalars"]
    _train(tiny_dataset, tiny_dataset_file, tmp_path / "r", tracking="tensorboard", resume=True)
    events = _events(tmp_path / "r" / TENSORBOARD_DIR)
    assert [step for step, _ in _scalars(events, "epoch/val_loss")] == [1, 2, 3]
    assert len(events.Tensors("params/text_summary")) == 1


def test_tracking_is_off_by_default(tmp_path, tiny_dataset, tiny_dataset_file):
    _train(tiny_dataset, tiny_dataset_file, tmp_path / "r")
    assert not (tmp_path / "r" / TENSORBOARD_DIR).exists()


def test_unknown_tracker_is_a_clear_error(tmp_path, tiny_dataset, tiny_dataset_file):
    with pytest.raises(AtlasError, match="unknown tracking 'mlflow'"):
        _train(tiny_dataset, tiny_dataset_file, tmp_path / "r", tracking="mlflow")
    assert not (tmp_path / "r").exists()


def test_missing_tensorboard_package_is_a_clear_error(tmp_path, tiny_dataset, tiny_dataset_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes `import tensorboard` raise ImportError
    with pytest.raises(AtlasError, match="needs the tensorboard package"):
        _train(tiny_dataset, tiny_dataset_file, tmp_path / "r", tracking="tensorboard")
    assert not (tmp_path / "r").exists()
    _train(tiny_dataset, tiny_dataset_file, tmp_path / "r")  # without tracking the package is not needed


def test_flatten_dots_nested_keys():
    assert flatten({"a": {"b": 1, "c": {"d": [2]}}, "e": None}) == {"a.b": 1, "a.c.d": [2], "e": None}


SWEEP = {
    "sweep": {"model.kind": ["vae", "ae"]},
    "data": {"kind": "gaussian", "grid_size": 12, "var_x": {"values": [0.3, 1.0, 2.5]},
             "var_y": {"values": [0.3, 1.0, 2.5]}, "rho": {"values": [-0.6, 0.0, 0.3, 0.7]}},
    "model": {"channels": [4, 8], "hidden_dims": [16]},
    "train": {"epochs": 2, "batch_size": 4},
}


def test_sweep_tracks_every_run_without_changing_its_key(tmp_path):
    from latent_atlas.study.sweep import run_sweep, sweep_graph

    assert sweep_graph(SWEEP, tracking="tensorboard").key == sweep_graph(SWEEP).key
    run_sweep(SWEEP, tmp_path, backend="local", progress=False, tracking="tensorboard")
    for run in ("gaussian-vae-s0", "gaussian-ae-s0"):
        folder = tmp_path / "runs" / run
        events = _events(folder / TENSORBOARD_DIR)
        assert [step for step, _ in _scalars(events, "epoch/val_loss")] == [1, 2]
        metrics = json.loads((folder / "metrics.json").read_text())
        assert _scalars(events, "final/test_frobenius.mean") == [
            (0, pytest.approx(metrics["test_frobenius"]["mean"], rel=1e-6))]
    ledger = sorted(p.stat().st_mtime_ns for p in (tmp_path / "tasks").glob("*.json"))
    run_sweep(SWEEP, tmp_path, backend="local", progress=False)  # tracking off: the same tasks, nothing redone
    assert sorted(p.stat().st_mtime_ns for p in (tmp_path / "tasks").glob("*.json")) == ledger


def test_cli_rejects_an_unknown_tracker(capsys):
    from latent_atlas.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["study", "--track", "mlflow", "-o", "unused"])
    assert exit_info.value.code == 2 and "invalid choice: 'mlflow'" in capsys.readouterr().err
