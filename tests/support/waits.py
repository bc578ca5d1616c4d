"""The one bounded wait: poll a condition until it holds, or fail the test saying what
did not happen. Every wait in the tests is bounded; none sleeps longer than a poll."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

#: How long a test waits for what must come. Passing runs never wait this long; on a
#: shared 2-core machine a slow moment must not read as a failure.
WAIT = 10.0
#: How often a condition is polled: short enough not to slow a test down.
POLL = 0.01


async def until(
    condition: Callable[[], bool], timeout: float = WAIT, what: str = "the condition"
) -> None:
    """Poll `condition` every `POLL` seconds until it holds; the event loop (clients,
    terminal UIs) runs meanwhile. Fails with `what` after `timeout` seconds.

    For state no event marks (a member back with the key we knew is not news).
    """
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not so within {timeout} s"
        await asyncio.sleep(POLL)
