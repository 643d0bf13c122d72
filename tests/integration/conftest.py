import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from katsched.core.models import Organisation
from katsched.store.engine import build_engine
from katsched.store.migrate import upgrade
from tests.conftest import empty_postgres
from tests.contract.kat_fake_server import KatFakeServer
from tests.integration.support import HOSTNAME, Run
from tests.integration.test_intake_publish import Broker, scratch_queue


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "katsched.db"}"\n')
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_config(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A config file naming an empty, migrated database: the test's own SQLite file, and PostgreSQL. A CLI
    test module that touches the database uses it as its `config_file`."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'katsched.db'}"
        engine = build_engine(url)
        upgrade(engine)
        engine.dispose()
    else:
        empty_postgres(request.getfixturevalue("postgres_engine"))
        url = request.getfixturevalue("postgres_url")
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{url}"\n')
    return path


@pytest.fixture
def katsched(config_file: Path) -> Run:
    """Runs the real command line, as a user would, against the test's own SQLite file."""

    def run(
        *args: str, stdin: str | None = None, config: bool = True, columns: int = 80
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "katsched", *args]
        if config:
            command += ["--config", str(config_file)]
        env = {**os.environ, "COLUMNS": str(columns)}
        return subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=60, check=False, env=env
        )

    return run


@pytest.fixture
def kat() -> Iterator[KatFakeServer]:
    """The loopback KAT services with one organisation that has the dns-records boefje."""
    with KatFakeServer() as server:
        server.add_organisation(Organisation(id="acme", name="Acme"))
        server.add_plugin("acme", HOSTNAME)
        yield server


@pytest.fixture
def broker() -> Broker:
    return Broker()


@pytest.fixture
def mutations(broker: Broker) -> Iterator[str]:
    """A scratch queue on the real broker, deleted afterwards."""
    yield from scratch_queue(broker)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database for commands that must work on both dialects: a SQLite file, and the
    test run's PostgreSQL database (emptied)."""
    if request.param == "postgres":
        empty_postgres(request.getfixturevalue("postgres_engine"))
        yield request.getfixturevalue("postgres_url")
        return
    url = f"sqlite:///{tmp_path / 'katsched.db'}"
    engine = build_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url


@pytest.fixture
def any_engine(any_database_url: str) -> Iterator[Engine]:
    """The same database as `any_database_url`, for arranging rows and checking them afterwards."""
    engine = build_engine(any_database_url)
    yield engine
    engine.dispose()


def write_config(tmp_path: Path, database_url: str, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "{database_url}"\n{extra}')
    return path
