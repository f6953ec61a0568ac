"""The seed study as one task graph over training seeds; sweeps through the same graph."""

from .config import StudyConfig, study_config_from
from .pipeline import StudyResult, run_study

__all__ = ["StudyConfig", "StudyResult", "run_study", "study_config_from"]
