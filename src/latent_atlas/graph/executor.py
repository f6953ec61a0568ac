"""Run a task graph: in this process, one task at a time, or on Ray, many at once.

Both backends share one driver loop: collect the targets' dependencies and settle them inputs first. A task
is skipped when the ledger says it finished with the same key, its outputs are all still there and its inputs
made what it was built on (each entry records its inputs' fingerprints); otherwise it runs once its inputs are
settled (at most ``max_parallel`` at a time), and progress is reported as tasks finish. Tasks exchange files
under the root, not objects, so a killed run loses only the tasks that were running; started again, it
resumes from the ledger (and a training task resumes its own interrupted run from its last epoch).
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
from .task import (
    LEDGER_DIR,
    Task,
    TaskContext,
    fingerprint,
    forget,
    ledger_entry,
    out_of_date,
    record,
    recorded,
    stamp,
)

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


def execute(task: Task, root: str, threads: int, made_from: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one task and record it in the ledger (with ``made_from``, the fingerprints of the inputs it is built
    on); returns its summary. Runs in a Ray worker or in process."""
    started = time.perf_counter()
    context = TaskContext(root=Path(root), task_id=task.id, params=task.params,
                          input_ids={name: dep.id for name, dep in task.inputs.items()}, threads=threads,
                          options=task.options)
    forget(Path(root), task.id)
    with limit_threads(threads):
        summary = task.fn(context)
    record(Path(root), task, summary, time.perf_counter() - started, made_from)
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
        """A task counted as done at the start that has to run after all (an input was made again differently)."""
        self.done -= 1
        self.runs_done -= task.stage == "train"
        self.rerunning(task.id, why)

    def up_to_date(self, task: Task) -> None:
        """A task counted as to run at the start that turned out up to date (its new input made what it had
        been built on)."""
        self.done += 1
        self.runs_done += task.stage == "train"
        if self.enabled:
            self.say(f"[{self.done}/{self.total} tasks | runs {self.runs_done}/{self.runs_total}] "
                     f"{task.stage} {task.id} up to date")

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

    def submit(self, task: Task, made_from: dict[str, str] | None = None) -> int:
        handle, self._next = self._next, self._next + 1
        try:
            self._results[handle] = (execute(task, str(self.root), max(1, int(task.cpus)), made_from), None)
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
        expected, made_at_start = expected_state(root, tasks)
        stamp_older_entries(root, tasks, made_at_start)
        done = {task_id for task_id, why in expected.items() if why is None}
        report = Progress(tasks, done, progress)
        report.start(len(tasks) - len(done))
        for task_id, why in expected.items():
            if why not in (None, NEW, WAITING):
                report.rerunning(task_id, why)
        if len(done) < len(tasks):
            if backend == "local":
                runner = LocalBackend(root)
            else:
                from .ray_backend import RayBackend

                runner = RayBackend(root, address=address, max_parallel=max_parallel)
            with runner:
                _drive(tasks, root, runner, max_parallel or runner.capacity, report, done)
        return {task.id: ledger_entry(root, task.id)["summary"] for task in tasks}


NEW = "not run with these settings"
WAITING = "built on an input that has not run with its settings"


def expected_state(root: Path, tasks: list[Task]) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """Each task's state as the ledger and the files stand (None when up to date, else why it will run: ``NEW``,
    never run with its key; ``WAITING``, an input is new), and its fingerprint by the ledger (None where not
    known). A task run again is taken to make what it made before; the driver decides for good once a task's
    inputs are settled, and a task run again that makes something else has what was built on it run too."""
    made: dict[str, str | None] = {}
    state: dict[str, str | None] = {}
    for task in tasks:  # inputs first
        entry = recorded(root, task)
        made_from = {dep.id: made.get(dep.id) for dep in task.inputs.values()}
        if entry is None:
            state[task.id] = NEW
        elif None in made_from.values():
            state[task.id] = WAITING
        else:
            state[task.id] = out_of_date(root, task, entry, made_from)
        known = entry is not None and None not in made_from.values()
        made[task.id] = fingerprint(task, entry["summary"], made_from) if known else None
    return state, made


def stamp_older_entries(root: Path, tasks: list[Task], made: dict[str, str | None]) -> None:
    """Entries written before inputs were fingerprinted get the fingerprints their inputs have in the ledger now,
    before anything runs: from then on an input made again differently is seen, in this run or a later one."""
    for task in tasks:
        entry = recorded(root, task)
        made_from = {dep.id: made.get(dep.id) for dep in task.inputs.values()}
        if entry is not None and None not in made_from.values():
            stamp(root, entry, made_from)


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


def _dependents(tasks: list[Task]) -> dict[str, list[Task]]:
    """Each task's id -> the tasks that read its outputs."""
    dependents: dict[str, list[Task]] = {task.id: [] for task in tasks}
    for task in tasks:
        for dependency in task.inputs.values():
            dependents.setdefault(dependency.id, []).append(task)
    return dependents


def _drive(tasks: list[Task], root: Path, runner: Any, max_parallel: int, report: Progress,
           expected_done: set[str]) -> None:
    """Settle every task, inputs first: once a task's inputs are settled (run, or found up to date) and their
    fingerprints known, it is up to date (its ledger entry holds, its outputs are there, its inputs made what it
    was built on) or it runs, at most ``max_parallel`` at a time, the longest chain ahead first. A task never
    runs beside one of its inputs, and no task runs twice."""
    made: dict[str, str] = {}  # settled tasks: id -> fingerprint
    unsettled = list(tasks)  # inputs first
    queue: dict[str, tuple[Task, dict[str, str]]] = {}  # to run: id -> (task, the inputs' fingerprints)
    running: dict[Any, tuple[Task, dict[str, str], float]] = {}
    lengths = path_lengths(tasks)
    order = {task.id: i for i, task in enumerate(tasks)}
    while unsettled or queue or running:
        for task in list(unsettled):  # inputs first: a chain of up-to-date tasks settles in one pass
            if not all(dep.id in made for dep in task.inputs.values()):
                continue
            unsettled.remove(task)
            made_from = {dep.id: made[dep.id] for dep in task.inputs.values()}
            entry = recorded(root, task)
            why = NEW if entry is None else out_of_date(root, task, entry, made_from)
            if why is None:
                made[task.id] = fingerprint(task, entry["summary"], made_from)
                if task.id not in expected_done:
                    report.up_to_date(task)
                continue
            if task.id in expected_done:
                report.reopened(task, why)
            queue[task.id] = (task, made_from)
        # the longest chain ahead first; ties in graph order
        for task, made_from in sorted(queue.values(), key=lambda item: (-lengths[item[0].id], order[item[0].id])):
            if len(running) >= max_parallel:
                break
            del queue[task.id]
            running[runner.submit(task, made_from)] = (task, made_from, time.perf_counter())
        if not running:
            if unsettled:
                raise AtlasError(f"tasks wait on inputs that never finish: {', '.join(t.id for t in unsettled)}")
            continue
        for handle, summary, error in runner.wait(list(running)):
            task, made_from, started = running.pop(handle)
            if error is not None:
                raise _task_error(task, error)
            made[task.id] = fingerprint(task, summary, made_from)
            report.finished(task, time.perf_counter() - started, (t for t, _, _ in running.values()))


def _task_error(task: Task, error: BaseException) -> BaseException:
    if isinstance(error, AtlasError):
        return AtlasError(f"{task.stage} {task.id}: {error}")
    return error
