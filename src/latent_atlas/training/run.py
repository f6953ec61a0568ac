"""The run folder and its files: the training's (config.json, model.safetensors, history.csv, metrics.json,
training_state.safetensors for resuming) and the analyses' (evaluation.npz, latents.npz, oracle.json, analysis.json).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..config import ADAM_BETAS_BEFORE_THE_KEY, ModelConfig, TrainConfig, build
from ..data import HeatmapDataset, load_dataset
from ..data.dataset import validation_split
from ..errors import AtlasError, ConfigError
from ..io import file_sha256, read_json
from ..models import Autoencoder
from .checkpoint import load_model

CONFIG_FILE = "config.json"
MODEL_FILE = "model.safetensors"
HISTORY_FILE = "history.csv"
METRICS_FILE = "metrics.json"
STATE_FILE = "training_state.safetensors"
EVALUATION_FILE = "evaluation.npz"
ORACLE_FILE = "oracle.json"
LATENTS_FILE = "latents.npz"
ANALYSIS_FILE = "analysis.json"


def run_config(dataset: HeatmapDataset, dataset_path: Path, model: ModelConfig, train: TrainConfig, run_dir: Path) -> dict:
    """The fully resolved config saved beside the run; the dataset path is stored relative to the run."""
    return {
        "latent_atlas_version": __version__,
        "data": {
            "path": os.path.relpath(Path(dataset_path).resolve(), Path(run_dir).resolve()),
            "content_hash": dataset.content_hash,
            "config": dataset.config.to_dict(),
        },
        "model": model.to_dict(),
        "train": train.to_dict(),
    }


def saved_train_settings(train: dict) -> dict:
    """A saved run's train config with the keys added since it was written set to what it trained with."""
    return {"adam_betas": list(ADAM_BETAS_BEFORE_THE_KEY), **train}


def same_settings(saved: dict, wanted: dict) -> bool:
    """Whether two run configs describe the same training (the package version aside)."""
    if isinstance(saved.get("train"), dict):
        saved = {**saved, "train": saved_train_settings(saved["train"])}
    return {k: v for k, v in saved.items() if k != "latent_atlas_version"} == {
        k: v for k, v in wanted.items() if k != "latent_atlas_version"
    }


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict[str, Any]
    model_config: ModelConfig
    train_config: TrainConfig

    @property
    def kind(self) -> str:
        return self.model_config.kind

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def dataset_path(self) -> Path:
        return (self.path / self.config["data"]["path"]).resolve()

    def load_model(self, device: str = "cpu") -> Autoencoder:
        return load_model(self.path / MODEL_FILE, device=device)

    def load_dataset(self, path: str | Path | None = None) -> HeatmapDataset:
        """The dataset the run was trained on (or ``path``), checked against the recorded content hash."""
        dataset = load_dataset(path if path is not None else self.dataset_path)
        if dataset.content_hash != self.config["data"]["content_hash"]:
            raise AtlasError(
                f"dataset {path or self.dataset_path} is not the one run {self.path} was trained on "
                "(content hash differs)"
            )
        return dataset

    def provenance(self) -> dict[str, Any]:
        """What made an artifact of this run: the resolved config, the dataset's hash, the weights' hash."""
        return {
            "latent_atlas_version": __version__,
            "dataset_hash": self.config["data"]["content_hash"],
            "model_sha256": file_sha256(self.path / MODEL_FILE),
            "config": self.config,
        }

    def validation_indices(self, dataset: HeatmapDataset) -> np.ndarray:
        """The images this run held out of its training split for early stopping (never trained on, not test)."""
        return validation_split(dataset.train_idx, self.train_config.validation_fraction, self.train_config.seed)[1]

    def metrics(self) -> dict[str, Any]:
        path = self.path / METRICS_FILE
        return read_json(path, what="metrics") if path.exists() else {}


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise AtlasError(f"run folder not found: {path}")
    config = read_json(path / CONFIG_FILE, what="run config")
    if not (path / MODEL_FILE).is_file():
        raise AtlasError(f"run folder {path} has no {MODEL_FILE}; has training finished?")
    try:
        model_config = build(ModelConfig, config["model"], section="model")
        train_config = build(TrainConfig, saved_train_settings(config["train"]), section="train")
        config["data"]["path"], config["data"]["content_hash"]
    except (KeyError, TypeError, ConfigError) as exc:
        raise AtlasError(f"run config {path / CONFIG_FILE} is malformed ({exc})") from None
    return Run(path=path, config=config, model_config=model_config, train_config=train_config)
