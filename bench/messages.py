"""The benchmark's chat messages: a line of text that carries the instant it was due.

A recipient subtracts that instant from the one it opened the message at, on the
clock every process shares (`bench.clock`), and has the message's latency.
"""

from __future__ import annotations

#: The size of every benchmark message's text, in bytes: a line of chat.
PAYLOAD_BYTES = 100


def bench_text(sched_ns: int) -> str:
    """A message carrying the time it was due, padded to PAYLOAD_BYTES."""
    head = f"{sched_ns} "
    return head + "x" * (PAYLOAD_BYTES - len(head))


def due_time(text: str) -> int | None:
    head, _, _ = text.partition(" ")
    return int(head) if head.isdigit() else None
