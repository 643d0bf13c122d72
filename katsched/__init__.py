"""katsched: a task scheduler for OpenKAT-style security scanning."""

from typing import Any


def __getattr__(name: str) -> Any:
    # Looked up on first use: importlib.metadata costs more than `katsched --help` may take.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("katsched")
        except PackageNotFoundError:  # running from a source tree that was never installed
            return "0.0.0"
    raise AttributeError(f"module 'katsched' has no attribute {name!r}")
