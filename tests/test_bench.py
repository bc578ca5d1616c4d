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

from zchat.bench.crypto import (
    crypto_ceiling,
    crypto_seconds_per_message,
    envelope_overhead,
    time_crypto,
    time_rotation,
)
from zchat.envelope import Identity

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
