"""Typed, frozen, validated configs for every stage; each round-trips through JSON and TOML.

A bad value fails when the config is built, with the field's dotted name in the message.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from .errors import AtlasError, ConfigError


class FrozenConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


MAX_FACTOR_VALUES = 100_000  # values of one factor's range
MAX_IMAGES = 2_000_000  # images of one dataset: 2 million 36 x 36 float32 heatmaps are 10 GB


class FactorRange(FrozenConfig):
    """The values one factor takes: an inclusive grid ``start, start+step, ..., stop`` or explicit ``values``.

    Under random sampling the factor is drawn uniformly between the smallest and largest value.
    """

    start: float | None = None
    stop: float | None = None
    step: float | None = None
    values: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> FactorRange:
        arithmetic = (self.start, self.stop, self.step)
        if self.values is not None:
            if any(v is not None for v in arithmetic):
                raise ValueError("give either values or start/stop/step, not both")
            if len(self.values) == 0:
                raise ValueError("empty range: values is empty")
            if not all(math.isfinite(v) for v in self.values):
                raise ValueError("values must be finite numbers")
            return self
        if any(v is None for v in arithmetic):
            raise ValueError("needs start, stop and step (or a list of values)")
        if not all(math.isfinite(v) for v in arithmetic):
            raise ValueError("start, stop and step must be finite numbers")
        if self.step <= 0:
            raise ValueError(f"step must be positive, got {self.step}")
        if self.stop < self.start:
            raise ValueError(f"empty range: stop ({self.stop}) is below start ({self.start})")
        if self.count > MAX_FACTOR_VALUES:
            raise ValueError(f"the range has {self.count:,} values, more than the {MAX_FACTOR_VALUES:,} allowed "
                             "(a larger step?)")
        return self

    @property
    def count(self) -> int:
        """How many values the range has (computed without making them)."""
        if self.values is not None:
            return len(self.values)
        steps = (self.stop - self.start) / self.step
        return int(math.floor(steps + 1e-9)) + 1 if math.isfinite(steps) and steps < 2**62 else 2**62

    def grid(self) -> np.ndarray:
        """The factor's values as a float64 array, ascending for the arithmetic form."""
        if self.values is not None:
            return np.asarray(self.values, dtype=np.float64)
        count = self.count
        # Rounding removes the float noise of start + k * step (0.30000000000000004 -> 0.3).
        return np.round(self.start + self.step * np.arange(count), 12)

    @property
    def low(self) -> float:
        return float(self.grid().min())

    @property
    def high(self) -> float:
        return float(self.grid().max())


VARIANCE_GRID = FactorRange(start=0.1, stop=4.9, step=0.2)
# The seed's 11,875 images = 19 x 25 x 25, so its correlation grid stops at 0.85.
CORRELATION_GRID = FactorRange(start=-0.95, stop=0.85, step=0.1)

MAX_SEED = 2**32 - 1  # seeds feed numpy and torch generators; derived seeds (seed + 2) must stay in range


class DataConfig(FrozenConfig):
    """A heatmap dataset: densities on a square grid over [-extent, extent]^2, each image max-normalised."""

    kind: Literal["gaussian", "student_t"] = "gaussian"
    grid_size: int = Field(36, ge=2)
    extent: float = Field(3.0, gt=0, allow_inf_nan=False)
    var_x: FactorRange = VARIANCE_GRID
    var_y: FactorRange = VARIANCE_GRID
    rho: FactorRange = CORRELATION_GRID
    sampling: Literal["grid", "random"] = "grid"
    n_samples: int = Field(11_875, ge=1, description="number of images under random sampling")
    df_heavy: float = Field(2.0, gt=0, allow_inf_nan=False, description="the heavy-tailed class's df")
    df_light: float = Field(200.0, gt=0, allow_inf_nan=False, description="the light-tailed class's df")
    df_threshold: float = Field(20.0, allow_inf_nan=False)
    df_noise_max: float = Field(10.0, ge=0, allow_inf_nan=False)
    df_rule_gives: Literal["heavy", "light"] = Field(
        "heavy",
        description="which df the seed's rule (var_x + var_y)^2 - l > df_threshold assigns: the seed does not "
        "say which side gets df = 2; 'heavy' (default) gives df_heavy where the rule holds, 'light' the opposite",
    )
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)

    @model_validator(mode="after")
    def _bounded_size(self) -> DataConfig:
        n = self.n_samples if self.sampling == "random" else self.var_x.count * self.var_y.count * self.rho.count
        if n > MAX_IMAGES:
            raise ValueError(f"the dataset would hold {n:,} images, more than the {MAX_IMAGES:,} allowed")
        return self

    @field_validator("var_x", "var_y")
    @classmethod
    def _positive_variance(cls, value: FactorRange) -> FactorRange:
        if value.low <= 0:
            raise ValueError(f"variances must be positive, got {value.low}")
        return value

    @field_validator("rho")
    @classmethod
    def _valid_correlation(cls, value: FactorRange) -> FactorRange:
        if max(abs(value.low), abs(value.high)) >= 1:
            raise ValueError(f"correlations must lie strictly between -1 and 1, got {value.low}..{value.high}")
        return value

    @property
    def factor_names(self) -> tuple[str, ...]:
        return ("var_x", "var_y", "rho", "df") if self.kind == "student_t" else ("var_x", "var_y", "rho")


def feature_map_shapes(
    image_shape: tuple[int, int], strides: tuple[int, ...], pool_sizes: tuple[int, ...]
) -> list[tuple[int, int]]:
    """Spatial size entering each encoder block, then the final one: [(H, W), ..., (h, w)]."""
    shapes = [tuple(image_shape)]
    for block, (stride, pool) in enumerate(zip(strides, pool_sizes), start=1):
        # A same-padded odd kernel gives ceil(H / stride); the max pool then floors by pool.
        h, w = ((-(-side // stride)) // pool for side in shapes[-1])
        if h < 1 or w < 1:
            raise ValueError(
                f"{image_shape[0]}x{image_shape[1]} images shrink to nothing at encoder block {block}; "
                "use fewer blocks, smaller strides or smaller pool sizes"
            )
        shapes.append((h, w))
    return shapes


class ModelConfig(FrozenConfig):
    """A convolutional autoencoder. Encoder block i: conv(kernel_sizes[i], strides[i]) -> ReLU -> maxpool(pool_sizes[i]).

    The conditional VAE ("cvae") also takes one data factor, ``condition``, as an input of its encoder and decoder.
    """

    kind: Literal["vae", "ae", "cvae"] = "vae"
    condition: Literal["var_x", "var_y", "rho", "df"] | None = Field(
        None, description="cvae only: the factor the encoder and decoder are conditioned on")
    latent_dim: int = Field(3, ge=1)
    channels: tuple[int, ...] = (16, 32)
    kernel_sizes: tuple[int, ...] = (3, 3)
    strides: tuple[int, ...] = (1, 1)
    pool_sizes: tuple[int, ...] = (2, 2)
    hidden_dims: tuple[int, ...] = Field((128,), min_length=1)
    likelihood: Literal["bernoulli", "gaussian"] = "bernoulli"
    beta: float = Field(1.0, ge=0, allow_inf_nan=False)
    output_bias_init: float = Field(
        -3.0,
        allow_inf_nan=False,
        description="initial logit of every output pixel; heatmaps are mostly background, and starting "
        "dark avoids a long initial plateau",
    )
    image_shape: tuple[int, int] | None = Field(None, description="(H, W); filled in from the dataset")

    @field_validator("channels", "kernel_sizes", "strides", "pool_sizes")
    @classmethod
    def _positive_entries(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if len(value) == 0:
            raise ValueError("needs at least one block")
        if any(v < 1 for v in value):
            raise ValueError(f"entries must be positive, got {list(value)}")
        return value

    @field_validator("kernel_sizes")
    @classmethod
    def _odd_kernels(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(k % 2 == 0 for k in value):
            raise ValueError(f"kernel sizes must be odd (same padding), got {list(value)}")
        return value

    @field_validator("hidden_dims")
    @classmethod
    def _positive_hidden(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(v < 1 for v in value):
            raise ValueError(f"entries must be positive, got {list(value)}")
        return value

    @field_validator("image_shape")
    @classmethod
    def _fits_the_encoder(cls, value: tuple[int, int] | None, info: ValidationInfo) -> tuple[int, int] | None:
        if value is None:
            return value
        if min(value) < 1:
            raise ValueError(f"image sides must be positive, got {list(value)}")
        if "strides" in info.data and "pool_sizes" in info.data:
            feature_map_shapes(value, info.data["strides"], info.data["pool_sizes"])
        return value

    @model_validator(mode="after")
    def _consistent_blocks(self) -> ModelConfig:
        lengths = {len(self.channels), len(self.kernel_sizes), len(self.strides), len(self.pool_sizes)}
        if len(lengths) != 1:
            raise ValueError(
                "channels, kernel_sizes, strides and pool_sizes need one entry per block, got lengths "
                f"{len(self.channels)}, {len(self.kernel_sizes)}, {len(self.strides)}, {len(self.pool_sizes)}"
            )
        return self

    @model_validator(mode="after")
    def _condition_for_cvae_only(self) -> ModelConfig:
        if self.kind == "cvae" and self.condition is None:
            raise ValueError("condition: the cvae needs the factor it is conditioned on (var_x, var_y, rho or df)")
        if self.kind != "cvae" and self.condition is not None:
            raise ValueError(f"condition: only the cvae takes a condition, not the {self.kind}")
        return self

    @model_serializer(mode="wrap")
    def _without_unused_condition(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """AE and VAE configs serialise (and so hash, and resume) exactly as before the cvae existed."""
        values = handler(self)
        if self.condition is None:
            values.pop("condition", None)
        return values

    @property
    def n_blocks(self) -> int:
        return len(self.channels)

    def feature_map_shapes(self, image_shape: tuple[int, int]) -> list[tuple[int, int]]:
        return feature_map_shapes(image_shape, self.strides, self.pool_sizes)

    def for_images(self, image_shape: tuple[int, int]) -> ModelConfig:
        """This config bound to an image size, failing clearly if the architecture cannot take it."""
        if self.image_shape is not None and tuple(self.image_shape) != tuple(image_shape):
            raise ConfigError(
                f"model.image_shape: the model expects {self.image_shape[0]}x{self.image_shape[1]} images "
                f"but the dataset's are {image_shape[0]}x{image_shape[1]}"
            )
        return build(ModelConfig, {**self.to_dict(), "image_shape": list(image_shape)}, section="model")


ADAM_BETAS_BEFORE_THE_KEY = (0.9, 0.999)  # torch's default: what a saved run config without adam_betas trained with


class TrainConfig(FrozenConfig):
    """Adam, a learning-rate schedule and early stopping on a held-out part of the training split.

    The defaults (one-cycle to 6e-3 over 5 epochs of batches of 32, 20 % of the steps warming up, Adam's beta2
    0.95) reach the test error of the former 8 epochs (one-cycle to 4e-3, beta2 0.999) in 5/8 of their time;
    before those, one-cycle over 12 epochs of 64, and plateau at 2e-3 over up to 20. Weight decay 3e-4 then
    lowers the test error at the same cost. Measured with benchmarks/training_settings.py over 11 seeds, and
    benchmarks/time_to_quality.py against pythae.
    """

    epochs: int = Field(5, ge=1, description="upper bound; early stopping may end sooner")
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(6e-3, gt=0, allow_inf_nan=False, description="onecycle: the peak")
    adam_betas: tuple[float, float] = Field(
        (0.9, 0.95),
        description="Adam's (beta1, beta2). beta2 0.95 rather than torch's 0.999: the second moment forgets the "
        "large gradients of the first steps sooner, and short one-cycle runs reach a lower error (measured)",
    )
    weight_decay: float = Field(
        3e-4, ge=0, allow_inf_nan=False,
        description="Adam's L2 penalty (added to the gradient, as torch.optim.Adam does). 3e-4 rather than 0: "
        "a lower test error for the VAE (11 seeds) and the AE in the same time (measured); runs saved before "
        "this default state the 0 they trained with",
    )
    scheduler: Literal["onecycle", "plateau", "none"] = Field(
        "onecycle",
        description="onecycle: warm up to learning_rate, then cosine down over all epochs (per batch); "
        "plateau: multiply by scheduler_factor when the held-out loss stalls",
    )
    warmup_fraction: float = Field(0.2, gt=0, lt=1, description="onecycle: share of the steps spent warming up")
    initial_lr_divisor: float = Field(25.0, ge=1, allow_inf_nan=False, description="onecycle: start at lr / this")
    final_lr_divisor: float = Field(1e4, ge=1, allow_inf_nan=False, description="onecycle: end at start lr / this")
    scheduler_factor: float = Field(0.5, gt=0, lt=1)
    scheduler_patience: int = Field(1, ge=0)
    early_stopping_patience: int = Field(3, ge=1)
    min_delta: float = Field(0.05, ge=0, allow_inf_nan=False, description="smallest held-out loss drop (nats per image) that counts")
    validation_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    device: Literal["cpu", "cuda"] = "cpu"
    precision: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="bfloat16: the training step's convolutions and matrix products run under bfloat16 autocast "
        "(weights, optimizer state and loss stay float32); pays on CPUs with AMX or AVX-512 BF16 (measured), "
        "expected to be slower on CPUs without bfloat16 units (not measured)",
    )

    @field_validator("adam_betas")
    @classmethod
    def _betas_in_unit_interval(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0 <= beta < 1 for beta in value):
            raise ValueError(f"each beta must lie in [0, 1), got {list(value)}")
        return value

    @model_serializer(mode="wrap")
    def _without_default_precision(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """float32 training configs serialise (and so hash, and resume) exactly as before precision existed."""
        values = handler(self)
        if self.precision == "float32":
            values.pop("precision", None)
        return values


C = TypeVar("C", bound=FrozenConfig)


def _format_validation_error(exc: ValidationError, section: str | None) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(p) for p in ((section,) if section else ()) + tuple(error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "invalid config: " + "; ".join(parts)


def build(cls: type[C], values: Mapping[str, Any] | None = None, section: str | None = None, **overrides: Any) -> C:
    """Build and validate a config from a mapping plus keyword overrides (None overrides are ignored)."""
    merged = dict(values or {})
    merged.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, section)) from None


TABLES = ("data", "model", "train", "study", "sweep")  # every table a command reads; one file may hold them all


def load_toml(path: str | Path | None) -> dict[str, Any]:
    """A TOML config file as a dict of sections ([data], [model], [train], [study]); {} for no file."""
    if path is None:
        return {}
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AtlasError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AtlasError(f"cannot read config file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise AtlasError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(document) - set(TABLES))
    if unknown:  # a misspelt table would otherwise be ignored, and its settings silently left at their defaults
        name = unknown[0]
        what = f"table [{name}]" if isinstance(document[name], Mapping) else f"top-level key {name!r}"
        raise ConfigError(f"config file {path}: unknown {what}; settings go in the tables "
                          f"{', '.join(f'[{table}]' for table in TABLES)}")
    return document


def section(document: Mapping[str, Any], name: str) -> dict[str, Any]:
    """One [section] of a loaded TOML document, checked to be a table."""
    value = document.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"invalid config: [{name}] must be a table")
    return dict(value)
