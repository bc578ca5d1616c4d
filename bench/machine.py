"""The machine a run measures: what it is, and how busy its CPUs were during a phase.

`machine_info` goes into the results, so that figures are read with the machine they
come from. `CpuWatch` tells a slow zchat from a busy machine: the CPU time of the
benchmark's own processes against that of every core.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import cryptography
import zmq

from zchat.bench.clock import sleep_until


def machine_info() -> dict[str, Any]:
    return {
        "cores": cores(),
        "cpu": platform.processor() or platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "cryptography": cryptography.__version__,
    }


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class CpuWatch:
    """CPU time of some processes, and of the whole machine, between two instants.

    Read from /proc (Linux; zero elsewhere) by the parent, which is idle during a
    phase and so wakes on time, unlike the busy processes it watches.
    """

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.processes_s = 0.0
        self.kernel_s = 0.0
        self.machine_s = 0.0

    def between(self, start_ns: int, end_ns: int) -> None:
        sleep_until(start_ns)
        (user, kernel), machine = self._processes(), self._machine()
        sleep_until(end_ns)
        user_end, kernel_end = self._processes()
        self.kernel_s = kernel_end - kernel
        self.processes_s = user_end - user + self.kernel_s
        self.machine_s = self._machine() - machine

    def _processes(self) -> tuple[float, float]:
        return cpu_seconds(self.pids)

    @staticmethod
    def _machine() -> float:
        """Busy CPU seconds of all cores since boot: everything but idle and iowait."""
        try:
            with open("/proc/stat") as f:
                ticks = [int(v) for v in f.readline().split()[1:]]
        except OSError:
            return 0.0
        busy = sum(ticks[:8]) - ticks[3] - ticks[4]
        return busy / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(user, kernel) CPU seconds of processes `pids` so far (a process gone counts 0)."""
    user = kernel = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])  # utime
        kernel += int(fields[12])  # stime
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, kernel / tick


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid` now (Linux; zero elsewhere or once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0
