"""Checkpoints of SQLite's write-ahead log on a thread of their own, so that no request pays for one.

SQLite copies the log back into the database file when a commit takes the log past `wal_autocheckpoint`
pages, inside that commit. A pop rewrites ~14 pages (the task's row, its index entries, the history row, the
counters), so every ~70th pop carried a checkpoint; at a million queued tasks those pages lie scattered over
the file and the pop that carried one took 16 ms instead of 0.6 (5 ms at a thousand). The processes that
serve (`katsched daemon`, `katsched api`) therefore open their engine with a high automatic threshold
(`BACKSTOP_PAGES`, reached only when this thread falls behind or has died) and run a `WalCheckpointer`.

It checkpoints PASSIVE (it never waits for, nor blocks, a reader or a writer), every `interval` seconds when
the log file changed since the last pass (an idle daemon only looks at the file's size and time), and
repeats at once while writers added frames during the last pass, a few times: the log restarts from its
beginning only when a writer finds it fully copied, and a log that is never fully copied grows, and with it
what every read looks through.
"""

import logging
import os
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("katsched.store")

BACKSTOP_PAGES = 10_000  # 40 MB of log with 4 KiB pages
# Small passes, often: what a pass copies is written while the API's writers write (a pass at 0.2 s left
# the p99 of 16 clients' pops at 21-23 ms, at 1 s 30 ms, at 0.05 s 11-13 ms, against 10-11 ms for SQLite's
# own checkpoints). An idle daemon only looks at the log file's size and time, 20 times a second.
INTERVAL = 0.05
CATCH_UP_PASSES = 8


class WalCheckpointer:
    """A supervised component (start / alive / stop) that checkpoints one SQLite file's log."""

    def __init__(self, file: Path, *, interval: float = INTERVAL, catch_up: int = CATCH_UP_PASSES) -> None:
        self.file = file
        self.interval = interval
        self.catch_up = catch_up
        self.passes = 0
        self._log_seen: tuple[int, int] | None = None  # the log file's (size, mtime) after the last pass
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        connection = sqlite3.connect(self.file, isolation_level=None, check_same_thread=False)
        self._thread = threading.Thread(
            target=self._run, args=(connection,), name="katsched-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float) -> bool:
        self._stopping.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def checkpoint(self, connection: sqlite3.Connection) -> tuple[int, int]:
        """Copy what it can of the log; the log's frames and how many of them are now in the file."""
        for _ in range(self.catch_up):
            _busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.passes += 1
            if copied >= frames:  # also -1, -1: not in WAL mode (yet)
                break
        return frames, copied

    def checkpoint_or_log(self, connection: sqlite3.Connection) -> bool:
        """One `checkpoint` if the log changed since the last; a database error (the disk, say) is logged and
        the next pass tries again."""
        written = self._log_written()
        if written is not None and written == self._log_seen:
            return True
        try:
            self.checkpoint(connection)
            self._log_seen = written  # a write during the pass changes it again: the next pass copies that
        except sqlite3.Error as error:
            log.warning("wal_checkpoint_failed file=%s error=%s", self.file, error)
            return False
        return True

    def _log_written(self) -> tuple[int, int] | None:
        try:
            found = os.stat(f"{self.file}-wal")
        except OSError:  # no log (yet): nothing to copy, but let SQLite say so
            return None
        return found.st_size, found.st_mtime_ns

    def _run(self, connection: sqlite3.Connection) -> None:
        try:
            while not self._stopping.wait(self.interval):
                self.checkpoint_or_log(connection)
        finally:
            connection.close()
