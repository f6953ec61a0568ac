"""The dataset artifact: images, factors, a seeded split and JSON metadata in one pickle-free .npz."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..config import DataConfig, build
from ..errors import AtlasError, ConfigError
from ..io import read_npz, sha256_arrays, write_npz
from .factors import sample_factors
from .heatmaps import grid_axis, render_from_factors

FORMAT_VERSION = 1
ARRAY_KEYS = ("images", "factors", "factor_names", "train_idx", "test_idx")


@dataclass(frozen=True, eq=False)
class HeatmapDataset:
    images: np.ndarray  # (N, H, W) float32 in [0, 1], max-normalised per image
    factors: np.ndarray  # (N, K) float64
    factor_names: tuple[str, ...]
    train_idx: np.ndarray  # (N_train,) int64, ascending
    test_idx: np.ndarray  # (N_test,) int64, ascending
    config: DataConfig
    content_hash: str

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.images.shape[1:])

    @property
    def axis(self) -> np.ndarray:
        return grid_axis(self.config.grid_size, self.config.extent)

    def factor(self, name: str) -> np.ndarray:
        if name not in self.factor_names:
            raise AtlasError(f"unknown factor {name!r}; this dataset has {', '.join(self.factor_names)}")
        return self.factors[:, self.factor_names.index(name)]

    @property
    def metadata(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "latent_atlas_version": __version__,
            "config": self.config.to_dict(),
            "content_hash": self.content_hash,
            "n_images": len(self),
            "image_shape": list(self.image_shape),
            "orientation": "image[i, j] is the density at x = axis[j], y = axis[i]; row 0 is y = -extent",
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "images": self.images,
            "factors": self.factors,
            "factor_names": np.asarray(self.factor_names, dtype=np.str_),
            "train_idx": self.train_idx,
            "test_idx": self.test_idx,
        }

    def save(self, path: str | Path) -> None:
        write_npz(path, {**self.arrays(), "metadata": np.asarray(json.dumps(self.metadata, sort_keys=True))})


def split_indices(n: int, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split into ascending (train, test) index arrays."""
    order = rng.permutation(n)
    n_test = min(max(int(round(n * test_fraction)), 1), n - 1) if n > 1 else 0
    return np.sort(order[n_test:]).astype(np.int64), np.sort(order[:n_test]).astype(np.int64)


def validation_split(train_idx: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the training indices into (fit, validation), both ascending; the test split stays untouched.

    Training holds the validation part out for early stopping; the oracle is calibrated on it too.
    """
    if len(train_idx) < 2:
        raise AtlasError(
            f"training needs at least 2 images in the training split (one held out for early stopping), "
            f"got {len(train_idx)}; use a larger factor grid or more samples"
        )
    order = np.random.default_rng(seed).permutation(train_idx)
    n_val = min(max(int(round(len(order) * fraction)), 1), len(order) - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def make_dataset(config: DataConfig) -> HeatmapDataset:
    """The dataset as a pure function of its config (which carries the seed): same config, same bytes."""
    rng = np.random.default_rng(config.seed)
    factors = sample_factors(config, rng)
    images = render_from_factors(factors, config.factor_names, grid_axis(config.grid_size, config.extent))
    train_idx, test_idx = split_indices(len(images), config.test_fraction, rng)
    dataset = HeatmapDataset(images=images, factors=factors, factor_names=config.factor_names, train_idx=train_idx,
                             test_idx=test_idx, config=config, content_hash="")
    return replace(dataset, content_hash=sha256_arrays(dataset.arrays()))


def load_dataset(path: str | Path) -> HeatmapDataset:
    """Load and check a dataset file: every array present, shapes consistent, hash matching the content."""
    path = Path(path)
    arrays = read_npz(path, what="dataset")
    missing = [k for k in (*ARRAY_KEYS, "metadata") if k not in arrays]
    if missing:
        raise AtlasError(f"dataset {path} is missing {', '.join(missing)}; is it a latent-atlas dataset?")
    try:
        metadata = json.loads(str(arrays["metadata"]))
        config = build(DataConfig, metadata["config"])
    except (json.JSONDecodeError, KeyError, TypeError, ConfigError) as exc:
        raise AtlasError(f"dataset {path} has unreadable metadata ({exc})") from None
    images, factors, names = arrays["images"], arrays["factors"], arrays["factor_names"]
    n = len(images)
    if (images.ndim != 3 or images.dtype != np.float32 or factors.ndim != 2 or factors.shape[0] != n
            or names.shape != (factors.shape[1],) or tuple(str(s) for s in names) != config.factor_names):
        raise AtlasError(f"dataset {path} is malformed: images {images.shape} {images.dtype}, factors {factors.shape}, "
                         f"factor names {names.tolist()}")
    train_idx, test_idx = arrays["train_idx"], arrays["test_idx"]
    split = np.concatenate([train_idx, test_idx])
    if split.dtype.kind not in "iu" or (split.size and (split.min() < 0 or split.max() >= n)):
        raise AtlasError(f"dataset {path} is malformed: split indices outside 0..{n - 1}")
    if np.intersect1d(train_idx, test_idx).size:
        raise AtlasError(f"dataset {path} is malformed: the train and test splits overlap")
    content_hash = sha256_arrays({k: arrays[k] for k in ARRAY_KEYS})
    if content_hash != metadata.get("content_hash"):
        raise AtlasError(f"dataset {path} is corrupt: its content does not match the hash in its metadata")
    return HeatmapDataset(
        images=images,
        factors=factors,
        factor_names=config.factor_names,
        train_idx=train_idx.astype(np.int64),
        test_idx=test_idx.astype(np.int64),
        config=config,
        content_hash=content_hash,
    )
