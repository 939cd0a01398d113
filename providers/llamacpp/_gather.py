"""Gathers the requests that arrive together into one engine run, without a background task.

Each caller enqueues its job and waits for the model's lock. Whoever gets the lock first takes
every job queued by then (its own and those of all callers waiting behind it) and runs them in
one worker-thread call; the others find their job done when they get the lock. So all the
expansions of a depth, and the requests of concurrent problems, share one decode loop, and
requests arriving during a run form the next one. Only structured concurrency: a lock, a checkpoint
and ``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from providers.llamacpp._jobs import EvalJob, GenJob

__all__ = ("Gatherer",)

J = TypeVar("J", GenJob, EvalJob)


class Gatherer(Generic[J]):
    """Runs queued jobs in batches, in a worker thread, under ``lock``.

    Args:
        lock: The model's lock; every call into llama.cpp holds it.
        run: Runs a batch of jobs to completion (in the worker thread); marks each one done.
    """

    def __init__(self, lock: anyio.Lock, run: Callable[[list[J]], None]) -> None:
        self._lock = lock
        self._run: Callable[[list[J]], None] = run
        self._queue: list[J] = []

    async def submit(self, jobs: list[J]) -> None:
        """Queue ``jobs`` and return once they are all done (or raise on cancellation).

        A cancelled caller's jobs are marked cancelled at once: the engine drops their sequences
        at its next step. A caller cancelled while the thread call it started runs waits for that
        call to return (a C call cannot be interrupted), so that the other callers' results are
        delivered; its own jobs stop at the engine's next step.
        """
        self._queue.extend(jobs)
        try:
            # Let co-scheduled callers queue theirs too: yield until the queue stops growing.
            queued = -1
            while queued != len(self._queue):
                queued = len(self._queue)
                await anyio.lowlevel.checkpoint()
            async with self._lock:
                if all(job.done for job in jobs):
                    return
                batch, self._queue = self._queue, []
                await self._run_batch(batch, jobs)
        except BaseException:
            for job in jobs:
                job.cancelled = True
            self._queue = [job for job in self._queue if job not in jobs]
            raise

    async def _run_batch(self, batch: list[J], mine: list[J]) -> None:
        """Run ``batch`` in a worker thread; if the caller is cancelled meanwhile, flag its own
        jobs so the engine drops them, and wait for the thread before re-raising."""
        finished = False

        async def flag_on_cancel() -> None:
            try:
                await anyio.sleep_forever()
            finally:
                if not finished:  # the caller was cancelled, not the watcher by us below
                    for job in mine:
                        job.cancelled = True

        async with anyio.create_task_group() as tg:
            tg.start_soon(flag_on_cancel)
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._run, batch)
            finished = True
            tg.cancel_scope.cancel()
        if any(job.cancelled for job in mine):
            await anyio.lowlevel.checkpoint()  # deliver the caller's pending cancellation
