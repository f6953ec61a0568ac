"""Optional experiment tracking: a run's parameters, per-epoch metrics and final metrics, logged to TensorBoard.

TensorBoard rather than MLflow: it needs no server or database (event files under the run folder, readable by
``tensorboard --logdir``), its writer ships inside torch (``torch.utils.tensorboard``), and the ``tensorboard``
package is small. Tracking is off by default and the package is imported only when it is asked for.

    tracker = open_tracker("tensorboard", run_dir)   # or "none": every call does nothing
    tracker.log_params(config); tracker.log_epoch(epoch, row); tracker.log_final(metrics); tracker.close()
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from ..errors import AtlasError

TRACKERS = ("none", "tensorboard")
TENSORBOARD_DIR = "tensorboard"


class Tracker(Protocol):
    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None: ...

    def log_final(self, metrics: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one level of dotted keys: {"train": {"seed": 0}} -> {"train.seed": 0}."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def _hparam_value(value: Any) -> int | float | str | bool:
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)  # None, lists: the HParams plugin takes numbers, strings and booleans only


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers in a (nested) metrics mapping, by dotted name."""
    return {
        key: float(value)
        for key, value in flatten(metrics).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    }


class NullTracker:
    """Tracking off: every call does nothing."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        pass

    def log_final(self, metrics: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker:
    """Event files in ``log_dir``. Parameters go in as HParams and as a JSON text; epochs as scalars ``epoch/NAME``
    at step = epoch; final metrics as scalars ``final/NAME`` (nested keys dotted). Each call is flushed at once,
    so a killed run loses nothing already logged; a resumed run appends to the same folder."""

    def __init__(self, log_dir: str | Path):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log_params(self, params: Mapping[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        flat = {key: _hparam_value(value) for key, value in flatten(params).items()}
        _, session_start, _ = hparams(flat, metric_dict={})
        self.writer.file_writer.add_summary(session_start)
        self.writer.add_text("params", "```json\n" + json.dumps(dict(params), indent=2, sort_keys=True) + "\n```")
        self.writer.flush()

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        for name, value in _scalars(metrics).items():
            if name != "epoch":
                self.writer.add_scalar(f"epoch/{name}", value, global_step=epoch)
        self.writer.flush()

    def log_final(self, metrics: Mapping[str, Any]) -> None:
        for name, value in _scalars(metrics).items():
            self.writer.add_scalar(f"final/{name}", value, global_step=0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_tracker(kind: str, run_dir: str | Path | None) -> Tracker:
    """A tracker of ``kind`` ("none" or "tensorboard") writing under ``run_dir/tensorboard``.

    With ``run_dir=None`` it only checks that the tracker can be made (the package is installed) and
    returns a tracker that logs nothing.
    """
    if kind not in TRACKERS:
        raise AtlasError(f"unknown tracking {kind!r}; choose one of {', '.join(TRACKERS)}")
    if kind == "none":
        return NullTracker()
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise AtlasError(
            "tracking 'tensorboard' needs the tensorboard package: pip install tensorboard"
        ) from None
    if run_dir is None:
        return NullTracker()
    return TensorBoardTracker(Path(run_dir) / TENSORBOARD_DIR)
