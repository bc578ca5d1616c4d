"""The cryptography as it runs inside a peer, not in a hot loop.

The ceiling (`bench.crypto`) times each primitive on its own, the fastest of several
batches: the best the machine can do. A peer calls them between everything else it
does, in a process that shares the cores with the others, so its code and tables are
colder. `timed_primitives` puts the thread's CPU clock around each primitive a message
costs (the same six `crypto_seconds_per_message` counts), for one phase, in a worker;
`in_place` turns what the workers counted into `CryptoTimings` the ceiling's formula
takes. CPU time, where the ceiling's best batches are wall time: a peer preempted in
the middle of an unwrap must not be charged for the other processes' turns. The clock
is a system call: about 2 us a primitive, which is why
`zchat bench --time-crypto` runs it in a closed loop of its own, after the one whose
rate counts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Final

from zchat.bench.results import CryptoTimings
from zchat.envelope import _primitives as prim

#: The primitives `crypto_seconds_per_message` counts; `envelope.sealing` calls each
#: through the module, so replacing the module's attribute times every call.
PRIMITIVES: Final = ("sign", "verify", "wrap", "unwrap", "encrypt", "decrypt")

#: Per primitive: [calls, CPU seconds].
Tally = dict[str, list[float]]


@contextmanager
def timed_primitives() -> Iterator[Tally]:
    """Count the calls of each primitive and the thread CPU time they take, until exit."""
    tally: Tally = {name: [0, 0.0] for name in PRIMITIVES}
    originals = {name: getattr(prim, name) for name in PRIMITIVES}
    for name, fn in originals.items():
        setattr(prim, name, _timed(fn, tally[name]))
    try:
        yield tally
    finally:
        for name, fn in originals.items():
            setattr(prim, name, fn)


def _timed(fn: Callable[..., object], counts: list[float]) -> Callable[..., object]:
    clock = time.thread_time

    def timed(*args: object, **kwargs: object) -> object:
        start = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            counts[0] += 1
            counts[1] += clock() - start

    return timed


def in_place(tallies: Iterable[Mapping[str, list[float]]]) -> CryptoTimings | None:
    """Seconds per call of each primitive over every worker's tally; None if one of
    them was never called (a phase too short to seal or open anything)."""
    calls = dict.fromkeys(PRIMITIVES, 0.0)
    seconds = dict.fromkeys(PRIMITIVES, 0.0)
    for tally in tallies:
        for name in PRIMITIVES:
            calls[name] += tally[name][0]
            seconds[name] += tally[name][1]
    if not all(calls.values()):
        return None
    return CryptoTimings(**{name: seconds[name] / calls[name] for name in PRIMITIVES})
