"""The swarm's results for people (a table against issue 21's targets) and programs (JSON)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from zchat.bench.swarm_results import BusyResult, SwarmResults

#: Issue 21's targets. Rows whose sizes differ from the issue's (a --quick run) are
#: still shown against them, marked by the sizes in the workload column.
IDLE_CPU_PCT = 5.0
IDLE_RSS_MB = 200.0
STORM_S = 10.0
BUSY_CPU_PCT = 20.0
BUSY_P99_MS = 50.0
BIG_P99_MS = 100.0
BYTES_RATIO = 2.0


def to_json(results: SwarmResults) -> dict[str, Any]:
    return {
        "storm": None if results.storm is None else asdict(results.storm),
        "idle": None if results.idle is None else asdict(results.idle),
        "busy": [asdict(b) for b in results.busy],
        "bytes_per_delivery_ratio": bytes_ratio(results),
        "machine": results.machine,
        "keys": results.keys,
        "notes": results.notes,
        "settings": asdict(results.settings),
    }


def write_json(results: SwarmResults, path: Path) -> None:
    path.write_text(json.dumps(to_json(results), indent=2) + "\n")


def bytes_ratio(results: SwarmResults) -> float | None:
    """Wire bytes per delivery in the largest room over those in the smallest."""
    measured = [b for b in results.busy if b.received]
    if len(measured) < 2:
        return None
    large = max(measured, key=lambda b: b.room_size)
    small = min(measured, key=lambda b: b.room_size)
    if large.room_size == small.room_size:
        return None
    return round(large.wire_bytes_per_delivery / small.wire_bytes_per_delivery, 2)


def show(results: SwarmResults, console: Console) -> None:
    table = Table(title="zchat bench --swarm", title_justify="left")
    for name in ("workload", "measured", "target", ""):
        table.add_column(name)
    storm, idle = results.storm, results.idle
    if idle is not None:
        table.add_row(
            f"{idle.members} idle members in one room",
            f"broker {idle.broker_cpu_pct:.1f}% of a core, RSS {idle.broker_rss_mb:.0f} MB"
            + (f", {idle.evicted} evicted" if idle.evicted else ""),
            f"< {IDLE_CPU_PCT:g}%, < {IDLE_RSS_MB:g} MB",
            _verdict(
                idle.broker_cpu_pct < IDLE_CPU_PCT
                and idle.broker_rss_mb < IDLE_RSS_MB
                and not idle.evicted
            ),
        )
    if storm is not None:
        refused = sum(storm.refused.values())
        table.add_row(
            f"{storm.members} joining at once",
            f"{storm.welcomed} welcomed in {storm.welcome_s:.1f} s, "
            + (
                f"all known in {storm.settled_s:.1f} s"
                if storm.settled == storm.members
                else f"{storm.settled} knew all"
            )
            + f"; {storm.evicted} evicted"
            + (f", {storm.rehellos} handshakes forgotten" if storm.rehellos else "")
            + (f", {refused} refused {storm.refused}" if refused else "")
            + f"; {storm.bytes / 2**20:.1f} MB ({storm.bytes_per_member / 1024:.0f} KiB/member)"
            + f"; CPU s: broker {storm.broker_cpu_s:g}, swarm {storm.swarm_cpu_s:g}",
            f"all in < {STORM_S:g} s, 0 evicted",
            _verdict(
                storm.welcomed == storm.members and storm.welcome_s < STORM_S and storm.evicted == 0
            ),
        )
    for b in results.busy:
        table.add_row(*_busy_row(b))
    ratio = bytes_ratio(results)
    if ratio is not None:
        table.add_row(
            "bytes per delivery, largest room / smallest",
            f"{ratio:.2f} x",
            f"<= {BYTES_RATIO:g}",
            _verdict(ratio <= BYTES_RATIO),
        )
    console.print(table)
    m = results.machine
    console.print(
        f"machine: {m['cores']} cores, {m['os']}, Python {m['python']}, pyzmq {m['pyzmq']} "
        f"(libzmq {m['libzmq']}); identity keys in {results.keys['dir']} "
        f"({results.keys['made']} made by this run)"
    )
    for b in results.busy:
        console.print(
            f"{b.name}: {b.sent} messages, {b.received:,} of {b.expected:,} deliveries, "
            f"p50 {b.latency_ms['p50']:g} ms, max {b.latency_ms['max']:g} ms, "
            f"{b.wire_bytes_per_delivery:,.0f} B per delivery, "
            f"{b.brokers} broker process{'es' if b.brokers > 1 else ''}"
        )
    for note in results.notes:
        console.print(note, markup=False)


def _busy_row(b: BusyResult) -> tuple[str, str, str, str]:
    if b.rooms > 1:
        workload = f"{b.rooms} rooms of {b.room_size}, {b.rate:g} msg/s each"
        target, p99 = f"0 lost, p99 < {BUSY_P99_MS:g} ms", BUSY_P99_MS
        cpu_ok = True
    elif b.rate >= 10:
        workload = f"{b.room_size} members, {b.rate:g} room msg/s"
        target = f"broker < {BUSY_CPU_PCT:g}%, p99 < {BUSY_P99_MS:g} ms, 0 lost"
        p99, cpu_ok = BUSY_P99_MS, b.broker_cpu_pct < BUSY_CPU_PCT
    else:
        workload = f"{b.room_size} members, {b.rate:g} room msg/s"
        target, p99 = f"0 lost, p99 < {BIG_P99_MS:g} ms", BIG_P99_MS
        cpu_ok = True
    measured = (
        f"{b.deliveries_per_s:,.0f} deliv/s, broker {b.broker_cpu_pct:.1f}%, "
        f"p99 {b.latency_ms['p99']:g} ms, {b.lost} lost"
        + (f", {b.evicted} evicted" if b.evicted else "")
    )
    ok = cpu_ok and b.latency_ms["p99"] < p99 and b.lost == 0 and b.received > 0
    return workload, measured, target, _verdict(ok)


def _verdict(ok: bool) -> str:
    return "[green]holds[/green]" if ok else "[red]missed[/red]"
