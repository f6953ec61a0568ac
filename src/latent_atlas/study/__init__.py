"""The whole seed study as one pipeline: datasets, models, evaluation (and, as it grows, analyses and report)."""

from .config import StudyConfig, study_config_from
from .pipeline import run_study

__all__ = ["StudyConfig", "run_study", "study_config_from"]
