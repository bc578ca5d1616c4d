"""The benchmark's results for people (a table) and for programs (JSON, a plot)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from zchat.bench.results import Results, RoomResult

#: The issue's targets, checked for a room of this size.
TARGET_ROOM = 10
_TARGETS: tuple[tuple[str, Callable[[RoomResult], bool]], ...] = (
    ("broker_vs_zmq >= 0.5", lambda r: r.broker_vs_zmq >= 0.5),
    ("e2e_vs_crypto >= 0.8", lambda r: r.e2e_vs_crypto >= 0.8),  # issue 21.6
    ("p99 <= 25 ms at half load", lambda r: r.latency_ms["p99"] <= 25),
)


def to_json(results: Results) -> dict[str, Any]:
    return {
        "rooms": [asdict(r) for r in results.rooms],
        "machine": results.machine,
        "crypto_us_per_op": results.crypto.as_us(),
        "envelope_overhead": results.overhead.as_dict(),
        "session_key_rotation": results.rotation.as_dict(),
        "notes": [asdict(n) for n in results.notes],
        "settings": asdict(results.settings),
    }


def write_json(results: Results, path: Path) -> None:
    path.write_text(json.dumps(to_json(results), indent=2) + "\n")


def show(results: Results, console: Console) -> None:
    table = Table(title="zchat bench", title_justify="left")
    for name in (
        "room",
        "ZeroMQ\ndeliv/s",
        "broker\ndeliv/s",
        "broker\n/ZeroMQ",
        "crypto\nmsg/s",
        "e2e\nmsg/s",
        "e2e\n/crypto",
        "p50\nms",
        "p99\nms",
        "max\nms",
        "wire B\n/deliv",
    ):
        table.add_column(name, justify="right")
    for r in results.rooms:
        table.add_row(
            str(r.room),
            f"{r.zmq_ceiling_deliveries_per_s:,.0f}",
            f"{r.broker_deliveries_per_s:,.0f}",
            f"{r.broker_vs_zmq:.2f}",
            f"{r.crypto_ceiling_msgs_per_s:,.1f}",
            f"{r.e2e_msgs_per_s:,.1f}",
            f"{r.e2e_vs_crypto:.2f}",
            f"{r.latency_ms['p50']:.1f}",
            f"{r.latency_ms['p99']:.1f}",
            f"{r.latency_ms['max']:.1f}",
            f"{r.wire_bytes_per_delivery:,.0f}",
        )
    console.print(table)

    m = results.machine
    console.print(
        f"machine: {m['cores']} cores, {m['os']}, Python {m['python']}, pyzmq {m['pyzmq']} "
        f"(libzmq {m['libzmq']}), cryptography {m['cryptography']}"
    )
    ops = results.crypto.as_us()
    console.print("crypto per operation (us): " + ", ".join(f"{k} {v:g}" for k, v in ops.items()))
    o = results.overhead.as_dict()
    console.print(
        f"envelope overhead: seal for {o['recipients']} recipients {o['seal_us']:g} us "
        f"= crypto {o['seal_crypto_us']:g} + {o['seal_overhead_us']:g}; "
        f"open one delivery {o['open_us']:g} us "
        f"= crypto {o['open_crypto_us']:g} + {o['open_overhead_us']:g}"
    )
    rot = results.rotation.as_dict()
    console.print(
        f"per session-key rotation (each connection, then every --rotate seconds; not per "
        f"message): new key {rot['keygen_ms']:g} ms (off the event loop), certify "
        f"{rot['certify_us']:g} us, each member and the broker check it {rot['check_us']:g} us"
    )
    for n in results.notes:
        extra = f", {n.unopened} deliveries never seen opened" if n.unopened else ""
        console.print(
            f"room {n.room}: {n.room} peer processes started in {n.startup_s:.1f} s, "
            f"joined in {n.join_s:.1f} s; end to end {n.e2e_cpu_ms_per_msg:g} ms CPU "
            f"per message ({n.e2e_kernel_share:.0%} in the kernel) of which crypto "
            f"{n.crypto_cpu_ms_per_msg:g} ms; "
            f"other load {n.other_load_cores:g} cores; "
            f"latency at {n.open_rate_msgs_per_s:.1f} msg/s "
            f"from {n.latency_samples} deliveries{extra}"
        )
        if n.crypto_in_place_ms_per_msg:
            each = ", ".join(f"{k} {v:g}" for k, v in n.crypto_in_place_us.items())
            bound = n.crypto_cpu_ms_per_msg / n.crypto_in_place_ms_per_msg
            console.print(
                f"room {n.room}: the cryptography as it ran in the peers: "
                f"{n.crypto_in_place_ms_per_msg:g} ms per message against the ceiling's "
                f"{n.crypto_cpu_ms_per_msg:g} (us: {each}); if nothing else ran, "
                f"e2e_vs_crypto would be {bound:.2f}"
            )
        for problem in n.problems[:3]:
            console.print(f"  problem: {problem}", markup=False)
    _show_targets(results, console)


def _show_targets(results: Results, console: Console) -> None:
    by_room = {r.room: r for r in results.rooms}
    target = by_room.get(TARGET_ROOM)
    if target is not None:
        for text, holds in _TARGETS:
            console.print(f"target (room {TARGET_ROOM}) {text}: {_verdict(holds(target))}")
    smallest, largest = min(by_room.values(), key=_room), max(by_room.values(), key=_room)
    # No wire bytes means no delivery was received: there is no ratio to show.
    if largest.room > smallest.room and smallest.wire_bytes_per_delivery:
        ratio = largest.wire_bytes_per_delivery / smallest.wire_bytes_per_delivery
        console.print(
            f"target wire bytes room {largest.room} <= 2 x room {smallest.room}: "
            f"{ratio:.2f} x, {_verdict(ratio <= 2)}"
        )


def _room(r: RoomResult) -> int:
    return r.room


def _verdict(ok: bool) -> str:
    return "[green]holds[/green]" if ok else "[red]missed[/red]"


def plot(results: Results, path: Path) -> None:
    """Throughput against both ceilings, and latency, per room size."""
    import matplotlib  # noqa: PLC0415  optional: the `bench` extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rooms = [r.room for r in results.rooms]
    fig, (deliveries, messages, latency) = plt.subplots(1, 3, figsize=(15, 4.5))
    deliveries.plot(rooms, [r.zmq_ceiling_deliveries_per_s for r in results.rooms], "o--")
    deliveries.plot(rooms, [r.broker_deliveries_per_s for r in results.rooms], "o-")
    deliveries.legend(["bare ZeroMQ ceiling", "zchat broker"])
    deliveries.set_title("routing: deliveries per second")
    messages.plot(rooms, [r.crypto_ceiling_msgs_per_s for r in results.rooms], "o--")
    messages.plot(rooms, [r.e2e_msgs_per_s for r in results.rooms], "o-")
    messages.legend(["cryptography ceiling", "zchat end to end"])
    messages.set_title("end to end: messages per second")
    for key in ("p50", "p99", "max"):
        latency.plot(rooms, [r.latency_ms[key] for r in results.rooms], "o-", label=key)
    latency.legend()
    latency.set_title("latency at half load (ms)")
    for ax in (deliveries, messages, latency):
        ax.set_xlabel("room size (peers)")
        ax.set_xscale("log")
        ax.set_xticks(rooms, [str(r) for r in rooms])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_ylim(bottom=0) if ax is latency else ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    m = results.machine
    fig.suptitle(f"zchat bench: {m['cores']} cores, Python {m['python']}, {m['os']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
