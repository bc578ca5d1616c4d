"""`zchat bench`: the quick run produces every figure, and the crypto timings are sane.

No timing thresholds: how fast this machine is is not something a test can know.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from zchat.bench import report
from zchat.bench.crypto import (
    crypto_ceiling,
    crypto_seconds_per_message,
    envelope_overhead,
    time_crypto,
    time_rotation,
)
from zchat.bench.crypto_in_place import PRIMITIVES, in_place, timed_primitives
from zchat.bench.results import (
    CryptoTimings,
    EnvelopeOverhead,
    Results,
    RoomNotes,
    RoomResult,
    RotationCost,
    Settings,
)
from zchat.envelope import Identity, Recipient, open_delivery, room_id, seal
from zchat.envelope import _primitives as prim

ROOM_FIELDS = {
    "room",
    "zmq_ceiling_deliveries_per_s",
    "crypto_ceiling_msgs_per_s",
    "broker_deliveries_per_s",
    "e2e_msgs_per_s",
    "latency_ms",
    "wire_bytes_per_delivery",
    "broker_vs_zmq",
    "e2e_vs_crypto",
}


def test_crypto_timings_are_positive_per_operation(alice: Identity, bob: Identity) -> None:
    timings = time_crypto(alice, b"x" * 100, scale=0.05)
    for name, us in timings.as_us().items():
        assert us > 0, name
    overhead = envelope_overhead(alice, bob, b"x" * 100, timings, recipients=3, scale=0.1)
    assert overhead.seal_s > 0
    assert overhead.open_s > 0


def test_a_session_key_rotation_is_timed_step_by_step(alice: Identity) -> None:
    cost = time_rotation(alice, scale=0.05)
    assert set(cost.as_dict()) == {"keygen_ms", "certify_us", "check_us"}
    assert cost.keygen_s > 0
    assert cost.certify_s > 0
    assert cost.check_s > 0


def test_the_crypto_ceiling_follows_the_documented_formula(alice: Identity) -> None:
    t = time_crypto(alice, b"x" * 100, scale=0.05)
    per_message = t.sign + t.encrypt + 9 * (t.wrap + t.verify + t.unwrap + t.decrypt)
    assert crypto_seconds_per_message(t, 10) == pytest.approx(per_message)
    assert crypto_ceiling(t, 10, cores=2) == pytest.approx(2 / per_message)
    assert crypto_ceiling(t, 50, cores=2) < crypto_ceiling(t, 10, cores=2)


def test_primitives_timed_in_place_count_what_one_message_costs(
    alice: Identity, bob: Identity
) -> None:
    originals = {name: getattr(prim, name) for name in PRIMITIVES}
    room = room_id("bench")
    with timed_primitives() as tally:
        envelope = seal(
            b"hello",
            sender=alice,
            sender_nick="alice",
            room_id=room,
            recipients=[Recipient(nick, bob.public_key) for nick in ("bob", "carol", "dave")],
            seq=1,
        )
        opened = open_delivery(
            envelope.delivery_for(0),
            me="bob",
            room_id=room,
            keys=(bob,),
            sender_key=alice.public_key,
            sender_fingerprint=alice.fingerprint,
        )
    assert opened.plaintext == b"hello"
    # As crypto_seconds_per_message counts them: one sign and encrypt, a wrap per
    # recipient, and one verify, unwrap and decrypt for the delivery opened.
    calls = {name: tally[name][0] for name in PRIMITIVES}
    assert calls == {"sign": 1, "encrypt": 1, "wrap": 3, "verify": 1, "unwrap": 1, "decrypt": 1}
    assert all(tally[name][1] > 0 for name in PRIMITIVES)
    # The module is itself again afterwards, however the timed block ends.
    assert all(getattr(prim, name) is fn for name, fn in originals.items())
    with pytest.raises(RuntimeError), timed_primitives():
        raise RuntimeError("the phase failed")
    assert all(getattr(prim, name) is fn for name, fn in originals.items())


def test_in_place_timings_are_means_over_every_worker() -> None:
    # Each primitive its own figures, so that names mixed up would show.
    one = {name: [2, 0.001 * (i + 1)] for i, name in enumerate(PRIMITIVES)}
    two = {name: [6, 0.010 * (i + 1)] for i, name in enumerate(PRIMITIVES)}
    timings = in_place([one, two])
    assert timings is not None
    for i, name in enumerate(PRIMITIVES):
        assert getattr(timings, name) == pytest.approx(0.011 * (i + 1) / 8), name
    # A primitive never called (a phase too short to open anything): no figure.
    none = {**one, "decrypt": [0, 0.0]}
    assert in_place([none]) is None


def test_the_report_says_what_the_cryptography_in_place_allows() -> None:
    crypto = CryptoTimings(*(1e-6 for _ in PRIMITIVES))
    room = RoomResult(10, 1.0, 1.0, 1.0, 1.0, {"p50": 1, "p99": 1, "max": 1}, 1.0, 1.0, 0.7)
    notes = RoomNotes(10, crypto_cpu_ms_per_msg=8.0, crypto_in_place_ms_per_msg=10.0)
    notes.crypto_in_place_us = {"unwrap": 843.0}
    overhead = EnvelopeOverhead(10, 1.0, 1.0, 1.0, 1.0)
    machine = dict.fromkeys(("cores", "os", "python", "pyzmq", "libzmq", "cryptography"), "x")
    results = Results(Settings(), machine, crypto, overhead, RotationCost(1, 1, 1), [room], [notes])
    console = Console(record=True, width=400)
    report.show(results, console)
    text = console.export_text()
    # 8 ms of the ceiling's cryptography against 10 as it ran: 0.8 at most.
    assert "10 ms per message against the ceiling's 8 (us: unwrap 843)" in text
    assert "e2e_vs_crypto would be 0.80" in text


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_time_crypto_reports_the_cryptography_as_it_ran(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "zchat",
            "bench",
            "--quick",
            "--room",
            "3",
            "--time-crypto",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    notes = json.loads(out.read_text())["notes"][0]
    assert set(notes["crypto_in_place_us"]) == set(PRIMITIVES)
    assert all(us > 0 for us in notes["crypto_in_place_us"].values())
    assert notes["crypto_in_place_ms_per_msg"] > 0
    assert "the cryptography as it ran in the peers" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_quick_run_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "zchat", "bench", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert [r["room"] for r in data["rooms"]] == [2, 5]
    for room in data["rooms"]:
        assert set(room) == ROOM_FIELDS
        for key in ROOM_FIELDS - {"room", "latency_ms"}:
            value = room[key]
            assert math.isfinite(value), (room["room"], key)
            assert value > 0, (room["room"], key, value)
        latency = room["latency_ms"]
        assert set(latency) == {"p50", "p99", "max"}
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]
    rotation = data["session_key_rotation"]
    assert set(rotation) == {"keygen_ms", "certify_us", "check_us"}
    assert all(value > 0 for value in rotation.values()), rotation
    machine = data["machine"]
    assert machine["cores"] >= 1
    for key in ("python", "pyzmq", "libzmq", "cryptography"):
        assert machine[key]
    assert "zchat bench" in proc.stdout


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path: Path) -> None:
    # A stub that makes `import matplotlib` fail, placed first on the path.
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "sitecustomize.py").write_text(
        "import sys\nsys.modules['matplotlib'] = None\n"
        "import importlib.util as u\n_find = u.find_spec\n"
        "u.find_spec = lambda name, *a: None if name == 'matplotlib' else _find(name, *a)\n"
    )
    env = {"PYTHONPATH": str(stub), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "zchat", "bench", "--plot", str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )
    assert proc.returncode == 1
    assert "zchat: error: --plot needs matplotlib" in proc.stderr
    assert "zchat: hint: pip install 'zchat[bench]'" in proc.stderr
