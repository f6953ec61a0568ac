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
    ``outputs`` are the files (or folders), relative to the root, that a finished task leaves (``path#key``: a
    JSON file holding that top-level key); a summary may add the ones known only once it ran, as a list under
    ``"files"``. A finished task whose outputs have gone runs again (``out_of_date``).
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


# Summary fields that name what a task made (a dataset's bytes, a run's weights): a task run again is expected to
# make the same, and where it does not, everything built on what it made before is out of date (``fingerprint``).
IDENTITY_FIELDS = ("content_hash", "model_sha256")


def recorded(root: Path, task: Task) -> dict[str, Any] | None:
    """The task's ledger entry when it is for this task's key, else None."""
    entry = ledger_entry(root, task.id)
    return entry if entry is not None and entry["key"] == task.key else None


def _output_missing(root: Path, output: str) -> bool:
    """``path`` is missing when it does not exist; ``path#key`` also when that JSON file lacks the top-level key
    (for a file that two tasks write parts of, such as a run's metrics.json)."""
    path, _, key = output.partition("#")
    if not (Path(root) / path).exists():
        return True
    if not key:
        return False
    try:
        content = read_json(Path(root) / path, what="task output")
    except AtlasError:
        return True
    return not isinstance(content, dict) or key not in content


def missing_outputs(root: Path, task: Task, entry: dict[str, Any]) -> list[str]:
    """The outputs of a recorded task that are no longer under the root: its declared ones and those its summary
    names under "files" (or, in entries written before "files" existed, under "file")."""
    summary = entry["summary"] if isinstance(entry["summary"], dict) else {}
    named = summary.get("files", [summary["file"]] if isinstance(summary.get("file"), str) else [])
    declared = [*task.outputs, *(f for f in named if isinstance(f, str))]
    return [output for output in declared if _output_missing(root, output)]


def identity(summary: dict[str, Any]) -> dict[str, Any]:
    return {name: summary[name] for name in IDENTITY_FIELDS if isinstance(summary, dict) and name in summary}


def fingerprint(task: Task, summary: dict[str, Any], made_from: Mapping[str, str]) -> str:
    """What a finished task made, as a hash of its key, its summary's identity fields and the fingerprints of its
    inputs (``made_from``, by input id): an input made again differently changes the fingerprint of everything
    built on it, directly or not."""
    text = _canonical({"key": task.key, "made": identity(summary), "from": dict(made_from)})
    return hashlib.sha256(text.encode()).hexdigest()


def _listed(items: list[str], shown: int = 3) -> str:
    more = len(items) - shown
    return ", ".join(items[:shown]) + (f" and {more} more" if more > 0 else "")


def out_of_date(root: Path, task: Task, entry: dict[str, Any], made_from: Mapping[str, str | None]) -> str | None:
    """Why a task recorded under its key must run again (its outputs have gone, or an input was made again
    differently since it ran), or None when it is up to date. An entry written before ``made_from`` was
    recorded (see ``stamp``) is not compared."""
    missing = missing_outputs(root, task, entry)
    if missing:
        return f"{_listed(missing)} {'is' if len(missing) == 1 else 'are'} missing"
    built_on = entry.get("made_from")
    changed = sorted(i for i, made in made_from.items() if built_on.get(i) != made) if isinstance(built_on, dict) else []
    if changed:
        return f"{_listed(changed)} {'was' if len(changed) == 1 else 'were'} made again differently"
    return None


def stamp(root: Path, entry: dict[str, Any], made_from: Mapping[str, str]) -> None:
    """Record ``made_from`` in an entry written before it was recorded."""
    if not isinstance(entry.get("made_from"), dict):
        write_json(ledger_path(root, entry["id"]), {**entry, "made_from": dict(made_from)})


def forget(root: Path, task_id: str) -> None:
    """Before a task runs again, void its ledger entry (no key, no summary) so that a run killed part way leaves
    nothing that vouches for outputs it had begun to replace; its parameters stay (``study.plan`` reads which
    data config holds a dataset's name from them)."""
    entry = ledger_entry(root, task_id)
    if entry is not None:
        write_json(ledger_path(root, task_id), {**entry, "key": None, "summary": {}, "made_from": {}})


def record(root: Path, task: Task, summary: dict[str, Any], seconds: float,
           made_from: Mapping[str, str] | None = None) -> None:
    """Write the ledger entry last, atomically: a task killed before this line is simply run again.
    ``made_from``: the fingerprints of the inputs it was built on, by input id."""
    write_json(ledger_path(root, task.id), {
        "id": task.id,
        "stage": task.stage,
        "key": task.key,
        "version": task.version,
        "params": task.params,
        "inputs": {name: dep.id for name, dep in task.inputs.items()},
        "made_from": dict(made_from or {}),
        "summary": summary,
        "seconds": round(seconds, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
