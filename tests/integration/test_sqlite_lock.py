"""The SQLite file's daemon lock (`store/sqlite_lock.py`): one holder at a time, named to the next comer,
free again when the holder releases it or dies (SIGKILL included), never taken for PostgreSQL."""

import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from katsched import wiring
from katsched.config import Settings
from katsched.errors import StartupError
from katsched.store.sqlite_lock import Holder, hold, lock_path

pytestmark = pytest.mark.integration

SINCE = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
RULE = "one daemon per SQLite file (stop that one first, or use PostgreSQL for several daemons)"


def test_a_second_holder_is_refused_with_the_first_named_until_it_lets_go(tmp_path: Path) -> None:
    database = tmp_path / "data" / "katsched.db"
    first = hold(database, Holder("host1", 4242, SINCE))
    assert lock_path(database) == tmp_path / "data" / "katsched.db.daemon.lock"
    # flock belongs to the open file, so a second open in this same process is refused like another one
    with pytest.raises(StartupError) as refused:
        hold(database, Holder("host2", 7, SINCE))
    assert str(refused.value) == (
        f"database {database} is held by the daemon on host1 (pid 4242, since 2026-12-04T03:00:00Z): {RULE}"
    )
    assert not database.exists()  # the lock never creates the database itself
    first.release()
    first.release()  # twice is harmless
    second = hold(database, Holder("host2", 7, SINCE))
    second.release()


def test_a_lock_file_without_a_readable_name_still_refuses(tmp_path: Path) -> None:
    database = tmp_path / "katsched.db"
    held = hold(database, Holder("host1", 1, SINCE))
    lock_path(database).write_text("not json\n")
    try:
        with pytest.raises(StartupError, match=r"held by another daemon \(unnamed in .*daemon\.lock\)"):
            hold(database, Holder("host2", 2, SINCE))
    finally:
        held.release()


HOLDER = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from katsched.store.sqlite_lock import Holder, hold
hold(Path(sys.argv[1]), Holder("child", 1, datetime.now(UTC)))
print("held", flush=True)
time.sleep(600)
"""


def test_a_holder_killed_with_sigkill_leaves_the_lock_free(tmp_path: Path) -> None:
    database = tmp_path / "katsched.db"
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(database)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        with pytest.raises(StartupError, match="held by the daemon on child"):
            hold(database, Holder("parent", 2, SINCE))
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        hold(database, Holder("parent", 2, SINCE)).release()
    finally:
        child.kill()
        child.wait(30)


def test_only_a_sqlite_file_is_locked(tmp_path: Path) -> None:
    def settings(url: str) -> Settings:
        return Settings.model_validate({"database": {"url": url}})

    postgres = settings("postgresql+psycopg://kat@db.example/katsched")
    assert wiring.hold_database(postgres, "h", 1, SINCE) is None
    assert wiring.hold_database(settings("sqlite://"), "h", 1, SINCE) is None  # in memory: one process
    held = wiring.hold_database(settings(f"sqlite:///{tmp_path / 'k.db'}"), "h", 1, SINCE)
    assert held is not None and held.path == tmp_path / "k.db.daemon.lock"
    held.release()


def test_an_unwritable_directory_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the database's directory should be
    database = blocker / "katsched.db"
    with pytest.raises(StartupError) as refused:
        hold(database, Holder("h", 1, SINCE))
    assert str(refused.value).startswith(f"cannot lock the database {database}: ")
