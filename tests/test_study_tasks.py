"""The study's tasks keep what has finished: a new config trains beside an old run, datasets keep their names."""

from __future__ import annotations

from pathlib import Path

import pytest

from latent_atlas.graph import TaskContext
from latent_atlas.graph.task import ledger_path
from latent_atlas.io import file_sha256, write_json
from latent_atlas.study import tasks
from latent_atlas.study.plan import GraphBuilder

from .conftest import tiny_data_config, tiny_model_config, tiny_train_config


def _train_context(root: Path, epochs: int) -> TaskContext:
    return TaskContext(root=root, task_id="train-tiny", input_ids={},
                       params={"dataset": "data/tiny.npz", "run_dir": "runs/tiny",
                               "model": tiny_model_config().to_dict(), "train": tiny_train_config(epochs=epochs).to_dict()})


def test_a_new_config_that_fails_leaves_the_finished_run_as_it_was(tmp_path, tiny_dataset, monkeypatch):
    (tmp_path / "data").mkdir()
    tiny_dataset.save(tmp_path / "data/tiny.npz")
    tasks.train_run(_train_context(tmp_path, epochs=1))
    run = tmp_path / "runs/tiny"
    before = {path.name: file_sha256(path) for path in run.iterdir() if path.is_file()}

    def fails(*args, **kwargs):
        raise RuntimeError("the new config's training failed")

    monkeypatch.setattr(tasks, "train", fails)
    with pytest.raises(RuntimeError, match="failed"):
        tasks.train_run(_train_context(tmp_path, epochs=2))  # other settings: trains beside the finished run
    assert {path.name: file_sha256(path) for path in run.iterdir() if path.is_file()} == before
    monkeypatch.undo()

    summary = tasks.train_run(_train_context(tmp_path, epochs=2))  # succeeds: replaces it, nothing left aside
    assert summary["epochs"] == 2 and not summary["resumed"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["tiny"]
    assert summary["model_sha256"] == file_sha256(run / "model.safetensors") != before["model.safetensors"]
    again = tasks.train_run(_train_context(tmp_path, epochs=2))  # the same settings: resumed in place
    assert again["resumed"] and again["model_sha256"] == summary["model_sha256"]


def test_a_kill_between_the_two_renames_keeps_the_new_run(tmp_path, tiny_dataset):
    (tmp_path / "data").mkdir()
    tiny_dataset.save(tmp_path / "data/tiny.npz")
    tasks.train_run(_train_context(tmp_path, epochs=1))
    # the state a kill leaves after the old run was moved aside and before the staged one took its place
    runs = tmp_path / "runs"
    (runs / "tiny").rename(runs / ".tiny.replaced")
    staged = _train_context(tmp_path, epochs=2)
    tasks.train_run(staged)  # nothing at runs/tiny: trains there
    (runs / "tiny").rename(runs / ".tiny.training")
    summary = tasks.train_run(staged)  # the staged run of these settings is resumed (finished), then put in place
    assert summary["resumed"]
    assert sorted(p.name for p in runs.iterdir()) == ["tiny"]


def test_the_explorer_does_not_list_a_staged_run(tmp_path, tiny_dataset):
    from latent_atlas.explorer.service import run_folders

    (tmp_path / "data").mkdir()
    tiny_dataset.save(tmp_path / "data/tiny.npz")
    tasks.train_run(_train_context(tmp_path, epochs=1))
    (tmp_path / "runs/tiny").rename(tmp_path / "runs/.tiny.training")
    tasks.train_run(_train_context(tmp_path, epochs=1))
    assert [p.name for p in run_folders(tmp_path)] == ["tiny"]


def _finish(root: Path, task) -> None:
    write_json(ledger_path(root, task.id), {"key": task.key, "summary": {}, "params": task.params})


def test_datasets_keep_their_names_whatever_configs_come_later(tmp_path):
    first, second = tiny_data_config(), tiny_data_config(grid_size=10)
    data, _ = GraphBuilder(root=tmp_path).data_tasks(first)
    assert data.params["path"] == "data/gaussian.npz"
    _finish(tmp_path, data)
    # a later graph in the same folder whose first config is another one: it must not take (and rewrite) that file
    builder = GraphBuilder(root=tmp_path)
    later, _ = builder.data_tasks(second)
    again, _ = builder.data_tasks(first)
    assert later.params["path"].startswith("data/gaussian-") and again.params["path"] == "data/gaussian.npz"
    assert again.key == data.key  # so the runs trained on it are not redone
    # in a fresh folder the first config of a kind takes the plain name, the others a hashed one
    fresh = GraphBuilder(root=tmp_path / "elsewhere")
    assert fresh.data_tasks(second)[0].params["path"] == "data/gaussian.npz"
    assert fresh.data_tasks(first)[0].params["path"].startswith("data/gaussian-")
