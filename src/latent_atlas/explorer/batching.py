"""Where the explorer's model work runs: one worker thread, fed by adaptive batches.

``ModelThread`` runs every model and oracle call on one thread whose torch intra-op thread count is set in
that thread: torch keeps the setting per thread, so a fresh worker thread would otherwise use every core,
and on a busy 2-core machine its spinning OpenMP threads make each call tens of times slower.

``Batcher`` lets concurrent decode requests share one model call and one oracle fit. Decoding and, above
all, the oracle's vectorised fit cost much less per image in a batch than one at a time (a batch of 8 costs
about twice a batch of 1), and the event loop keeps parsing and answering requests on the other core
meanwhile. Requests that arrive while a batch is being computed queue up and go together in the next one.
Before starting a batch the batcher also waits, briefly (``max_wait``), for the clients it has just
answered (each request names its source, the client's connection): clients that send their next request
as soon as they get an answer come back a little apart, and without the wait the first one back would be
computed alone and the rest in a second batch, paying the fixed cost of a batch twice. A source it has not
answered within ``recent`` seconds is not waited for, so a lone client, or an idle server, adds no waiting.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import numpy as np
import torch


class ModelThread:
    """A single worker thread (started on first use) with ``torch_threads`` intra-op threads."""

    def __init__(self, torch_threads: int):
        self.torch_threads = torch_threads
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="latent-atlas-model",
                                                initializer=torch.set_num_threads, initargs=(self.torch_threads,))
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(function, *args))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


class Rows(Protocol):
    def rows(self, start: int, stop: int) -> Rows: ...


R = TypeVar("R", bound=Rows)


class Pending(NamedTuple):
    """A caller's rows (n, D), the future its answer goes to, and its source (None: anonymous)."""

    rows: np.ndarray
    future: asyncio.Future
    source: Hashable


class Batcher(Generic[R]):
    """Serves ``work((n, D) array) -> R`` to many callers, each getting ``result.rows`` of its own rows."""

    def __init__(self, work: Callable[[np.ndarray], R], max_rows: int, thread: ModelThread, *,
                 max_wait: float = 0.004, recent: float = 0.1):
        self.work = work
        self.max_rows = max_rows
        self.thread = thread
        self.max_wait = max_wait  # seconds a batch may wait for recently answered sources
        self.recent = recent  # seconds after its answer that a source is expected back
        self._queue: list[Pending] = []
        self._answered: dict[Hashable, float] = {}  # source -> event-loop time of its last answer
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, rows: np.ndarray, source: Hashable = None) -> R:
        """``rows`` (n, D) computed in a batch with other callers' rows; ``source`` names the caller (None: anonymous,
        never waited for)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (a test client restarted): start afresh
            self._queue, self._answered, self._task, self._loop = [], {}, None, loop
            self._arrived = asyncio.Event()
        future: asyncio.Future = loop.create_future()
        self._queue.append(Pending(rows, future, source))
        self._arrived.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await future

    def _expected(self, now: float) -> set[Hashable]:
        """Sources answered within ``recent`` seconds that have no request queued yet."""
        self._answered = {source: t for source, t in self._answered.items() if now - t < self.recent}
        return set(self._answered) - {pending.source for pending in self._queue}

    async def _gather(self) -> None:
        """Wait up to ``max_wait`` for the recently answered sources to queue their next requests."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while self._expected(loop.time()) and sum(len(p.rows) for p in self._queue) < self.max_rows:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    def _take(self) -> list[Pending]:
        """The oldest waiting requests, as many as fit in ``max_rows`` (always at least one)."""
        count, total = 0, 0
        for rows, _, _ in self._queue:
            if count and total + len(rows) > self.max_rows:
                break
            count, total = count + 1, total + len(rows)
        taken, self._queue = self._queue[:count], self._queue[count:]
        return [pending for pending in taken if not pending.future.done()]

    async def _drain(self) -> None:
        batch: list[Pending] = []
        try:
            while self._queue:
                await self._gather()
                batch = self._take()
                if batch:
                    await self._serve(batch)
        except BaseException as exc:  # whatever stops the drain, no caller is left waiting for an answer
            stranded, self._queue = batch + self._queue, []
            for pending in stranded:  # answered ones are skipped by _settle
                _settle(pending.future, exception=RuntimeError(f"the batch could not be served ({exc!r})"))
            raise

    async def _serve(self, batch: list[Pending]) -> None:
        try:
            result = await self.thread.run(self.work, np.concatenate([pending.rows for pending in batch]))
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0].future, exception=exc)
            else:  # one bad request must not fail the others: serve them one by one
                for item in batch:
                    await self._serve([item])
            return
        start, now = 0, asyncio.get_running_loop().time()
        for rows, future, source in batch:
            try:
                _settle(future, result=result.rows(start, start + len(rows)))
            except Exception as exc:  # a result that cannot be split still answers every caller
                _settle(future, exception=exc)
            start += len(rows)
            if source is not None:
                self._answered[source] = now


def _settle(future: asyncio.Future, result: object = None, exception: BaseException | None = None) -> None:
    """Deliver to a caller that is still waiting (one that gave up has a cancelled future)."""
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
