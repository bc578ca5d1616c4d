"""Prometheus metrics for the broker (``zchat broker --metrics ADDR``), an optional extra.

Read from the core's counters when Prometheus scrapes, on prometheus_client's HTTP
thread: the broker's loop does no work for metrics between scrapes, and no lock is
taken (each figure is one read of an int or a copy of a small dict under the GIL, so
a scrape sees each value whole, if not all of them from the same instant).

Importing this module needs prometheus_client (``pip install 'zchat[metrics]'``); the
shell imports it only when asked for metrics, and says what to install if missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from zchat.broker.core import Broker

PREFIX: Final = "zchat"


class MetricsAddressError(ValueError):
    """A --metrics address that is not HOST:PORT or PORT."""


@dataclass(frozen=True, slots=True)
class MetricsAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> MetricsAddress:
        """``HOST:PORT``, ``[IPv6]:PORT`` or ``PORT`` (every interface)."""
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = "0.0.0.0", text  # noqa: S104  what a bare port means
        host = host.removeprefix("[").removesuffix("]")
        if not port.isdigit() or not 0 < int(port) < 65536 or not host:
            raise MetricsAddressError(f"{text!r} is not HOST:PORT or PORT")
        return cls(host, int(port))


class BrokerCollector(Collector):
    """The broker's figures, as Prometheus metric families, at each scrape."""

    def __init__(self, core: Broker) -> None:
        self.core = core

    def collect(self) -> Iterator[Metric]:
        core, c = self.core, self.core.counters
        # Counts only: a room's name is known to those told it, never to a scraper.
        yield _gauge("rooms", "Rooms with members or held messages.", core.room_count)
        yield _gauge("members", "Members, in every room.", core.member_count)
        yield _gauge("handshakes", "Handshakes under way.", core.handshake_count)
        yield _gauge(
            "held_bytes", "Bytes held for members whose socket queue is full.", core.held.total
        )
        yield _counter("messages", "Messages routed.", c.messages)
        yield _counter("deliveries", "Deliveries handed to recipients.", c.deliveries)
        yield _counter(
            "dropped", "Messages dropped: held for a reader that stopped, or unroutable.", c.dropped
        )
        yield _counter("evictions", "Members evicted: silent, stopped reading, or gone.", c.evicted)
        yield _counter("errors", "Malformed or out-of-order messages.", c.errors)
        refusals = CounterMetricFamily(
            f"{PREFIX}_refusals", "Refused handshakes, by REFUSE code.", labels=["code"]
        )
        for code, count in sorted(dict(c.refused_by_code).items()):
            refusals.add_metric([code.lower()], count)
        yield refusals


def serve_metrics(core: Broker, address: MetricsAddress) -> CollectorRegistry:
    """Serve `core`'s metrics over HTTP at `address` from a daemon thread; returns the
    registry (its own: nothing else of this process is exported)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(BrokerCollector(core))
    start_http_server(address.port, address.host, registry=registry)
    return registry


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", text, value=value)


def _counter(name: str, text: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", text, value=value)
