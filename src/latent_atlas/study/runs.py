"""Which runs a study or sweep trains: one ``RunSpec`` per (dataset, model, seed, other settings).

A run's name says what differs from the study's base settings (``gaussian-vae-s1``,
``gaussian-vae-latent_dim8-s0``), so a section that asks for a run the core study already has (the
latent-dimension study at the default dimension, say) names the same run, and the task graph trains it
once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..config import DataConfig, ModelConfig, TrainConfig
from .config import StudyConfig

# The parts of a study a run belongs to. Core runs also join TOOLBOX when the toolbox section is on (the
# second seed's techniques are applied to the core VAEs and AEs); the beta sweep's runs form BETAS; the
# conditional VAEs (one per dataset and toolbox seed) are TOOLBOX runs.
CORE, DIMENSIONS, BETAS, TOOLBOX = "core", "dimensions", "betas", "toolbox"
# The factor each dataset's conditional VAE is conditioned on: the tail class, and a continuous factor.
CVAE_CONDITIONS = {"student_t": "df", "gaussian": "rho"}


@dataclass(frozen=True)
class RunSpec:
    name: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    groups: frozenset[str] = field(default_factory=frozenset)  # the parts of the study that use the run
    settings: tuple[tuple[str, Any], ...] = ()  # the swept settings, as (dotted key, value)

    @property
    def data_kind(self) -> str:
        return self.data.kind

    @property
    def model_kind(self) -> str:
        return self.model.kind

    @property
    def seed(self) -> int:
        return self.train.seed

    def setting(self, key: str, default: Any = None) -> Any:
        return dict(self.settings).get(key, default)


def _label(value: Any) -> str:
    """A setting's value as part of a folder name: 0.001 -> "0.001", [0.9, 0.95] -> "0.9_0.95"."""
    if isinstance(value, (list, tuple)):
        return "_".join(_label(item) for item in value)
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]", "_", text)


def run_name(data_kind: str, model_kind: str, seed: int, extra: dict[str, Any] | None = None) -> str:
    parts = [data_kind, model_kind]
    parts += [f"{key.rsplit('.', 1)[-1]}{_label(value)}" for key, value in sorted((extra or {}).items())]
    return "-".join(parts + [f"s{seed}"])


def _merge(specs: dict[str, RunSpec], spec: RunSpec) -> None:
    if spec.name in specs:
        old = specs[spec.name]
        settings = tuple({**dict(old.settings), **dict(spec.settings)}.items())
        specs[spec.name] = RunSpec(old.name, old.data, old.model, old.train, old.groups | spec.groups, settings)
    else:
        specs[spec.name] = spec


def _vae_setting_runs(specs: dict[str, RunSpec], config: StudyConfig, field: str, values: tuple, seeds: tuple,
                      group: str) -> None:
    """The Gaussian VAE at each value of one model setting, over ``seeds``; the default value is the core run."""
    key = f"model.{field}"
    for value in values:
        extra = {} if value == getattr(config.model, field) else {key: value}
        for seed in seeds:
            _merge(specs, RunSpec(run_name("gaussian", "vae", seed, extra), config.data_for("gaussian"),
                                  config.model_for("vae", **{field: value}), config.train_for(seed),
                                  frozenset({group}), ((key, value),)))


def study_runs(config: StudyConfig) -> list[RunSpec]:
    """Every run of the study: the core (datasets x models x seeds) and the chosen sections' runs."""
    specs: dict[str, RunSpec] = {}
    core_groups = frozenset({CORE, TOOLBOX} if TOOLBOX in config.sections else {CORE})
    for data_kind in config.datasets:
        for model_kind in config.models:
            for seed in config.seeds:
                _merge(specs, RunSpec(run_name(data_kind, model_kind, seed), config.data_for(data_kind),
                                      config.model_for(model_kind), config.train_for(seed), core_groups))
    if DIMENSIONS in config.sections:
        _vae_setting_runs(specs, config, "latent_dim", config.dimensions.latent_dims, config.dimensions.seeds,
                          DIMENSIONS)
    if TOOLBOX in config.sections:
        _vae_setting_runs(specs, config, "beta", config.toolbox.betas, config.toolbox.seeds, BETAS)
        for data_kind in config.datasets:
            for seed in config.toolbox.seeds:
                _merge(specs, RunSpec(run_name(data_kind, "cvae", seed), config.data_for(data_kind),
                                      config.model_for("cvae", condition=CVAE_CONDITIONS[data_kind]),
                                      config.train_for(seed), frozenset({TOOLBOX})))
    return list(specs.values())
