"""Real `zchat` processes for end-to-end tests: a broker and scripted JSON peers.

Output is read by threads into queues so every wait is a bounded `get(timeout=...)`.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

ZCHAT = [sys.executable, "-m", "zchat"]
FAST_TIMERS = {"ZCHAT_HEARTBEAT_INTERVAL": "0.1", "ZCHAT_HEARTBEAT_TIMEOUT": "0.6"}


def _pump(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))
    into.put(None)


class Proc:
    """A child process whose stdout (and stderr) lines arrive on queues."""

    def __init__(self, args: list[str], env: dict[str, str], stdin: bool = False) -> None:
        self.popen = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        self.out: queue.Queue[str | None] = queue.Queue()
        self.err: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        assert self.popen.stdout is not None
        assert self.popen.stderr is not None
        for stream, q in ((self.popen.stdout, self.out), (self.popen.stderr, self.err)):
            threading.Thread(target=_pump, args=(stream, q), daemon=True).start()

    def line(self, q: queue.Queue[str | None], match: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching line within {timeout} s")
            try:
                line = q.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("the process ended before the expected line")
            if q is self.err:
                self.stderr_lines.append(line)
            if match(line):
                return line

    def send(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text + "\n")
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.close()

    def wait(self, timeout: float = 10) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)


class Peer(Proc):
    """`zchat peer --json`: events are parsed JSON objects."""

    def __init__(self, args: list[str], env: dict[str, str], stdin: bool = False) -> None:
        super().__init__(args, env, stdin)
        #: every event read so far, matched or not
        self.history: list[dict[str, Any]] = []

    def event(self, match: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        def record(line: str) -> bool:
            parsed = json.loads(line)
            self.history.append(parsed)
            return match(parsed)

        self.line(self.out, record, timeout)
        return self.history[-1]

    def texts(self) -> list[str]:
        """The text of every message event read so far."""
        return [e["text"] for e in self.history if e["event"] == "message"]

    def wait_event(self, name: str, timeout: float = 10, **fields: Any) -> dict[str, Any]:
        return self.event(
            lambda e: e["event"] == name and all(e.get(k) == v for k, v in fields.items()),
            timeout,
        )


def start_broker(
    env: dict[str, str] | None = None, bind: str = "tcp://127.0.0.1:*"
) -> tuple[Proc, str]:
    broker = Proc([*ZCHAT, "broker", "--bind", bind], {**FAST_TIMERS, **(env or {})})
    line = broker.line(broker.err, lambda s: "listening on" in s, timeout=15)
    endpoint = re.search(r"listening on (\S+)", line)
    assert endpoint is not None
    return broker, endpoint.group(1)


def start_peer(
    nick: str,
    endpoint: str,
    home: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    admit_all: bool = True,
) -> Peer:
    """`zchat peer --json`, in an open room (`--admit-all`) unless `admit_all` is False:
    the tests of admission say so, the others test what happens once people read."""
    opened = ["--admit-all"] if admit_all else []
    return Peer(
        [*ZCHAT, "peer", "--nick", nick, "--connect", endpoint, "--json", *opened, *extra],
        {"ZCHAT_HOME": str(home), **(env or {})},
        stdin=True,
    )


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[None]:
    with all_stopped(list(procs)):
        yield


@contextlib.contextmanager
def all_stopped(procs: list[Proc]) -> Iterator[list[Proc]]:
    """Stop every process in `procs` on the way out, including those appended inside
    the block (a restarted broker), whether the block passes or fails."""
    try:
        yield procs
    finally:
        for proc in procs:
            proc.stop()
