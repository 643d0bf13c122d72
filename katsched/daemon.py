"""The composition root: builds every component from Settings, runs them, and stops them on a signal.

Two-stage shutdown: the first SIGTERM/SIGINT drains and exits 0; a second one stops at once.
"""

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from katsched.config import Settings, load_settings
from katsched.store.engine import build_engine
from katsched.store.migrate import current_revision, upgrade

log = logging.getLogger("katsched")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {"at": self.formatTime(record), "level": record.levelname, "event": record.getMessage()}
        return json.dumps(document)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.logging.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.logging.level)


class StopSignal:
    """Set by the first SIGTERM/SIGINT; the second one exits at once."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.event.is_set():
            log.warning("daemon_stop_now signal=%s", signal.Signals(signum).name)
            sys.exit(1)
        log.info("daemon_stopping signal=%s", signal.Signals(signum).name)
        self.event.set()


def run(config: Path | None) -> int:
    settings = load_settings(config)
    configure_logging(settings)
    stop = StopSignal()
    stop.install()
    engine = build_engine(
        settings.database.url, busy_timeout_ms=settings.database.busy_timeout_ms, pool_size=settings.database.pool_size
    )
    upgrade(engine)
    log.info("daemon_ready database=%s revision=%s", engine.url.render_as_string(), current_revision(engine))
    stop.event.wait()
    engine.dispose()
    log.info("daemon_stopped")
    return 0
