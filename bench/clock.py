"""The one clock of a run: `time.monotonic_ns()`, in the parent and in every worker.

CLOCK_MONOTONIC is one clock for every process on a Linux machine, so the parent can
name the instant a phase starts and every worker starts it then, and a send time
stamped in one worker can be subtracted from an open time stamped in another.
"""

from __future__ import annotations

import asyncio
import time


def sleep_until(deadline_ns: int) -> None:
    """Sleep until `deadline_ns` on the `time.monotonic_ns` clock; return at once if past."""
    delay = (deadline_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        time.sleep(delay)


async def asleep_until(deadline_ns: int) -> None:
    """`sleep_until`, for asyncio: the loop runs meanwhile."""
    delay = (deadline_ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)
