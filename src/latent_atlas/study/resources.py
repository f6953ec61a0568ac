"""What tasks load, cached per worker process: datasets, oracles. A Ray worker runs many tasks in turn,
so each of these is read once per process, not once per task."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..data import HeatmapDataset, load_dataset
from ..io import read_json
from ..oracle import HeatmapOracle


def _stamp(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path.resolve()), stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=4)
def _dataset(stamp: tuple[str, int, int]) -> HeatmapDataset:
    return load_dataset(stamp[0])


def dataset_at(path: str | Path) -> HeatmapDataset:
    """The dataset file at ``path`` (checked against its content hash), loaded once per process and file version."""
    return _dataset(_stamp(Path(path)))


@lru_cache(maxsize=4)
def _oracle(dataset_stamp: tuple[str, int, int], shape_threshold: float) -> HeatmapOracle:
    return HeatmapOracle.for_dataset(_dataset(dataset_stamp), shape_threshold=shape_threshold)


def oracle_for(dataset_path: str | Path, oracle_path: str | Path) -> HeatmapOracle:
    """The dataset's oracle with the shape threshold that the oracle task fixed (``oracle/<kind>.json``)."""
    threshold = float(read_json(oracle_path, what="oracle settings")["shape_threshold"])
    return _oracle(_stamp(Path(dataset_path)), threshold)
