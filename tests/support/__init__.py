"""What the tests share: the key pool (`keys`), a room in memory and a ready core
(`room`), one bounded wait (`waits`), and a broker that lies (`lying_broker`).

Tests over real sockets use `tests.net`, and tests of real processes `tests.procs`.
"""
