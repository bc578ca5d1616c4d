"""The zchat peer: the protocol core (`core`, sans I/O), its socket loop (`client`),
one session (`session`) and one wording (`render`) for the two front ends built on
them (`scripted`, `interactive`). Words for errors and exit codes are the shell's."""
