"""The ``zchat`` command line: glue that joins the broker, peer, keys and bench commands."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zchat")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
