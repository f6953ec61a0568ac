"""The conditional VAE's condition: one data factor, encoded as the network input the encoder and decoder take.

* df (Student t) is a class: one-hot (heavy, light), from the data config's ``df_heavy`` and ``df_light``;
* a continuous factor (var_x, var_y, rho) is standardised by its range in the data config to [-1, 1]
  (values outside the range map outside [-1, 1]; a factor with a single value maps to 0).

The encoding is a pure function of the factor values and the data config, so training, evaluation and
generation all feed the network the same numbers for the same factor value.
"""

from __future__ import annotations

import numpy as np

from ..config import DataConfig, ModelConfig
from ..data import HeatmapDataset
from ..errors import AtlasError

DF_CLASSES = ("heavy", "light")
CONDITION_DIMS = {"var_x": 1, "var_y": 1, "rho": 1, "df": len(DF_CLASSES)}


def condition_dim(name: str | None) -> int:
    """Width of the encoded condition: 0 without one, 2 for df (one-hot), 1 for a continuous factor."""
    if name is None:
        return 0
    if name not in CONDITION_DIMS:
        raise AtlasError(f"unknown condition {name!r}; choose one of {', '.join(CONDITION_DIMS)}")
    return CONDITION_DIMS[name]


def df_values(classes: np.ndarray | list[str], data: DataConfig) -> np.ndarray:
    """(N,) class names "heavy" / "light" -> (N,) the data's df of each class."""
    classes = np.asarray(classes, dtype=np.str_)
    unknown = sorted(set(classes.tolist()) - set(DF_CLASSES))
    if unknown:
        raise AtlasError(f"unknown df class {unknown[0]!r}; choose heavy or light")
    return np.where(classes == "heavy", data.df_heavy, data.df_light)


def encode_conditions(name: str, values: np.ndarray, data: DataConfig) -> np.ndarray:
    """(N,) values of factor ``name`` -> (N, C) float32 network inputs (see the module's docstring)."""
    condition_dim(name)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if name == "df":
        if data.kind != "student_t":
            raise AtlasError(f"a df condition needs Student t data, but this data is {data.kind}")
        heavy = np.isclose(values, data.df_heavy)
        light = np.isclose(values, data.df_light) & ~heavy
        if not np.all(heavy | light):
            odd = values[~(heavy | light)][0]
            raise AtlasError(f"df {odd:g} is neither class of the data (heavy {data.df_heavy:g}, light "
                             f"{data.df_light:g})")
        return np.stack([heavy, light], axis=1).astype(np.float32)  # (N, 2)
    factor_range = getattr(data, name)
    low, high = factor_range.low, factor_range.high
    if high == low:
        return np.zeros((len(values), 1), dtype=np.float32)
    return (2.0 * (values - low) / (high - low) - 1.0).astype(np.float32)[:, None]  # (N, 1)


def dataset_conditions(config: ModelConfig, dataset: HeatmapDataset, index: np.ndarray | None = None
                       ) -> np.ndarray | None:
    """The encoded conditions (N, C) of the dataset's images ``index`` (all by default) for a model with this
    config; None for a model without a condition."""
    if config.condition is None:
        return None
    values = dataset.factor(config.condition)
    return encode_conditions(config.condition, values if index is None else values[index], dataset.config)
