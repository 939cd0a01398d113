"""A server's decoding slots, shared by every request this process sends it.

llama-server decodes at most ``-np`` sequences at once, and a request for ``n`` choices becomes
``n`` tasks that start only when ``n`` slots are free together; a request that finds fewer is
deferred, and every freed slot goes to whichever task is next. Sent more than it has slots for,
it queues requests where the client cannot see them: their deadlines run out while they wait
(the eval over llama-server timed out at 300 s that way), and a request with a large ``n`` beside
a stream of small ones can wait indefinitely.

Where the probe learns how many slots a server has (llama-server's ``/props`` ``total_slots``),
:func:`register` keeps a :class:`ServerSlots` for its root URL, and every attempt on an endpoint
of that server, from any pool in the process (the provider's, the judge's), first takes as many
slots as it asks for choices, in arrival order, before its deadline starts. So the server is
never sent more than it can start at once, and no request waits behind later ones.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType

import anyio

__all__ = ("ServerSlots", "forget", "register", "slots_of")

_REGISTRY: dict[str, ServerSlots] = {}


class _Waiter:
    __slots__ = ("count", "event", "granted")

    def __init__(self, count: int) -> None:
        self.count = count
        self.event = anyio.Event()
        self.granted = False


class _Holding:
    """``async with slots.holding(k)``: take ``k`` slots for the block."""

    __slots__ = ("count", "slots")

    def __init__(self, slots: ServerSlots, count: int) -> None:
        self.slots, self.count = slots, count

    async def __aenter__(self) -> None:
        await self.slots.acquire(self.count)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.slots.release(self.count)


class ServerSlots:
    """``total`` slots, taken several at a time, first come first served.

    A request waits until the slots it asks for are free and every request that came before it
    has had its own, so a request for many slots is not passed over by a stream of small ones.
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"total must be >= 1, got {total}")
        self.total = total
        self.free = total
        """Slots not taken now."""
        self._waiters: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        """Requests waiting for slots."""
        return len(self._waiters)

    def holding(self, count: int) -> _Holding:
        """Hold ``count`` slots (at most :attr:`total`) for an ``async with`` block."""
        return _Holding(self, min(max(count, 1), self.total))

    async def acquire(self, count: int) -> None:
        """Take ``count`` slots (1 to :attr:`total`), waiting for them and for every earlier
        request."""
        if not 1 <= count <= self.total:
            raise ValueError(f"count must be in 1..{self.total}, got {count}")
        if not self._waiters and self.free >= count:
            self.free -= count
            return
        waiter = _Waiter(count)
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:  # granted, then cancelled before it could use them
                self.release(count)
            else:
                self._waiters.remove(waiter)
                self._grant()  # it may have held back smaller requests behind it
            raise

    def release(self, count: int) -> None:
        """Give back ``count`` slots and let the requests at the head of the queue have theirs."""
        self.free += count
        self._grant()

    def _grant(self) -> None:
        while self._waiters and self._waiters[0].count <= self.free:
            waiter = self._waiters.popleft()
            self.free -= waiter.count
            waiter.granted = True
            waiter.event.set()


def register(root_url: str, total: int) -> ServerSlots:
    """The slots of the server at ``root_url`` (its URL without ``/v1``), ``total`` of them;
    kept while the count stays the same, replaced when it changes."""
    key = root_url.rstrip("/")
    found = _REGISTRY.get(key)
    if found is None or found.total != total:
        found = _REGISTRY[key] = ServerSlots(total)
    return found


def forget(root_url: str) -> None:
    """Stop limiting requests to the server at ``root_url`` (a probe found no slot count)."""
    _REGISTRY.pop(root_url.rstrip("/"), None)


def slots_of(root_url: str) -> ServerSlots | None:
    """The registered slots of the server at ``root_url``, if any."""
    return _REGISTRY.get(root_url) if _REGISTRY else None
