"""Latent codes of a dataset under a trained run: the table every analysis starts from.

Saved as ``latents.npz`` in the run folder and reused while the model and dataset are unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import HeatmapDataset
from ..errors import AtlasError
from ..io import file_sha256, read_npz, write_npz
from ..models import Autoencoder
from ..models.conditioning import dataset_conditions
from ..models.inference import encode
from ..training.run import LATENTS_FILE, MODEL_FILE, Run


@dataclass(frozen=True, eq=False)
class LatentCodes:
    mean: np.ndarray  # (N, D) float32: the VAE's posterior means, the AE's codes
    logvar: np.ndarray | None  # (N, D) float32 for the VAE, None for the AE
    factors: np.ndarray  # (N, K) float64 true factors, row-aligned with the dataset
    factor_names: tuple[str, ...]
    is_test: np.ndarray  # (N,) bool: the image is in the dataset's test split
    dataset_hash: str
    model_hash: str

    @property
    def codes(self) -> np.ndarray:
        return self.mean

    @property
    def latent_dim(self) -> int:
        return self.mean.shape[1]

    def factor(self, name: str) -> np.ndarray:
        if name == "var_diff":
            return self.factor("var_x") - self.factor("var_y")
        if name not in self.factor_names:
            raise AtlasError(f"unknown factor {name!r}; choose one of {', '.join(self.factor_names)}, var_diff")
        return self.factors[:, self.factor_names.index(name)]

    def save(self, path: str | Path) -> None:
        arrays = {
            "mean": self.mean,
            "factors": self.factors,
            "factor_names": np.asarray(self.factor_names, dtype=np.str_),
            "is_test": self.is_test,
            "metadata": np.asarray(json.dumps({"dataset_hash": self.dataset_hash, "model_hash": self.model_hash})),
        }
        if self.logvar is not None:
            arrays["logvar"] = self.logvar
        write_npz(path, arrays)

    @classmethod
    def load(cls, path: str | Path) -> LatentCodes:
        arrays = read_npz(path, what="latent codes")
        try:
            metadata = json.loads(str(arrays["metadata"]))
            return cls(
                mean=arrays["mean"],
                logvar=arrays.get("logvar"),
                factors=arrays["factors"],
                factor_names=tuple(str(s) for s in arrays["factor_names"]),
                is_test=arrays["is_test"].astype(bool),
                dataset_hash=metadata["dataset_hash"],
                model_hash=metadata["model_hash"],
            )
        except (KeyError, json.JSONDecodeError) as exc:
            raise AtlasError(f"latent codes {path} are malformed ({exc})") from None


def encode_dataset(model: Autoencoder, dataset: HeatmapDataset, model_hash: str = "") -> LatentCodes:
    """Encode every image of the dataset (both splits); a cvae's with each image's own condition."""
    mean, logvar = encode(model, dataset.images, conditions=dataset_conditions(model.config, dataset))
    is_test = np.zeros(len(dataset), dtype=bool)
    is_test[dataset.test_idx] = True
    return LatentCodes(
        mean=mean,
        logvar=logvar,
        factors=dataset.factors,
        factor_names=dataset.factor_names,
        is_test=is_test,
        dataset_hash=dataset.content_hash,
        model_hash=model_hash,
    )


def run_latents(run: Run, dataset: HeatmapDataset | None = None, model: Autoencoder | None = None) -> LatentCodes:
    """The run's latent codes, from its ``latents.npz`` when that matches the model and dataset, else encoded."""
    path = run.path / LATENTS_FILE
    model_hash = file_sha256(run.path / MODEL_FILE)
    if path.exists():
        try:
            cached = LatentCodes.load(path)
            if cached.model_hash == model_hash and cached.dataset_hash == run.config["data"]["content_hash"]:
                return cached
        except AtlasError:
            pass
    dataset = dataset if dataset is not None else run.load_dataset()
    model = model if model is not None else run.load_model()
    latents = encode_dataset(model, dataset, model_hash=model_hash)
    latents.save(path)
    return latents
