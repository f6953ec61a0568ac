"""The study's config: one [data], [model] and [train] table shared by every dataset and model it trains."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..config import (
    DataConfig,
    FactorRange,
    FrozenConfig,
    ModelConfig,
    TrainConfig,
    build,
    section,
)


class StudyConfig(FrozenConfig):
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    datasets: tuple[Literal["gaussian", "student_t"], ...] = Field(("gaussian", "student_t"), min_length=1)
    models: tuple[Literal["vae", "ae"], ...] = Field(("vae", "ae"), min_length=1)
    latent_dims: tuple[int, ...] = Field(
        (), description="extra VAEs on the gaussian data with these latent dimensions: the effect of dimension"
    )
    quick: bool = False

    @field_validator("latent_dims")
    @classmethod
    def _plane_sized_dims(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 2 for d in value):
            raise ValueError(f"the study's analyses need latent dimensions of at least 2, got {list(value)}")
        return tuple(sorted(set(value)))

    @field_validator("model")
    @classmethod
    def _plane_sized_model(cls, value: ModelConfig) -> ModelConfig:
        if value.latent_dim < 2:
            raise ValueError(f"latent_dim: the study's analyses (planes, paths, MIG) need at least 2, got {value.latent_dim}")
        return value

    def data_for(self, kind: str) -> DataConfig:
        return build(DataConfig, {**self.data.to_dict(), "kind": kind}, section="data")

    def model_for(self, kind: str, latent_dim: int | None = None) -> ModelConfig:
        return build(ModelConfig, {**self.model.to_dict(), "kind": kind}, section="model", latent_dim=latent_dim)

    @property
    def sweep_dims(self) -> tuple[int, ...]:
        """The sweep's latent dimensions other than the main models' own."""
        return tuple(d for d in self.latent_dims if d != self.model.latent_dim)


# A demo in about a minute: a coarser factor grid (13 x 13 x 10 = 1,690 images) and fewer epochs.
QUICK = {
    "data": {
        "var_x": FactorRange(start=0.1, stop=4.9, step=0.4).to_dict(),
        "var_y": FactorRange(start=0.1, stop=4.9, step=0.4).to_dict(),
        "rho": FactorRange(start=-0.95, stop=0.85, step=0.2).to_dict(),
    },
    "train": {"epochs": 15, "batch_size": 32},
}


def study_config_from(document: dict[str, Any], quick: bool = False) -> StudyConfig:
    """Defaults, then the quick settings if asked, then the TOML document's tables, last one wins."""
    tables = {name: dict(QUICK.get(name, {})) if quick else {} for name in ("data", "model", "train")}
    for name in tables:
        tables[name].update(section(document, name))
    study_table = section(document, "study")
    return build(StudyConfig, {**tables, **study_table, "quick": quick or study_table.get("quick", False)})
