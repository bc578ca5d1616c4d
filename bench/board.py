"""The board: counters that parent and workers share through a memory-mapped file.

Progress that workers must see of each other (how many of a sender's messages each
recipient opened, what each sender sent, which phase it finished) goes through this
file instead of messages, so that counting costs no CPU the measurement needs. The
parent creates the file (`create`), zeroed, before it starts a room's workers.
"""

from __future__ import annotations

import mmap
from pathlib import Path


def board_path(workdir: Path, room: int) -> Path:
    return workdir / f"board{room}"


class Board:
    """Counters in a shared memory-mapped file, each written by one process only.

    `opened[r][s]`: messages of sender s that recipient r opened, since the start.
    `sent[s]`: end-to-end messages s has sent. `done[s]`: the last phase s finished.
    `replayed[s]`: envelopes s replayed through the broker, plus one (0 is "not yet").
    Aligned 8-byte stores are atomic on the machines this runs on, and each cell has
    one writer, so readers need no lock; they may only see a count a moment late.
    """

    def __init__(self, path: Path, room: int) -> None:
        self.room = room
        with path.open("r+b") as f:
            self._map = mmap.mmap(f.fileno(), self.size(room))
        self._cells = memoryview(self._map).cast("Q")

    @staticmethod
    def size(room: int) -> int:
        return 8 * (room * room + 3 * room)

    @classmethod
    def create(cls, path: Path, room: int) -> None:
        """Write the board of a room, every counter zero, for its workers to open."""
        path.write_bytes(bytes(cls.size(room)))

    def opened(self, recipient: int, sender: int) -> int:
        return self._cells[recipient * self.room + sender]

    def add_opened(self, recipient: int, sender: int) -> None:
        self._cells[recipient * self.room + sender] += 1

    def sent(self, sender: int) -> int:
        return self._cells[self.room * self.room + sender]

    def add_sent(self, sender: int) -> None:
        self._cells[self.room * self.room + sender] += 1

    def done(self, sender: int) -> int:
        return self._cells[self.room * self.room + self.room + sender]

    def set_done(self, sender: int, phase: int) -> None:
        self._cells[self.room * self.room + self.room + sender] = phase

    def set_replayed(self, sender: int, count: int) -> None:
        """Publish how many envelopes `sender` replayed (stored + 1: 0 is "not yet")."""
        self._cells[self.room * self.room + 2 * self.room + sender] = count + 1

    def replayed_to(self, recipient: int) -> int | None:
        """Replayed envelopes addressed to `recipient`, once every sender published."""
        base = self.room * self.room + 2 * self.room
        counts = [self._cells[base + s] for s in range(self.room) if s != recipient]
        return None if 0 in counts else sum(counts) - len(counts)

    def outstanding(self, sender: int) -> float:
        """Messages of `sender` not opened yet, on average over its recipients.

        The average, not the slowest recipient: with 50 processes on 2 cores any one
        of them may wait a whole scheduler round (tens of ms) for the CPU, and a
        closed loop gated on the slowest would measure the scheduler, not zchat.
        """
        others = [r for r in range(self.room) if r != sender]
        return self.sent(sender) - sum(self.opened(r, sender) for r in others) / len(others)

    def caught_up(self, recipient: int, phase: int) -> bool:
        """Every other sender finished `phase`, and `recipient` opened all they sent."""
        return all(
            self.done(s) >= phase and self.opened(recipient, s) >= self.sent(s)
            for s in range(self.room)
            if s != recipient
        )
