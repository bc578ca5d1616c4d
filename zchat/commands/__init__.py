"""The ``zchat`` subcommands, one module each; `zchat.cli` joins them into one program."""
