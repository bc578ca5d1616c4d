"""The exit statuses of ``zchat``: what each means to a script (README, "Scripted peers").

Only the shell chooses one; the libraries return outcomes (`peer.session.Outcome`) and
raise typed errors, which the commands map to these.
"""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_NICK_TAKEN: Final = 3
#: `zchat keys`: there is no identity to show (none was made: showing never makes one).
EXIT_NO_KEY: Final = 3
EXIT_REFUSED: Final = 4
EXIT_UNDELIVERED: Final = 5  # messages the broker never acknowledged at exit
EXIT_INTERRUPTED: Final = 130  # Ctrl-C, as a shell reports SIGINT
