import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from katsched.core.models import Organisation
from tests.contract.kat_fake_server import KatFakeServer
from tests.integration.support import HOSTNAME, Run
from tests.integration.test_intake_publish import Broker, scratch_queue


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "katsched.db"}"\n')
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
