"""One benchmark peer: a process driven by the parent, chatting through the peer library.

    python -m zchat.bench.worker CONTROL INDEX ROOM WORKDIR

The parent (`bench.fleet`) speaks to every worker over a DEALER socket on loopback, one
JSON object per message; each command is answered when it is done::

    worker -> {"ready": true}                       key loaded
    parent -> {"cmd": "bare", ...}                  <- Counts   (bare ZeroMQ fan-out)
    parent -> {"cmd": "join", "endpoint": ...}      <- {}       (everyone is in the room)
    parent -> {"cmd": "replay", ...}                <- Counts   (pre-sealed envelopes)
    parent -> {"cmd": "closed", ...}                <- Opened   (end to end, closed loop)
    parent -> {"cmd": "closed_timed", ...}          <- Opened + {"crypto": tally}  (the same,
                                                       each primitive timed: --time-crypto)
    parent -> {"cmd": "open", "rate": ...}          <- Opened   (end to end, fixed schedule)
    parent -> {"cmd": "quit"}                       <- {}       then BYE and exit

Times are `time.monotonic_ns()`, one clock for every process (`bench.clock`).
Progress shared between workers goes through a small memory-mapped file instead of
messages, so that counting costs no CPU the measurement needs (`bench.board`).
The bare fan-out is `bench.bare`'s, the replay `bench.replay`'s; the end-to-end
phases, which open every message, are here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from zchat.bench.bare import connect_bare_peer, run_bare_peer
from zchat.bench.board import Board, board_path
from zchat.bench.clock import asleep_until
from zchat.bench.crypto_in_place import timed_primitives
from zchat.bench.keys import key_path, read_key
from zchat.bench.messages import bench_text, due_time
from zchat.bench.replay import BenchCore, replay
from zchat.bench.results import Opened
from zchat.envelope import DEFAULT_ROOM, Envelope, Recipient, room_id, seal
from zchat.peer import events as ev
from zchat.peer.client import Client, initial_seq
from zchat.peer.config import PeerConfig
from zchat.wire import protocol as p

#: A worker whose parent is gone, or that has lived this long, exits on its own.
MAX_LIFETIME_S = 600.0


def nick_for(room: int, index: int) -> str:
    return f"r{room}p{index:02d}"


class Worker:
    """One seat in the room: answers the parent's commands, one at a time, until told to quit."""

    def __init__(self, control: str, index: int, room: int, workdir: Path) -> None:
        self.index = index
        self.room = room
        self.workdir = workdir
        self.nick = nick_for(room, index)
        self.nicks = {nick_for(room, i): i for i in range(room)}
        self.identity = read_key(key_path(workdir, index))
        self.board = Board(board_path(workdir, room), room)
        self.ctx = zmq.asyncio.Context()
        self.control: zmq.asyncio.Socket = self.ctx.socket(zmq.DEALER)
        self.control.setsockopt(zmq.LINGER, 1000)
        self.control.setsockopt(zmq.IDENTITY, f"r{room}w{index}".encode())
        self.control.connect(control)
        self.client: Client | None = None
        self.core: BenchCore | None = None
        self.consumer: asyncio.Task[None] | None = None
        self.recorder: _Recorder | None = None
        self.problems: list[str] = []
        self.wake = asyncio.Event()
        self.phase = 0

    async def serve(self) -> None:
        await self.control.send_json({"ready": True})
        parent = os.getppid()
        deadline = time.monotonic() + MAX_LIFETIME_S
        while time.monotonic() < deadline and os.getppid() == parent:
            if not await self.control.poll(1000):
                continue
            cmd: dict[str, Any] = await self.control.recv_json()
            name = cmd["cmd"]
            if name == "quit":
                await self.control.send_json({})
                break
            try:
                reply = await getattr(self, f"cmd_{name}")(cmd)
            except Exception as exc:
                # Reported to the parent, which stops the run and shows it.
                await self.control.send_json({"error": f"{self.nick}: {exc!r}"})
                break
            await self.control.send_json(reply)
        await self.shutdown()

    async def shutdown(self) -> None:
        if self.consumer is not None:
            self.consumer.cancel()
        if self.client is not None:
            await self.client.close(max_idle=1.0)
        self.control.close(linger=1000)

    # --- phases ----------------------------------------------------------------------

    async def cmd_bare(self, cmd: dict[str, Any]) -> dict[str, Any]:
        frames = p.encode(p.Send(self._seal_for_sizes()))
        sock = connect_bare_peer(cmd["endpoint"], f"b{self.index}".encode(), 30.0)
        await self.control.send_json({"connected": True})
        go: dict[str, Any] = await self.control.recv_json()
        try:
            counts = run_bare_peer(
                sock,
                frames,
                start_ns=go["start_ns"],
                measure_ns=go["measure_ns"],
                end_ns=go["end_ns"],
                window=go["window"],
                drain_s=go["drain_s"],
            )
        finally:
            sock.close(linger=0)
        return asdict(counts)

    async def cmd_join(self, cmd: dict[str, Any]) -> dict[str, Any]:
        # Heartbeats stay at the broker's pace; a generous timeout keeps a peer starved
        # of CPU by its 49 neighbours from being taken for dead.
        # An open room: the benchmark measures messages, not admissions.
        config = PeerConfig(heartbeat_timeout=60.0, admit_all=True)
        self.core = BenchCore(
            self.nick,
            self.identity,
            config=config,
            seq=initial_seq(time.time()),
            random=os.urandom,
        )
        self.client = Client(self.core, cmd["endpoint"])
        self.client.start()
        deadline = time.monotonic() + cmd["timeout"]
        while len(self.core.members) < self.room - 1:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.nick}: only {len(self.core.members)} others joined")
            event = await self.client.next_event(left)
            if isinstance(event, ev.Refused | ev.Disconnected | ev.Problem):
                raise RuntimeError(f"{self.nick}: {event}")  # noqa: TRY004
        self.consumer = asyncio.create_task(self._consume())
        return {}

    async def cmd_replay(self, cmd: dict[str, Any]) -> dict[str, Any]:
        client, core = self._joined()
        return asdict(await replay(client, core, self.identity, self.board, self.index, cmd))

    async def cmd_closed(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """As fast as the recipients open: at most `window` of ours unopened at once."""
        client, _ = self._start_e2e(cmd)
        window, end_ns = cmd["window"], cmd["end_ns"]
        await asleep_until(cmd["start_ns"])
        sent = 0
        while time.monotonic_ns() < end_ns and sent < cmd["max_messages"]:
            if self.board.outstanding(self.index) < window:
                client.send_text(bench_text(time.monotonic_ns()))
                self.board.add_sent(self.index)
                sent += 1
                await asyncio.sleep(0)  # let the socket loop run between seals
                continue
            # Others open our messages in their own processes: look at the board when
            # we open one of theirs, and at least every few milliseconds.
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 0.02)
        return await self._finish_e2e(cmd, sent)

    async def cmd_closed_timed(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """`cmd_closed` with each primitive timed (`bench.crypto_in_place`)."""
        with timed_primitives() as tally:
            reply = await self.cmd_closed(cmd)
        return {**reply, "crypto": tally}

    async def cmd_open(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """A fixed schedule, whatever happens: the latency of a late send counts too."""
        client, _ = self._start_e2e(cmd)
        period_ns = int(1e9 / cmd["rate"])
        first_ns = cmd["start_ns"] + period_ns * self.index // self.room
        end_ns = cmd["end_ns"]
        sent = 0
        while sent < cmd["max_messages"]:
            due = first_ns + sent * period_ns
            if due >= end_ns:
                break
            await asleep_until(due)
            client.send_text(bench_text(due))
            self.board.add_sent(self.index)
            sent += 1
        return await self._finish_e2e(cmd, sent)

    # --- helpers ---------------------------------------------------------------------

    def _joined(self) -> tuple[Client, BenchCore]:
        if self.client is None or self.core is None:
            raise RuntimeError("join first")
        return self.client, self.core

    def _start_e2e(self, cmd: dict[str, Any]) -> tuple[Client, BenchCore]:
        client, core = self._joined()
        core.tap = None
        self.phase += 1
        self.problems.clear()
        self.recorder = _Recorder(cmd["measure_ns"], cmd["end_ns"], by_due=cmd["cmd"] == "open")
        return client, core

    async def _finish_e2e(self, cmd: dict[str, Any], sent: int) -> dict[str, Any]:
        self.board.set_done(self.index, self.phase)
        drain_until = time.monotonic_ns() + int(cmd["drain_s"] * 1e9)
        while time.monotonic_ns() < drain_until:
            if self.board.caught_up(self.index, self.phase):
                break
            await asyncio.sleep(0.01)
        rec = self.recorder
        assert rec is not None
        self.recorder = None
        return asdict(Opened(sent, rec.opened, rec.latencies_us, self.problems[:5]))

    async def _consume(self) -> None:
        """Every event of the session: count what we opened, and when."""
        assert self.client is not None
        while True:
            event = await self.client.events.get()
            if isinstance(event, ev.MessageReceived):
                now = time.monotonic_ns()
                sender = self.nicks.get(event.sender)
                due = due_time(event.text)
                if sender is None or due is None:
                    continue
                self.board.add_opened(self.index, sender)
                if self.recorder is not None:
                    self.recorder.add(now, due)
                self.wake.set()
            elif isinstance(event, ev.Problem | ev.Disconnected | ev.Undelivered):
                self.problems.append(str(event))

    def _seal_for_sizes(self) -> Envelope:
        """An envelope with the frame sizes of a real one in this room.

        Before joining we know no other key, so every key is wrapped to our own: the
        same sizes, which is all the bare fan-out looks at.
        """
        others = [n for n in self.nicks if n != self.nick]
        recipients = [Recipient(n, self.identity.public_key) for n in others]
        return seal(
            bench_text(0).encode(),
            sender=self.identity,
            sender_nick=self.nick,
            room_id=room_id(DEFAULT_ROOM),
            recipients=recipients,
            seq=1,
        )


class _Recorder:
    """Opens in one end-to-end phase: counted by open time, or by due time (latency)."""

    def __init__(self, measure_ns: int, end_ns: int, *, by_due: bool) -> None:
        self.measure_ns = measure_ns
        self.end_ns = end_ns
        self.by_due = by_due
        self.opened = 0
        self.latencies_us: list[int] = []

    def add(self, now: int, due: int) -> None:
        if self.by_due:
            if self.measure_ns <= due < self.end_ns:
                self.latencies_us.append((now - due) // 1000)
        elif self.measure_ns <= now < self.end_ns:
            self.opened += 1


def main(argv: list[str]) -> int:
    control, index, room, workdir = argv
    # Ctrl-C reaches the whole process group; the parent decides what happens to us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def serve() -> None:
        # Built inside the loop: its asyncio sockets and events belong to this loop.
        await Worker(control, int(index), int(room), Path(workdir)).serve()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
