"""Training runs: the trainer, checkpoints and the run folder."""

from .checkpoint import load_model, save_model
from .run import Run, load_run
from .trainer import TrainResult, train

__all__ = ["Run", "TrainResult", "load_model", "load_run", "save_model", "train"]
