"""Training: Adam, a learning-rate schedule, early stopping on held-out loss, exact resume.

Deterministic on the CPU for a seed: weight init runs under a forked, seeded global RNG; shuffling and
the VAE's noise draw from explicit generators whose states are saved with every epoch's checkpoint
(with the optimizer's and the scheduler's), so a resumed run reaches the same weights as an uninterrupted one.

Progress goes to stderr: one line per epoch, plus a redrawn bar within each epoch only when stderr is a
terminal (``progress_bar="auto"``), so log files, CI and Ray workers get plain lines.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import ModelConfig, TrainConfig
from ..data import HeatmapDataset
from ..data.dataset import validation_split
from ..errors import AtlasError
from ..io import read_json, write_bytes, write_json
from ..models import Autoencoder, build_model
from ..models.conditioning import dataset_conditions
from ..models.inference import mean_loss
from ..models.layout import memory_format, placed
from .checkpoint import save_model, state_from_file, state_to_bytes
from .history import write_history
from .run import (
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
    STATE_FILE,
    Run,
    load_run,
    run_config,
    same_settings,
)
from .tracking import open_tracker


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise AtlasError("--device cuda was requested but CUDA is not available on this machine")
    return torch.device(name)


def images_tensor(dataset: HeatmapDataset, index: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(dataset.images[index]).unsqueeze(1).to(device)  # (N, 1, H, W)


def conditions_tensor(dataset: HeatmapDataset, config: ModelConfig, index: np.ndarray, device: torch.device
                      ) -> torch.Tensor | None:
    """The images' encoded conditions (N, C) for a cvae; None for a model without a condition."""
    conditions = dataset_conditions(config, dataset, index)
    return None if conditions is None else torch.from_numpy(conditions).to(device)  # (N, C)


def show_bar(progress: bool, progress_bar: bool | Literal["auto"]) -> bool:
    """Whether to redraw a progress bar: never without progress, on "auto" only when stderr is a terminal."""
    if progress_bar not in (True, False, "auto"):
        raise AtlasError(f"progress_bar must be True, False or 'auto', got {progress_bar!r}")
    if not progress:
        return False
    if progress_bar == "auto":
        return bool(getattr(sys.stderr, "isatty", lambda: False)())
    return progress_bar


def training_autocast(device: torch.device, precision: str) -> torch.autocast:
    """The training step's precision. Under "bfloat16" the forward pass's convolutions and matrix products run in
    bfloat16, and so do their gradients; the weights, their ``.grad`` and Adam's state stay float32, and the
    posterior's parameters and the logits are cast to float32 before sampling, the KL term and the likelihood.
    Under "float32" a no-op."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16")


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    return math.ceil(n_images / batch_size)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, n_fit_images: int):
    """The config's learning-rate schedule; "onecycle" steps after every batch, "plateau" after every epoch."""
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.scheduler_factor, patience=config.scheduler_patience
        )
    if config.scheduler == "onecycle":
        total_steps = config.epochs * steps_per_epoch(n_fit_images, config.batch_size)
        # A warm-up of one step or less has no step between the start and the peak, and torch divides by zero
        # when it is exactly one: no warm-up then, the cosine descent from the peak begins at the first step.
        warmup_fraction = config.warmup_fraction if config.warmup_fraction * total_steps > 1 else 0.0
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.learning_rate,
            total_steps=total_steps,
            pct_start=warmup_fraction,
            div_factor=config.initial_lr_divisor,
            final_div_factor=config.final_lr_divisor,
            cycle_momentum=False,
        )
    return None


def initialised_model(config: ModelConfig, seed: int, device: torch.device) -> Autoencoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(config)
    return model.to(device)


@dataclass
class TrainResult:
    run: Run | None  # None while the run is unfinished (max_new_epochs stopped it early)
    epochs_run: int
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    seconds: float
    images_per_second: float

    def metrics(self) -> dict[str, float]:
        return {"epochs_run": self.epochs_run, "best_epoch": self.best_epoch, "best_val_loss": self.best_val_loss,
                "stopped_early": float(self.stopped_early), "seconds": self.seconds,
                "images_per_second": self.images_per_second}


class Trainer:
    """One training run in one folder. ``fit`` trains (or resumes) and writes the run's files."""

    def __init__(
        self,
        dataset: HeatmapDataset,
        dataset_path: str | Path,
        model_config: ModelConfig,
        train_config: TrainConfig,
        run_dir: str | Path,
        progress: bool = True,
        progress_bar: bool | Literal["auto"] = "auto",
        tracking: str = "none",
    ):
        self.dataset = dataset
        self.model_config = model_config.for_images(dataset.image_shape)
        self.train_config = train_config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.bar = show_bar(progress, progress_bar)
        self.tracking = tracking
        open_tracker(tracking, None)  # fails now, before any file is written, if the tracker is unavailable
        self.device = resolve_device(train_config.device)
        self.config = run_config(dataset, Path(dataset_path), self.model_config, train_config, self.run_dir)
        fit_idx, val_idx = validation_split(dataset.train_idx, train_config.validation_fraction, train_config.seed)
        self.fit_images = images_tensor(dataset, fit_idx, self.device)
        self.val_images = images_tensor(dataset, val_idx, self.device)
        self.fit_conditions = conditions_tensor(dataset, self.model_config, fit_idx, self.device)
        self.val_conditions = conditions_tensor(dataset, self.model_config, val_idx, self.device)

        seed = train_config.seed
        self.memory_format = memory_format(self.device)
        self.model = placed(initialised_model(self.model_config, seed, self.device), self.device)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=train_config.learning_rate, betas=train_config.adam_betas,
            weight_decay=train_config.weight_decay, fused=True,
        )
        self.scheduler = make_scheduler(self.optimizer, train_config, len(self.fit_images))
        self.shuffle_generator = torch.Generator().manual_seed(seed)
        self.noise_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        self.epoch = 0
        self.best_val_loss = float("inf")
        self.patience_reference = float("inf")  # the held-out loss at the last drop of at least min_delta
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_weights = copy.deepcopy(self.model.state_dict())
        self.history: list[dict[str, float]] = []
        self.train_seconds = 0.0

    # -- persistence -------------------------------------------------------------------------------

    def _state(self) -> dict:
        return {
            "epoch": self.epoch,
            "best_val_loss": self.best_val_loss,
            "patience_reference": self.patience_reference,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "train_seconds": self.train_seconds,
            "history": self.history,
            "model": self.model.state_dict(),
            "best_weights": self.best_weights,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "shuffle_generator": self.shuffle_generator.get_state(),
            "noise_generator": self.noise_generator.get_state(),
        }

    def _restore(self, state: dict) -> None:
        self.epoch = state["epoch"]
        self.best_val_loss = state["best_val_loss"]
        self.patience_reference = state.get("patience_reference", self.best_val_loss)
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = state["bad_epochs"]
        self.train_seconds = state["train_seconds"]
        self.history = state["history"]
        self.model.load_state_dict(state["model"])
        self.best_weights = {k: v.to(self.device) for k, v in state["best_weights"].items()}
        self.optimizer.load_state_dict(state["optimizer"])
        self._match_parameter_layouts()
        if self.scheduler:
            self.scheduler.load_state_dict(state["scheduler"])
        self.shuffle_generator.set_state(state["shuffle_generator"])
        self.noise_generator.set_state(state["noise_generator"])

    def _match_parameter_layouts(self) -> None:
        """Give restored optimizer moments their parameter's memory layout, as in an uninterrupted run.

        Fused Adam walks the raw memory of a parameter and its moments together: a channels_last weight with
        a row-major moment (what a checkpoint restores) would silently get the wrong update.
        """
        for parameter, state in self.optimizer.state.items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == parameter.shape:
                    state[key] = torch.empty_like(parameter).copy_(value)

    def _prepare_folder(self, resume: bool) -> None:
        config_path = self.run_dir / CONFIG_FILE
        if not config_path.exists():
            if resume:
                raise AtlasError(f"nothing to resume: {self.run_dir} holds no run")
            write_json(config_path, self.config)
            return
        if not resume:
            raise AtlasError(
                f"{self.run_dir} already holds a run; pass --resume to continue it or choose another folder"
            )
        if not same_settings(read_json(config_path, what="run config"), self.config):
            raise AtlasError(f"cannot resume {self.run_dir}: its config.json differs from this run's settings")
        if (self.run_dir / STATE_FILE).is_file():
            self._restore(state_from_file(self.run_dir / STATE_FILE))
        # Without a state the run stopped inside its first epoch: starting over from epoch 0 is exact.

    # -- training ----------------------------------------------------------------------------------

    def _train_epoch(self) -> dict[str, float]:
        self.model.train()
        n = len(self.fit_images)
        batch_size = self.train_config.batch_size
        order = torch.randperm(n, generator=self.shuffle_generator).to(self.device)
        sums = {"loss": 0.0, "reconstruction": 0.0, "kl": 0.0}
        per_step = self.scheduler if self.train_config.scheduler == "onecycle" else None
        bar = tqdm(
            total=n, desc=f"epoch {self.epoch + 1}", unit="img", leave=False, disable=not self.bar, mininterval=0.5,
            file=sys.stderr,
        )
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            batch = self.fit_images[rows].contiguous(memory_format=self.memory_format)
            conditions = None if self.fit_conditions is None else self.fit_conditions[rows]  # (B, C)
            with training_autocast(self.device, self.train_config.precision):
                parts = self.model.loss(batch, sample=True, generator=self.noise_generator, conditions=conditions)
            self.optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            self.optimizer.step()
            if per_step is not None:
                per_step.step()
            loss, reconstruction, kl = parts.total.item(), parts.reconstruction.item(), parts.kl.item()
            sums["loss"] += loss * len(batch)
            sums["reconstruction"] += reconstruction * len(batch)
            sums["kl"] += kl * len(batch)
            if self.bar:
                bar.update(len(batch))
                bar.set_postfix(loss=f"{loss:.1f}", rec=f"{reconstruction:.1f}", kl=f"{kl:.2f}", refresh=False)
        bar.close()
        return {key: value / n for key, value in sums.items()}

    def _say(self, line: str) -> None:
        if self.bar:
            tqdm.write(line, file=sys.stderr)
        elif self.progress:
            print(line, file=sys.stderr, flush=True)

    def fit(
        self,
        resume: bool = False,
        max_new_epochs: int | None = None,
        on_epoch: Callable[[Trainer], None] | None = None,
    ) -> TrainResult:
        """Train until early stopping or ``epochs``; ``max_new_epochs`` stops sooner, leaving a resumable state.

        ``on_epoch(trainer)`` runs after each epoch's checkpoint, outside the epoch's timing (benchmarks use it
        to evaluate the weights of every epoch).
        """
        self._prepare_folder(resume)
        config = self.train_config
        tracker = open_tracker(self.tracking, self.run_dir)
        try:
            if self.epoch == 0:
                tracker.log_params(self.config)
            new_epochs = 0
            finished = self.bad_epochs >= config.early_stopping_patience or self.epoch >= config.epochs
            while not finished and (max_new_epochs is None or new_epochs < max_new_epochs):
                row = self._run_epoch()
                new_epochs += 1
                tracker.log_epoch(self.epoch, row)
                finished = self.bad_epochs >= config.early_stopping_patience or self.epoch >= config.epochs
                if on_epoch is not None:
                    on_epoch(self)
            result = self._finish(complete=finished)
            if finished:
                tracker.log_final(result.metrics())
        finally:
            tracker.close()
        return result

    def _run_epoch(self) -> dict[str, float]:
        config = self.train_config
        started = time.perf_counter()
        learning_rate = self.optimizer.param_groups[0]["lr"]
        train_parts = self._train_epoch()
        val_parts = mean_loss(self.model, self.val_images, seed=config.seed + 2, conditions=self.val_conditions)
        if config.scheduler == "plateau":
            self.scheduler.step(val_parts["loss"])
        self.epoch += 1
        # Patience counts epochs without a drop of min_delta below the last such drop; the weights kept are
        # those of the lowest held-out loss, whatever the size of its drop.
        if val_parts["loss"] < self.patience_reference - config.min_delta:
            self.patience_reference, self.bad_epochs = val_parts["loss"], 0
        else:
            self.bad_epochs += 1
        if val_parts["loss"] < self.best_val_loss:
            self.best_val_loss, self.best_epoch = val_parts["loss"], self.epoch
            self.best_weights = copy.deepcopy(self.model.state_dict())
        seconds = time.perf_counter() - started
        self.train_seconds += seconds
        row = {"epoch": self.epoch, **{f"train_{k}": v for k, v in train_parts.items()},
               **{f"val_{k}": v for k, v in val_parts.items()}, "learning_rate": learning_rate, "seconds": seconds}
        self.history.append(row)
        self._say(
            f"epoch {self.epoch:3d}/{config.epochs}  train {train_parts['loss']:.2f}  held-out {val_parts['loss']:.2f} "
            f"(rec {val_parts['reconstruction']:.2f}, kl {val_parts['kl']:.2f})  lr {learning_rate:.1e}  "
            f"{seconds:.1f}s"
        )
        write_bytes(self.run_dir / STATE_FILE, state_to_bytes(self._state()))
        write_history(self.run_dir / HISTORY_FILE, self.history)
        return row

    def _finish(self, complete: bool) -> TrainResult:
        images_seen = self.epoch * len(self.fit_images)
        images_per_second = images_seen / self.train_seconds if self.train_seconds else 0.0
        result_fields = dict(
            epochs_run=self.epoch,
            best_epoch=self.best_epoch,
            best_val_loss=self.best_val_loss,
            stopped_early=self.epoch < self.train_config.epochs,
            seconds=self.train_seconds,
            images_per_second=images_per_second,
        )
        if complete:  # also when a finished run is resumed: its weights, history and metrics are written again
            self.model.load_state_dict(self.best_weights)
            save_model(self.run_dir / MODEL_FILE, self.model)
            write_history(self.run_dir / HISTORY_FILE, self.history)
            metrics_path = self.run_dir / METRICS_FILE
            metrics = read_json(metrics_path, what="metrics") if metrics_path.exists() else {}
            metrics["training"] = {**result_fields, "n_fit_images": len(self.fit_images),
                                   "n_validation_images": len(self.val_images)}
            write_json(metrics_path, metrics)
            return TrainResult(run=load_run(self.run_dir), **result_fields)
        return TrainResult(run=None, **result_fields)


def train(
    dataset: HeatmapDataset,
    dataset_path: str | Path,
    model_config: ModelConfig,
    train_config: TrainConfig,
    run_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    max_new_epochs: int | None = None,
    progress_bar: bool | Literal["auto"] = "auto",
    tracking: str = "none",
) -> TrainResult:
    """Train a model on ``dataset`` into ``run_dir`` (see :class:`Trainer`).

    ``progress``: print one line per epoch to stderr; ``progress_bar``: also redraw a bar within each epoch
    ("auto": only when stderr is a terminal); ``tracking``: "none" or "tensorboard" (event files in
    ``run_dir/tensorboard``).
    """
    trainer = Trainer(dataset, dataset_path, model_config, train_config, run_dir, progress=progress,
                      progress_bar=progress_bar, tracking=tracking)
    return trainer.fit(resume=resume, max_new_epochs=max_new_epochs)
