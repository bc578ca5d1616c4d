"""The socket helpers both sides share (`zchat.wire.transport`), over real sockets."""

from __future__ import annotations

import socket

import pytest
import zmq

from tests.net import zmq_context
from zchat.wire.transport import unwatch, watch

#: More events than the 2,000 a monitor pipe holds by default (`get_monitor_socket`).
EVENTS = 2_500


def still_works(ctx: zmq.Context[zmq.Socket[bytes]]) -> bool:
    """Whether the context's I/O thread still carries a message over TCP."""
    server = ctx.socket(zmq.ROUTER)
    client = ctx.socket(zmq.DEALER)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    client.connect(f"tcp://127.0.0.1:{port}")
    client.send(b"ping")
    return bool(server.poll(3000))


@pytest.mark.timeout(60)
def test_a_monitor_nobody_reads_never_stalls_the_context() -> None:
    """libzmq sends monitor events from its I/O thread with a blocking send: with a
    full pipe nobody reads (a client left open after its loop ended), every socket of
    the context stops. Found as a suite whose in-process clients all went deaf."""
    with zmq_context() as ctx:
        router = ctx.socket(zmq.ROUTER)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        monitor = watch(router, zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        for _ in range(EVENTS // 2):  # two events each, and never read
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert still_works(ctx)
        # ...and the events are all there for whoever reads them at last.
        got = 0
        while monitor.poll(1000):
            monitor.recv_multipart()
            got += 1
            if got == EVENTS:
                break
        assert got == EVENTS
        unwatch(router, monitor)


@pytest.mark.timeout(60)
def test_an_unwatched_socket_stops_its_monitor_and_the_context_keeps_working() -> None:
    with zmq_context() as ctx:
        router = ctx.socket(zmq.ROUTER)
        port = router.bind_to_random_port("tcp://127.0.0.1")
        monitor = watch(router, zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        unwatch(router, monitor)
        assert monitor.closed
        for _ in range(EVENTS // 2):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert still_works(ctx)
        router.close(linger=0)
