"""``zchat bench``: zchat measured on this machine against bare ZeroMQ and the raw cryptography.

The parent process runs the benchmark; each peer of a room is a process of its own.

Parent side:
    `run`        the run: keys, the ceilings, a broker, then every room's phases in turn
    `fleet`      one room's worker processes, driven over a control socket as one
    `processes`  starting every child process, and ending each when the run ends
    `machine`    what the machine is, and how busy its CPUs were during a phase
    `crypto`     the cryptography ceiling: each primitive timed on its own
    `results`    the settings that go in and the results that come out (plain data)
    `report`     the results as a table, JSON and a plot; it reads `results` only
    `errors`     `BenchError`: the benchmark could not run
    `cli`        the ``zchat bench`` command

Worker side:
    `worker`     one peer process: the control dialog and the end-to-end phases
    `replay`     the replay phase: broker routing with envelopes sealed beforehand
    `bare`       the ZeroMQ ceiling: a bare ROUTER (``python -m zchat.bench.bare``) and its peers

Shared by both:
    `board`      counters in a memory-mapped file, which workers read of each other
    `keys`       the peers' keys, written by the parent, read by the workers
    `messages`   the benchmark's chat line, which carries the instant it was due
    `clock`      the one clock of every process: `time.monotonic_ns()`
"""
