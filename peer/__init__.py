"""The zchat peer: the protocol core (`core`, sans I/O), its socket loop (`client`),
and the front ends built on them (`scripted`, `interactive`, `cli`)."""
