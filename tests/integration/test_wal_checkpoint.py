"""The serving processes checkpoint SQLite's log on a thread of their own, not inside a request's commit."""

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from katsched import wiring
from katsched.config import Settings
from katsched.store.engine import build_engine, write
from katsched.store.wal import BACKSTOP_PAGES, WalCheckpointer

PAGE = 4096
COMMITS = 1_500  # each adds at least one page to the log: past SQLite's default threshold of 1,000


def log_frames(file: Path) -> int:
    """The frames the log file has held at most (SQLite reuses the file from its start after a restart)."""
    return Path(f"{file}-wal").stat().st_size // (PAGE + 24)


def fill(engine: Engine, commits: int = COMMITS) -> None:
    with write(engine) as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS filler (body BLOB)"))
    for _ in range(commits):
        with write(engine) as connection:
            connection.execute(text("INSERT INTO filler VALUES (randomblob(3000))"))


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[Path, Engine]]:
    file = tmp_path / "katsched.db"
    engine = build_engine(f"sqlite:///{file}", wal_autocheckpoint_pages=BACKSTOP_PAGES)
    yield file, engine
    engine.dispose()


@pytest.fixture
def checkpoint_connection(database: tuple[Path, Engine]) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(database[0], isolation_level=None)
    yield connection
    connection.close()


def test_commits_of_a_serving_engine_leave_the_log_to_the_checkpointer(
    database: tuple[Path, Engine], checkpoint_connection: sqlite3.Connection, tmp_path: Path
) -> None:
    file, engine = database
    fill(engine)
    assert log_frames(file) > 1_400  # no commit copied the log back and restarted it

    checkpointer = WalCheckpointer(file)
    frames, copied = checkpointer.checkpoint(checkpoint_connection)
    assert frames > 1_400 and copied == frames
    fill(engine, commits=1)  # the next writer finds the log fully copied and starts it again
    assert checkpoint_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1] < 10

    other = tmp_path / "default.db"  # against the default engine, whose commits checkpoint at 1,000 pages
    default = build_engine(f"sqlite:///{other}")
    fill(default)
    assert log_frames(other) < 1_100
    default.dispose()


def test_a_pass_repeats_while_the_log_is_not_fully_copied_but_only_a_few_times(
    database: tuple[Path, Engine], checkpoint_connection: sqlite3.Connection
) -> None:
    file, engine = database
    fill(engine, commits=10)
    reader = sqlite3.connect(file, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM filler").fetchone()  # holds its snapshot of the log
    fill(engine, commits=10)  # frames the reader's snapshot keeps from being copied
    checkpointer = WalCheckpointer(file, catch_up=3)
    frames, copied = checkpointer.checkpoint(checkpoint_connection)
    assert copied < frames
    assert checkpointer.passes == 3
    reader.execute("COMMIT")
    reader.close()
    assert checkpointer.checkpoint(checkpoint_connection)[1] == frames
    assert checkpointer.passes == 4


def test_a_pass_looks_at_the_log_only_when_its_file_changed(
    database: tuple[Path, Engine], checkpoint_connection: sqlite3.Connection
) -> None:
    file, engine = database
    fill(engine, commits=5)
    checkpointer = WalCheckpointer(file)
    assert checkpointer.checkpoint_or_log(checkpoint_connection)
    assert checkpointer.passes == 1
    assert checkpointer.checkpoint_or_log(checkpoint_connection)  # an idle database: not even a PRAGMA
    assert checkpointer.passes == 1
    fill(engine, commits=1)
    assert checkpointer.checkpoint_or_log(checkpoint_connection)
    assert checkpointer.passes == 2


def test_a_failed_checkpoint_is_logged_and_the_next_pass_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_text("not a database " * 100)
    checkpointer = WalCheckpointer(not_a_database)
    connection = sqlite3.connect(not_a_database, isolation_level=None)
    with caplog.at_level(logging.WARNING, logger="katsched.store"):
        assert checkpointer.checkpoint_or_log(connection) is False
    connection.close()
    assert f"wal_checkpoint_failed file={not_a_database} error=file is not a database" in caplog.text


def test_the_checkpointer_starts_and_stops_as_a_component(database: tuple[Path, Engine]) -> None:
    checkpointer = WalCheckpointer(database[0], interval=0.01)
    assert not checkpointer.alive()
    checkpointer.start()
    assert checkpointer.alive()
    assert checkpointer.stop(timeout=5.0)
    assert not checkpointer.alive()


@pytest.mark.parametrize(
    ("url", "checkpointed"),
    [
        ("sqlite:///katsched.db", True),
        ("sqlite:///:memory:", False),
        ("postgresql://postgres@127.0.0.1/katsched", False),
    ],
)
def test_only_a_sqlite_file_gets_a_checkpointer(url: str, checkpointed: bool) -> None:
    settings = Settings.model_validate({"database": {"url": url}})
    assert (wiring.wal_checkpointer(settings) is not None) is checkpointed
