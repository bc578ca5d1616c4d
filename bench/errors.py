"""The one error the benchmark raises: it could not run, and the message says why."""

from __future__ import annotations


class BenchError(Exception):
    """The benchmark could not run; the message says why, for people."""
