"""Seeds that are the same in every process.

``hash()`` of a ``str`` is salted per process (``PYTHONHASHSEED``), so a seed derived from it
changes between runs; :func:`stable_seed` derives one from a CRC-32 of the parts instead.
"""

from __future__ import annotations

import zlib

__all__ = ("stable_seed",)


def stable_seed(*parts: object) -> int:
    """A seed in ``[0, 2**32)`` that depends only on ``parts`` (their ``str()``, in order).

    Example::

        rng = random.Random(stable_seed(seed, request.problem, index))
    """
    return zlib.crc32("\x1f".join(map(str, parts)).encode())
