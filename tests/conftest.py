"""Shared fixtures: identities from the session's key pool (`tests.support.keys`)."""

from __future__ import annotations

import pytest

from tests.support.keys import POOL, KeyPool
from zchat.envelope import Identity


@pytest.fixture(scope="session")
def keys() -> KeyPool:
    return POOL


@pytest.fixture
def alice(keys: KeyPool) -> Identity:
    return keys.get(0)


@pytest.fixture
def bob(keys: KeyPool) -> Identity:
    return keys.get(1)


@pytest.fixture
def carol(keys: KeyPool) -> Identity:
    return keys.get(2)
