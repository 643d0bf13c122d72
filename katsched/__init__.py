"""katsched: a task scheduler for OpenKAT-style security scanning."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("katsched")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
