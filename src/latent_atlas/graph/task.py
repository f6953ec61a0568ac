"""Tasks, their content keys and the ledger that records which of them have finished."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from ..errors import AtlasError
from ..io import read_json, write_json

LEDGER_DIR = "tasks"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True, eq=False)
class Task:
    """One node of the graph.

    ``fn(ctx)`` does the work: it reads its inputs' outputs through ``ctx`` (their folders under the root
    and their summaries), writes its own files (under ``ctx.root``, atomically), and returns a JSON-able
    summary that the ledger keeps. ``id`` is a readable, unique name (it names the ledger file);
    ``cpus`` is the share of the machine the task declares (Ray schedules by it and the task sets its
    torch and BLAS threads from it). Bump ``version`` when ``fn`` changes what it computes. ``options``
    change how a task runs but not what it computes (e.g. experiment tracking): they stay out of the key.
    ``outputs`` are the files (or folders), relative to the root, that a finished task leaves; a summary may add
    the ones known only once it ran, as a list under ``"files"``. A finished task whose outputs have gone is run
    again (``missing_outputs``).
    """

    id: str
    stage: str
    fn: Callable[[TaskContext], dict[str, Any]]
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Task] = field(default_factory=dict)
    cpus: float = 1.0
    version: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()

    @cached_property
    def key(self) -> str:
        try:
            text = _canonical({
                "fn": f"{self.fn.__module__}.{self.fn.__qualname__}",
                "version": self.version,
                "params": self.params,
                "inputs": {name: task.key for name, task in sorted(self.inputs.items())},
            })
        except (TypeError, ValueError) as exc:
            raise AtlasError(f"task {self.id}: parameters are not JSON-able ({exc})") from None
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class TaskContext:
    """What a running task sees: the graph's root folder, its parameters and its finished inputs."""

    root: Path
    task_id: str
    params: Mapping[str, Any]
    input_ids: Mapping[str, str]
    threads: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)

    def input_summary(self, name: str) -> dict[str, Any]:
        entry = ledger_entry(self.root, self.input_ids[name])
        if entry is None:
            raise AtlasError(f"task {self.task_id}: its input {self.input_ids[name]} has not finished")
        return entry["summary"]


def ledger_path(root: Path, task_id: str) -> Path:
    return Path(root) / LEDGER_DIR / f"{task_id}.json"


def ledger_entry(root: Path, task_id: str) -> dict[str, Any] | None:
    """The finished task's ledger entry, or None when it has not finished (or the entry is unreadable)."""
    path = ledger_path(root, task_id)
    if not path.is_file():
        return None
    try:
        entry = read_json(path, what="task ledger entry")
    except AtlasError:
        return None
    return entry if isinstance(entry, dict) and "key" in entry and "summary" in entry else None


# Summary fields that name what a task made (a dataset's bytes, a run's weights). A task run again because its
# outputs had gone is expected to make the same; where it does not, what was built on the old one is redone.
IDENTITY_FIELDS = ("content_hash", "model_sha256")


def recorded(root: Path, task: Task) -> dict[str, Any] | None:
    """The task's ledger entry when it is for this task's key, else None."""
    entry = ledger_entry(root, task.id)
    return entry if entry is not None and entry["key"] == task.key else None


def missing_outputs(root: Path, task: Task, entry: dict[str, Any]) -> list[str]:
    """The outputs of a recorded task that are no longer under the root."""
    files = entry["summary"].get("files") if isinstance(entry["summary"], dict) else None
    declared = [*task.outputs, *(f for f in files or () if isinstance(f, str))]
    return [path for path in declared if not (Path(root) / path).exists()]


def identity(summary: dict[str, Any]) -> dict[str, Any]:
    return {name: summary[name] for name in IDENTITY_FIELDS if isinstance(summary, dict) and name in summary}


def is_done(root: Path, task: Task) -> bool:
    entry = recorded(root, task)
    return entry is not None and not missing_outputs(root, task, entry)


def record(root: Path, task: Task, summary: dict[str, Any], seconds: float) -> None:
    """Write the ledger entry last, atomically: a task killed before this line is simply run again."""
    write_json(ledger_path(root, task.id), {
        "id": task.id,
        "stage": task.stage,
        "key": task.key,
        "version": task.version,
        "params": task.params,
        "inputs": {name: dep.id for name, dep in task.inputs.items()},
        "summary": summary,
        "seconds": round(seconds, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
