"""The replay phase: broker routing measured with envelopes sealed before the clock.

Every worker replays a few envelopes it sealed itself (the broker checks the sender)
as fast as the broker acknowledges them, with a window in flight; the broker does not
look at message ids or sequence numbers, so the same envelopes can go again and again.
Recipients count the deliveries and drop them unopened (`Tap`): the measurement is
the broker's, and the recipients must not spend the CPU it needs on signatures.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from zchat.bench.board import Board
from zchat.bench.clock import asleep_until
from zchat.bench.messages import bench_text
from zchat.bench.results import Counts
from zchat.envelope import Identity, seal
from zchat.peer.client import Client
from zchat.peer.core import PeerCore
from zchat.wire import protocol as p

#: How many envelopes each worker seals for the replay, used in turn.
SEALED = 4

_DELIVER = bytes([p.Command.DELIVER])
_ACK = bytes([p.Command.ACK])


class Tap:
    """Counts DELIVER and ACK frames before the core parses them (the replay phase).

    Replay measures the broker, so recipients must not spend the CPU it needs on
    signatures: deliveries are counted and dropped. While a tap is installed every
    delivery is dropped, also the stragglers after the measuring window.
    """

    def __init__(self, measure_ns: int, end_ns: int, on_ack: Callable[[], None]) -> None:
        self.measure_ns = measure_ns
        self.end_ns = end_ns
        self.on_ack = on_ack
        self.acked = 0
        self.deliveries = 0
        self.received = 0
        self.wire_bytes = 0

    def take(self, frames: list[bytes]) -> bool:
        command = frames[1]
        if command == _DELIVER:
            now = time.monotonic_ns()
            self.received += 1
            self.wire_bytes += sum(len(f) for f in frames)
            if self.measure_ns <= now < self.end_ns:
                self.deliveries += 1
            return True
        if command == _ACK:
            self.acked += 1
            self.on_ack()
            return True
        return False


class BenchCore(PeerCore):
    """The peer core, with a tap in front of it for the replay phase."""

    tap: Tap | None = None

    def receive_many(self, batch: Iterable[list[bytes]], now: float) -> None:
        tap = self.tap
        if tap is not None:
            batch = [frames for frames in batch if len(frames) < 2 or not tap.take(frames)]
        super().receive_many(batch, now)


async def replay(
    client: Client,
    core: BenchCore,
    identity: Identity,
    board: Board,
    index: int,
    cmd: dict[str, Any],
) -> Counts:
    """Replay until `cmd["end_ns"]`, then wait until everything sent to us came in."""
    # Wrapped to each member's session key, as the core seals (the tap drops them unopened).
    recipients = [m.session.recipient(m.nick) for m in core.members.values() if m.session]
    payload = bench_text(0).encode()
    sealed = [
        seal(
            payload,
            sender=identity,
            sender_nick=core.nick,
            room_id=core.room_id,
            recipients=recipients,
            seq=core.seq + k,
        )
        for k in range(SEALED)
    ]
    end_ns, cap = cmd["end_ns"], cmd["max_messages"]
    sent = 0

    def refill(*, flush: bool = False) -> None:
        # Called by the tap for each acknowledgement, while the client reads its
        # input: the client flushes once that batch is read.
        nonlocal sent
        if sent < cap and time.monotonic_ns() < end_ns:
            client.send_envelope(sealed[sent % len(sealed)], flush=flush)
            sent += 1

    tap = Tap(cmd["measure_ns"], end_ns, refill)
    core.tap = tap  # stays until the next phase: stragglers are dropped too
    await asleep_until(cmd["start_ns"])
    for _ in range(cmd["window"]):
        refill(flush=True)
    await asleep_until(end_ns)
    board.set_replayed(index, sent)  # refill sends nothing after end_ns
    # Every envelope replayed to us must have come in before the next phase: left
    # in the socket, the end-to-end phase would spend its CPU rejecting them.
    drain_until = time.monotonic_ns() + int(cmd["drain_s"] * 1e9)
    while time.monotonic_ns() < drain_until:
        expected = board.replayed_to(index)
        if tap.acked >= sent and expected is not None and tap.received >= expected:
            break
        await asyncio.sleep(0.02)
    return Counts(sent, tap.acked, tap.deliveries, tap.received, tap.wire_bytes)
