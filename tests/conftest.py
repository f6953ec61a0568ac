"""Tiny data and models shared by the tests: a 12x12 grid, 27 or 36 images, two small conv blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latent_atlas.config import DataConfig, FactorRange, ModelConfig, TrainConfig
from latent_atlas.data import HeatmapDataset, make_dataset

TINY_DATA = dict(
    grid_size=12,
    var_x=FactorRange(values=(0.3, 1.0, 2.5)),
    var_y=FactorRange(values=(0.3, 1.0, 2.5)),
    rho=FactorRange(values=(-0.6, 0.0, 0.3, 0.7)),
)
TINY_MODEL = dict(channels=(4, 8), hidden_dims=(16,))
TINY_TRAIN = dict(epochs=2, batch_size=8, early_stopping_patience=5)


def tiny_data_config(**overrides) -> DataConfig:
    return DataConfig(**{**TINY_DATA, **overrides})


def tiny_model_config(**overrides) -> ModelConfig:
    return ModelConfig(**{**TINY_MODEL, **overrides})


def tiny_train_config(**overrides) -> TrainConfig:
    return TrainConfig(**{**TINY_TRAIN, **overrides})


@pytest.fixture(scope="session")
def gaussian_full() -> HeatmapDataset:
    """The seed's full 11,875-image Gaussian dataset (about half a second to make)."""
    return make_dataset(DataConfig())


@pytest.fixture(scope="session")
def student_t_full() -> HeatmapDataset:
    return make_dataset(DataConfig(kind="student_t"))


@pytest.fixture(scope="session")
def tiny_dataset() -> HeatmapDataset:
    return make_dataset(tiny_data_config())


@pytest.fixture(scope="session")
def tiny_t_dataset() -> HeatmapDataset:
    return make_dataset(tiny_data_config(kind="student_t"))


@pytest.fixture()
def tiny_dataset_file(tmp_path: Path, tiny_dataset: HeatmapDataset) -> Path:
    path = tmp_path / "tiny.npz"
    tiny_dataset.save(path)
    return path


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, tiny_dataset):
    """A finished tiny VAE and AE run on the tiny dataset (shared, read-only for the tests)."""
    from latent_atlas.training import train

    root = tmp_path_factory.mktemp("runs")
    data_path = root / "tiny.npz"
    tiny_dataset.save(data_path)
    runs = {}
    for kind in ("vae", "ae"):
        result = train(tiny_dataset, data_path, tiny_model_config(kind=kind), tiny_train_config(),
                       root / kind, progress=False)
        runs[kind] = result.run
    return runs


def file_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()


def assert_close_images(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of many small forward passes: two threads contending with other processes on 2 cores run
    about 10x slower. Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(trained_runs):
    """The tiny trained runs' models, by kind."""
    return {kind: run.load_model() for kind, run in trained_runs.items()}
