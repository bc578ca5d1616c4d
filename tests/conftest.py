"""Shared fixtures. RSA key generation is slow, so a session-wide pool hands out keys."""

from __future__ import annotations

import pytest

from zchat.envelope import Identity, generate_identity


class KeyPool:
    """Identities generated once per test session and handed out in order."""

    def __init__(self) -> None:
        self._keys: list[Identity] = []

    def get(self, i: int) -> Identity:
        while len(self._keys) <= i:
            self._keys.append(generate_identity(2048))
        return self._keys[i]

    def many(self, n: int) -> list[Identity]:
        return [self.get(i) for i in range(n)]


_POOL = KeyPool()


@pytest.fixture(scope="session")
def keys() -> KeyPool:
    return _POOL


@pytest.fixture
def alice(keys: KeyPool) -> Identity:
    return keys.get(0)


@pytest.fixture
def bob(keys: KeyPool) -> Identity:
    return keys.get(1)


@pytest.fixture
def carol(keys: KeyPool) -> Identity:
    return keys.get(2)
