"""The zchat peer library: the protocol core (`core`, sans I/O), its asyncio socket loop
(`client`), and what every front end builds on: events, commands, pins, rendering."""
