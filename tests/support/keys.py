"""RSA identities for tests: generating one takes a tenth of a second or more, so a
session-wide pool makes each once and hands them out by index (`conftest` fixtures)."""

from __future__ import annotations

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


#: The one pool of the test session.
POOL = KeyPool()
