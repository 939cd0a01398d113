"""Lets concurrent callers share one engine's continuous decode loop, without a background task.

Each caller queues its jobs in the engine (:meth:`~providers.llamacpp._engine.Engine.submit`)
and then, until they are done, both waits to be woken and waits for the model's lock. Whoever
holds the lock *drives*: it runs :meth:`~providers.llamacpp._engine.Engine.advance` in a worker
thread, which decodes until some job ends (anyone's), wakes the callers whose jobs are all done,
and releases the lock, so the next waiter (of this engine or of another context on the same
model) takes its turn. New jobs join the running loop at its next step; no caller waits for
another's run to finish. Only structured concurrency: a lock, events, a task group and
``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.lowlevel
import anyio.to_thread

from providers.llamacpp._engine import Engine
from providers.llamacpp._jobs import Job

__all__ = ("Batcher",)


class _Waiter:
    """One caller's jobs and the event set once they are all done."""

    __slots__ = ("event", "jobs")

    def __init__(self, jobs: Sequence[Job]) -> None:
        self.jobs = jobs
        self.event = anyio.Event()

    def done(self) -> bool:
        return all(job.done for job in self.jobs)


class Batcher:
    """Submits jobs to ``engine`` and drives its loop in turns, under ``lock``.

    Args:
        engine: The engine whose decode loop the jobs join.
        lock: The model's lock; every call into llama.cpp holds it.
    """

    def __init__(self, engine: Engine, lock: anyio.Lock) -> None:
        self.engine = engine
        self._lock = lock

    async def submit(self, jobs: Sequence[Job]) -> None:
        """Queue ``jobs`` and return once they are all done (or raise on cancellation).

        A cancelled caller's jobs are marked cancelled at once: the engine drops their sequences
        at its next step. A caller cancelled while it drives waits for the worker thread's
        current call to return (a C call cannot be interrupted); that call returns at the next
        step, when the cancelled jobs end.
        """
        waiter = _Waiter(jobs)
        for job in jobs:
            job.waiter = waiter
        self.engine.submit(jobs)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._drive, waiter)
            try:
                await waiter.event.wait()
            finally:
                if not waiter.done():  # cancelled: let the engine drop the jobs
                    for job in jobs:
                        job.cancelled = True
            tg.cancel_scope.cancel()

    async def _drive(self, waiter: _Waiter) -> None:
        """Take turns driving the loop until ``waiter``'s jobs are done."""
        # Let co-scheduled callers queue theirs too: yield until the queue stops growing.
        queued = -1
        while queued != len(self.engine.inbox):
            queued = len(self.engine.inbox)
            await anyio.lowlevel.checkpoint()
        while not waiter.done():
            async with self._lock:
                if waiter.done():
                    break
                with anyio.CancelScope(shield=True):
                    ended = await anyio.to_thread.run_sync(self.engine.advance)
                self._wake(ended)
                if not ended and not self.engine.busy:  # cannot happen; never hang on it
                    for job in waiter.jobs:
                        if not job.done:
                            job.error = RuntimeError("the llama.cpp engine lost this job")
                            job.done = True
        waiter.event.set()

    @staticmethod
    def _wake(ended: list[Job]) -> None:
        """Wake the callers (of any batcher on the engine) whose jobs are now all done."""
        for job in ended:
            waiter = job.waiter
            if isinstance(waiter, _Waiter) and waiter.done():
                waiter.event.set()
