"""Where the explorer's model work runs: one worker thread, fed by adaptive batches.

``ModelThread`` runs every model and oracle call on one thread whose torch intra-op thread count is set in
that thread: torch keeps the setting per thread, so a fresh worker thread would otherwise use every core,
and on a busy 2-core machine its spinning OpenMP threads make each call tens of times slower.

``Batcher`` lets concurrent decode requests share one model call and one oracle fit. A request that finds
the batcher idle is computed at once, so an idle server adds no waiting; requests that arrive while a
batch is being computed queue up and go together in the next one. Decoding and, above all, the oracle's
vectorised fit cost much less per image in a batch than one at a time, and the event loop keeps parsing
and answering requests on the other core meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, Protocol, TypeVar

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


class Batcher(Generic[R]):
    """Serves ``work((n, D) array) -> R`` to many callers, each getting ``result.rows`` of its own rows."""

    def __init__(self, work: Callable[[np.ndarray], R], max_rows: int, thread: ModelThread):
        self.work = work
        self.max_rows = max_rows
        self.thread = thread
        self._queue: list[tuple[np.ndarray, asyncio.Future]] = []
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, rows: np.ndarray) -> R:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (a test client restarted): start afresh
            self._queue, self._task, self._loop = [], None, loop
        future: asyncio.Future = loop.create_future()
        self._queue.append((rows, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        """The oldest waiting requests, as many as fit in ``max_rows`` (always at least one)."""
        count, total = 0, 0
        for rows, _ in self._queue:
            if count and total + len(rows) > self.max_rows:
                break
            count, total = count + 1, total + len(rows)
        taken, self._queue = self._queue[:count], self._queue[count:]
        return [(rows, future) for rows, future in taken if not future.done()]

    async def _drain(self) -> None:
        while self._queue:
            batch = self._take()
            if batch:
                await self._serve(batch)

    async def _serve(self, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        try:
            result = await self.thread.run(self.work, np.concatenate([rows for rows, _ in batch]))
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exception=exc)
            else:  # one bad request must not fail the others: serve them one by one
                for item in batch:
                    await self._serve([item])
            return
        start = 0
        for rows, future in batch:
            _settle(future, result=result.rows(start, start + len(rows)))
            start += len(rows)


def _settle(future: asyncio.Future, result: object = None, exception: BaseException | None = None) -> None:
    """Deliver to a caller that is still waiting (one that gave up has a cancelled future)."""
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
