"""The ``zchat`` shell: the command line (`cli`), its subcommands (`commands`), and the
only place that turns outcomes into messages (`console`) and exit codes (`exit_codes`)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zchat")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
