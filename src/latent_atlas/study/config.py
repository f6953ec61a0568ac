"""The study's config: [data], [model] and [train] shared by every run, and what to train over.

The unit of replication is a training seed: every (dataset, model kind, seed) is its own run, and the
data (its split included) stays fixed by the data seed. Two optional sections widen the study:
``dimensions`` (the VAE at several latent dimensions, the third seed's question) and ``toolbox`` (a beta
sweep, the conditional VAE and the second seed's techniques scored against ground truth).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..config import (
    MAX_SEED,
    DataConfig,
    FactorRange,
    FrozenConfig,
    ModelConfig,
    TrainConfig,
    build,
    section,
)
from ..errors import ConfigError

SECTIONS = ("dimensions", "toolbox")


def _seed_list(value: tuple[int, ...]) -> tuple[int, ...]:
    if any(not 0 <= s <= MAX_SEED for s in value):
        raise ValueError(f"seeds must lie in 0..{MAX_SEED}, got {list(value)}")
    if len(set(value)) != len(value):
        raise ValueError(f"seeds must be distinct, got {list(value)}")
    return tuple(value)


class DimensionsConfig(FrozenConfig):
    """The VAE trained at several latent dimensions on the Gaussian data, each over ``seeds``."""

    latent_dims: tuple[int, ...] = (2, 3, 4, 6, 8, 16)
    seeds: tuple[int, ...] = Field((0, 1), min_length=1)

    @field_validator("latent_dims")
    @classmethod
    def _plane_sized(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(d < 2 for d in value):
            raise ValueError(f"needs latent dimensions of at least 2, got {list(value)}")
        return tuple(sorted(set(value)))

    _seeds = field_validator("seeds")(classmethod(lambda cls, v: _seed_list(v)))


class ToolboxConfig(FrozenConfig):
    """The beta sweep of the VAE on the Gaussian data, each beta over ``seeds``."""

    betas: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    seeds: tuple[int, ...] = Field((0, 1), min_length=1)

    @field_validator("betas")
    @classmethod
    def _positive(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not b > 0 for b in value):
            raise ValueError(f"betas must be positive, got {list(value)}")
        return tuple(sorted(set(value)))

    _seeds = field_validator("seeds")(classmethod(lambda cls, v: _seed_list(v)))


class StudyConfig(FrozenConfig):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    datasets: tuple[Literal["gaussian", "student_t"], ...] = Field(("gaussian", "student_t"), min_length=1)
    models: tuple[Literal["vae", "ae"], ...] = Field(("vae", "ae"), min_length=1)
    seeds: tuple[int, ...] = Field((0, 1, 2), min_length=1, description="training seeds: one run per seed")
    sections: tuple[Literal["dimensions", "toolbox"], ...] = Field(
        (), description="optional parts beyond the core study: dimensions, toolbox")
    dimensions: DimensionsConfig = DimensionsConfig()
    toolbox: ToolboxConfig = ToolboxConfig()
    analysis_seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of the analyses' own random draws")
    quick: bool = False

    _seeds = field_validator("seeds")(classmethod(lambda cls, v: _seed_list(v)))

    @field_validator("sections")
    @classmethod
    def _distinct_sections(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(s for s in SECTIONS if s in value)

    @field_validator("model")
    @classmethod
    def _plane_sized_model(cls, value: ModelConfig) -> ModelConfig:
        if value.latent_dim < 2:
            raise ValueError(f"latent_dim: the study's analyses (planes, paths) need at least 2, got {value.latent_dim}")
        return value

    def data_for(self, kind: str) -> DataConfig:
        return build(DataConfig, {**self.data.to_dict(), "kind": kind}, section="data")

    def model_for(self, kind: str, **overrides: Any) -> ModelConfig:
        return build(ModelConfig, {**self.model.to_dict(), "kind": kind, **overrides}, section="model")

    def train_for(self, seed: int) -> TrainConfig:
        return build(TrainConfig, {**self.train.to_dict(), "seed": seed}, section="train")


# A demo: a coarser factor grid (13 x 13 x 10 = 1,690 images), 8 epochs of batch 16, two seeds; the analyses
# take their smaller quick settings (registry). About a minute on the 2-core development machine (64 s, AMD Zen 4).
QUICK = {
    "data": {
        "var_x": FactorRange(start=0.1, stop=4.9, step=0.4).to_dict(),
        "var_y": FactorRange(start=0.1, stop=4.9, step=0.4).to_dict(),
        "rho": FactorRange(start=-0.95, stop=0.85, step=0.2).to_dict(),
    },
    "train": {"epochs": 8, "batch_size": 16},
    "study": {"seeds": [0, 1]},
}


def study_config_from(document: dict[str, Any], quick: bool = False, sections: tuple[str, ...] = ()) -> StudyConfig:
    """Defaults, then the quick settings if asked, then the TOML document's tables, last one wins.

    ``sections`` (from the command line) are added to the file's ``[study] sections``.
    """
    tables = {name: dict(QUICK.get(name, {})) if quick else {} for name in ("data", "model", "train", "study")}
    for name in tables:
        tables[name].update(section(document, name))
    study_table = tables.pop("study")
    misplaced = sorted(set(study_table) & set(tables))
    if misplaced:
        raise ConfigError(f"invalid config: [study] {misplaced[0]} = ...: put those settings in their own "
                          f"[{misplaced[0]}] table")
    if not isinstance(study_table.get("sections", []), (list, tuple)):
        raise ConfigError(f"invalid config: study.sections must be a list such as [\"dimensions\"], got "
                          f"{study_table['sections']!r}")
    chosen = tuple(study_table.get("sections", ())) + tuple(sections)
    return build(StudyConfig, {**tables, **study_table, "sections": chosen,
                               "quick": quick or study_table.get("quick", False)})
