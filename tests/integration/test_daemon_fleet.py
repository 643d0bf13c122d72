"""Daemons started together migrate one after the other (issue 16): on PostgreSQL a transaction-level
advisory lock, on SQLite the write lock taken by BEGIN IMMEDIATE. The second one waits, then finds the
schema current."""

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import scratch_postgres
from tests.integration.test_daemon_lifecycle import HEAD, DaemonProcess, free_port, write_config

pytestmark = pytest.mark.integration

FLEET = 4
STARTUP = 180.0  # four interpreters importing everything at once on a shared two-core machine


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """An empty database of its own: the session's database is already migrated."""
    with scratch_postgres("katsched_fleet") as url:
        yield url


def versions(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_four_daemons_started_together_on_an_empty_postgres_all_become_ready(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    daemons = []
    for n in range(FLEET):
        home = tmp_path / f"d{n}"
        home.mkdir()
        config = write_config(
            home / "config.toml",
            f'[database]\nurl = "{fresh_postgres_url}"\n[api]\nport = {free_port()}\n',
        )
        daemons.append(DaemonProcess(config, home))
    try:
        for daemon in daemons:
            assert f"revision={HEAD}" in daemon.wait_for("daemon_ready", timeout=STARTUP)
        assert all(daemon.process.poll() is None for daemon in daemons)
        assert versions(fresh_postgres_url) == [HEAD]
        upgraded = [daemon for daemon in daemons if f"schema_upgraded from=None to={HEAD}" in daemon.log()]
        assert len(upgraded) == 1, "exactly one daemon applies the migrations; the others find them applied"
    finally:
        for daemon in daemons:
            daemon.kill()


def test_upgrades_started_together_on_a_new_sqlite_file_all_succeed(tmp_path: Path) -> None:
    """On SQLite a second daemon on one file is refused, so the racers here are `katsched db upgrade`s."""
    database = tmp_path / "katsched.db"
    config = write_config(tmp_path / "config.toml", f'[database]\nurl = "sqlite:///{database}"\n')
    command = [sys.executable, "-m", "katsched", "db", "upgrade", "--config", str(config)]
    racers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(FLEET)
    ]
    results = [racer.communicate(timeout=60) for racer in racers]
    assert [racer.returncode for racer in racers] == [0] * FLEET, results
    assert all(f"database at revision {HEAD}" in out for out, _ in results)
    assert versions(f"sqlite:///{database}") == [HEAD]
