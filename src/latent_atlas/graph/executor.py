"""Run a task graph: in this process, one task at a time, or on Ray, many at once.

Both backends share one driver loop: collect the targets' dependencies, skip what the ledger says has
finished with the same key (and whose outputs are all still there), submit every task whose inputs are done (at most ``max_parallel`` at a
time), and report progress as tasks finish. Tasks exchange files under the root, not objects, so a
killed run loses only the tasks that were running; started again, it resumes from the ledger (and a
training task resumes its own interrupted run from its last epoch).
"""

from __future__ import annotations

import fcntl
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import AtlasError
from .task import LEDGER_DIR, Task, TaskContext, identity, ledger_entry, missing_outputs, record, recorded

BACKENDS = ("ray", "local")
LOCK_FILE = ".lock"


def collect(targets: Iterable[Task]) -> list[Task]:
    """Every task the targets need, inputs before the tasks that read them; one task per id."""
    ordered: dict[str, Task] = {}
    visiting: set[str] = set()

    def visit(task: Task) -> None:
        if task.id in ordered:
            if ordered[task.id].key != task.key:
                raise AtlasError(f"two different tasks share the id {task.id}")
            return
        if task.id in visiting:
            raise AtlasError(f"the task graph has a cycle through {task.id}")
        visiting.add(task.id)
        for dependency in task.inputs.values():
            visit(dependency)
        visiting.discard(task.id)
        ordered[task.id] = task

    for target in targets:
        visit(target)
    return list(ordered.values())


def limit_threads(threads: int) -> Any:
    """Hold torch and the BLAS/OpenMP pools to ``threads`` for the task (returns threadpoolctl's limiter)."""
    from threadpoolctl import threadpool_limits

    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return threadpool_limits(threads)


def execute(task: Task, root: str, threads: int) -> dict[str, Any]:
    """Run one task and record it in the ledger; returns its summary. Runs in a Ray worker or in process."""
    started = time.perf_counter()
    context = TaskContext(root=Path(root), task_id=task.id, params=task.params,
                          input_ids={name: dep.id for name, dep in task.inputs.items()}, threads=threads,
                          options=task.options)
    with limit_threads(threads):
        summary = task.fn(context)
    record(Path(root), task, summary, time.perf_counter() - started)
    return summary


@contextmanager
def exclusive(root: Path) -> Iterator[None]:
    """One driver per root folder: a second one fails at once instead of racing the first."""
    ledger = root / LEDGER_DIR
    ledger.mkdir(parents=True, exist_ok=True)
    with open(ledger / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AtlasError(f"another latent-atlas process is already running in {root}") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class Progress:
    """One line per finished task: how many runs (training tasks) and tasks are done, and what is running."""

    def __init__(self, tasks: list[Task], done: set[str], enabled: bool, stream=None):
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.total = len(tasks)
        self.done = len(done)
        self.runs_total = sum(task.stage == "train" for task in tasks)
        self.runs_done = sum(task.stage == "train" for task in tasks if task.id in done)
        self.seconds: dict[str, float] = {}

    def start(self, todo: int) -> None:
        if self.enabled:
            reused = self.total - todo
            self.say(f"[graph] {self.total} tasks, {reused} already done, {todo} to run"
                     f" ({self.runs_total} training runs in all)")

    def finished(self, task: Task, seconds: float, running: Iterable[Task]) -> None:
        self.done += 1
        self.seconds[task.stage] = self.seconds.get(task.stage, 0.0) + seconds
        if task.stage == "train":
            self.runs_done += 1
        if self.enabled:
            now = ", ".join(sorted(t.id for t in running)) or "-"
            self.say(f"[{self.done}/{self.total} tasks | runs {self.runs_done}/{self.runs_total}] "
                     f"{task.stage} {task.id} done in {seconds:.1f} s; running: {now}")

    def rerunning(self, task_id: str, why: str) -> None:
        if self.enabled:
            self.say(f"[graph] {task_id}: {why}; running it again")

    def reopened(self, task: Task, why: str) -> None:
        """A task counted as done that has to run again after all."""
        self.done -= 1
        self.runs_done -= task.stage == "train"
        self.rerunning(task.id, why)

    def say(self, message: str) -> None:
        print(message, file=self.stream, flush=True)


class LocalBackend:
    """Runs each task in this process when it is submitted; the driver loop sees it finished at once."""

    def __init__(self, root: Path):
        self.root = root
        self._results: dict[int, tuple[dict[str, Any] | None, BaseException | None]] = {}
        self._next = 0

    def __enter__(self) -> LocalBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    @property
    def capacity(self) -> int:
        return 1

    def submit(self, task: Task) -> int:
        handle, self._next = self._next, self._next + 1
        try:
            self._results[handle] = (execute(task, str(self.root), max(1, int(task.cpus))), None)
        except BaseException as exc:  # re-raised by wait(), after the driver knows which task failed
            if isinstance(exc, KeyboardInterrupt):
                raise
            self._results[handle] = (None, exc)
        return handle

    def wait(self, handles: list[int]) -> list[tuple[int, dict[str, Any] | None, BaseException | None]]:
        return [(h, *self._results.pop(h)) for h in handles]


def run_tasks(
    targets: Iterable[Task],
    root: str | Path,
    backend: str = "ray",
    address: str | None = None,
    max_parallel: int | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Run everything the targets need under ``root``; returns every task's summary by id.

    ``backend="ray"`` starts a local Ray instance bound to loopback (stopped again at the end), or joins
    the cluster at ``address``; ``"local"`` runs the tasks one after another in this process. At most
    ``max_parallel`` tasks run at once (default: the CPUs Ray reports).
    """
    if backend not in BACKENDS:
        raise AtlasError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if address is not None and backend != "ray":
        raise AtlasError("--address joins a Ray cluster: it needs the ray backend")
    if max_parallel is not None and max_parallel < 1:
        raise AtlasError(f"max_parallel must be at least 1, got {max_parallel}")
    root = Path(root)
    tasks = collect(targets)
    with exclusive(root):
        done: set[str] = set()
        repairs: dict[str, tuple[dict[str, Any], list[str]]] = {}  # finished, but outputs gone: (identity, gone)
        for task in tasks:
            entry = recorded(root, task)
            missing = [] if entry is None else missing_outputs(root, task, entry)
            if entry is not None and not missing:
                done.add(task.id)
            elif missing:
                repairs[task.id] = (identity(entry["summary"]), missing)
        todo = [task for task in tasks if task.id not in done]
        report = Progress(tasks, done, progress)
        report.start(len(todo))
        for task_id, (_, missing) in repairs.items():
            report.rerunning(task_id, f"{_listed(missing)} {'is' if len(missing) == 1 else 'are'} missing")
        if todo:
            if backend == "local":
                runner = LocalBackend(root)
            else:
                from .ray_backend import RayBackend

                runner = RayBackend(root, address=address, max_parallel=max_parallel)
            with runner:
                _drive(tasks, todo, done, runner, max_parallel or runner.capacity, report,
                       {task_id: made for task_id, (made, _) in repairs.items()})
        return {task.id: ledger_entry(root, task.id)["summary"] for task in tasks}


# How long a task of each stage takes, relative to the rest (1): training runs are the long tasks that most
# of the graph waits on. Only the order in which ready tasks start depends on it.
STAGE_WEIGHTS = {"train": 20.0}


def path_lengths(tasks: list[Task]) -> dict[str, float]:
    """Each task's weight plus the heaviest chain of tasks that wait on it (its upward rank): starting the
    ready task with the longest such chain first keeps the cores busy to the end, e.g. a dataset that gates
    trainings starts before the analyses of another dataset's finished runs. ``tasks``: inputs first."""
    dependents = _dependents(tasks)
    lengths: dict[str, float] = {}
    for task in reversed(tasks):  # every dependent before the task it waits on
        lengths[task.id] = STAGE_WEIGHTS.get(task.stage, 1.0) + max(
            (lengths[d.id] for d in dependents[task.id]), default=0.0)
    return lengths


def _listed(paths: list[str], shown: int = 3) -> str:
    more = len(paths) - shown
    return ", ".join(paths[:shown]) + (f" and {more} more" if more > 0 else "")


def _dependents(tasks: list[Task]) -> dict[str, list[Task]]:
    """Each task's id -> the tasks that read its outputs."""
    dependents: dict[str, list[Task]] = {task.id: [] for task in tasks}
    for task in tasks:
        for dependency in task.inputs.values():
            dependents.setdefault(dependency.id, []).append(task)
    return dependents


def _drive(tasks: list[Task], todo: list[Task], done: set[str], runner: Any, max_parallel: int, report: Progress,
           repairs: dict[str, dict[str, Any]]) -> None:
    """Run ``todo``. ``repairs``: the tasks run again because their outputs had gone, with what they had made
    (``task.identity``); one that now makes something else has every finished task built on it run again too."""
    pending = list(todo)
    running: dict[Any, tuple[Task, float]] = {}
    lengths = path_lengths(tasks)
    dependents = _dependents(tasks)
    while pending or running:
        ready = [t for t in pending if all(dep.id in done for dep in t.inputs.values())]
        ready.sort(key=lambda t: -lengths[t.id])  # the longest chain ahead first; ties in graph order
        for task in ready:
            if len(running) >= max_parallel:
                break
            pending.remove(task)
            running[runner.submit(task)] = (task, time.perf_counter())
        if not running:
            missing = sorted({dep.id for t in pending for dep in t.inputs.values() if dep.id not in done})
            raise AtlasError(f"tasks wait on inputs that never finish: {', '.join(missing)}")
        for handle, summary, error in runner.wait(list(running)):
            task, started = running.pop(handle)
            if error is not None:
                raise _task_error(task, error)
            done.add(task.id)
            report.finished(task, time.perf_counter() - started, (t for t, _ in running.values()))
            if task.id in repairs and identity(summary) != repairs[task.id]:
                for stale in _built_on(task, dependents, done):
                    done.discard(stale.id)
                    pending.append(stale)
                    report.reopened(stale, f"{task.id} made something other than before")


def _built_on(task: Task, dependents: dict[str, list[Task]], done: set[str]) -> list[Task]:
    """The finished tasks that depend on ``task``, directly or through others, each once."""
    found: dict[str, Task] = {}
    stack = list(dependents.get(task.id, ()))
    while stack:
        dependent = stack.pop()
        if dependent.id in found:
            continue
        found[dependent.id] = dependent
        stack.extend(dependents.get(dependent.id, ()))
    return [t for t in found.values() if t.id in done]


def _task_error(task: Task, error: BaseException) -> BaseException:
    if isinstance(error, AtlasError):
        return AtlasError(f"{task.stage} {task.id}: {error}")
    return error
