"""One daemon per SQLite file: an exclusive `flock` on a sidecar file next to the database.

Several daemons share a PostgreSQL database (they claim its work row by row and hold the once-only jobs
under leases); on SQLite a second daemon would only queue behind the one write lock and repeat the first
one's work, so it is refused at start, before it touches the database, with the holder named. The kernel
drops the lock when the holding process ends, however it ends (kill -9 included): a dead daemon never blocks
a restart. The file stays, with the last holder's name in it.

Only `katsched daemon` takes it. The CLI and `katsched api` plan nothing, so they run beside the daemon and
take turns at SQLite's write lock like any writer.
"""

import fcntl
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from katsched.errors import StartupError

SUFFIX = ".daemon.lock"
READ_TRIES = 10  # a holder writes its name just after it takes the lock: give it a moment to appear
READ_PAUSE = 0.02


@dataclass(frozen=True)
class Holder:
    hostname: str
    pid: int
    since: datetime


class SqliteDaemonLock:
    """The held lock; `release()` (or the end of the process) lets the next daemon take it."""

    def __init__(self, path: Path, descriptor: int) -> None:
        self.path = path
        self._descriptor: int | None = descriptor

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the only descriptor drops the flock
            self._descriptor = None


def lock_path(database: Path) -> Path:
    return database.with_name(database.name + SUFFIX)


def hold(database: Path, holder: Holder) -> SqliteDaemonLock:
    """Take the daemon lock of the SQLite file `database`, or raise `StartupError` naming who holds it."""
    path = lock_path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise StartupError(f"cannot lock the database {database}: {path}: {exc.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = _read_holder(descriptor)
        os.close(descriptor)
        raise StartupError(held_message(database, other)) from None
    except OSError as exc:  # a file system without flock
        os.close(descriptor)
        raise StartupError(f"cannot lock the database {database}: {path}: {exc.strerror}") from None
    _write_holder(descriptor, holder)
    return SqliteDaemonLock(path, descriptor)


def held_message(database: Path, holder: Holder | None) -> str:
    rule = "one daemon per SQLite file (stop that one first, or use PostgreSQL for several daemons)"
    if holder is None:
        return f"database {database} is held by another daemon (unnamed in {lock_path(database)}): {rule}"
    since = f"{holder.since:%Y-%m-%dT%H:%M:%SZ}"
    return (
        f"database {database} is held by the daemon on {holder.hostname} (pid {holder.pid}, "
        f"since {since}): {rule}"
    )


def _write_holder(descriptor: int, holder: Holder) -> None:
    # Written over the old name, then cut to length: a reader sees one whole line first, old or new.
    line = json.dumps({"hostname": holder.hostname, "pid": holder.pid, "since": holder.since.isoformat()})
    data = f"{line}\n".encode()
    os.pwrite(descriptor, data, 0)
    os.ftruncate(descriptor, len(data))


def _read_holder(descriptor: int) -> Holder | None:
    for attempt in range(READ_TRIES):
        holder = _parse(os.pread(descriptor, 4096, 0))
        if holder is not None:
            return holder
        if attempt + 1 < READ_TRIES:
            time.sleep(READ_PAUSE)
    return None


def _parse(data: bytes) -> Holder | None:
    try:
        fields = json.loads(data.split(b"\n", 1)[0])
        return Holder(str(fields["hostname"]), int(fields["pid"]), datetime.fromisoformat(fields["since"]))
    except (ValueError, KeyError, TypeError):
        return None
