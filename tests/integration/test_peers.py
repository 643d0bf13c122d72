"""Daemons as peers, through real processes: on SQLite a second daemon on one file is refused naming the
holder, while the CLI and `katsched api` keep working beside the first; a daemon killed with SIGKILL never
blocks the next start. On PostgreSQL several daemons run, and `status --json`, `status --once` and each one's
`/health` list them all, a killed one flagged stale."""

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from katsched.store.engine import build_engine
from katsched.store.tables import daemon_state, job_leases
from tests.conftest import empty_postgres
from tests.integration.test_daemon_lifecycle import DaemonProcess, free_port, http_json, wait_until
from tests.integration.test_startup_failures import assert_one_line_failure, start

pytestmark = pytest.mark.integration

HOSTNAME = socket.gethostname()
DNS = json.dumps(
    {"boefje": {"id": "dns-records"}, "input_ooi": "Hostname|internet|example.com", "organization": "acme"}
)
STARTUP = 90.0  # interpreters importing everything at once on a shared two-core machine


def write_config(home: Path, url: str, port: int, extra: str = "") -> Path:
    path = home / "config.toml"
    path.write_text(f'[database]\nurl = "{url}"\n[api]\nport = {port}\n{extra}')
    return path


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "katsched", *args, "--config", str(config)]
    env = {**os.environ, "COLUMNS": "100", "LINES": "24"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env)


def status_json(config: Path) -> dict[str, Any]:
    result = cli(config, "status", "--json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def peers_of(health: dict[str, Any]) -> dict[str, bool]:
    """/health's peers: id → stale."""
    return {peer["id"]: peer["stale"] for peer in health["additional"]["peers"]}


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.kill()


def test_a_second_daemon_on_one_sqlite_file_is_refused_and_the_cli_works_beside_the_first(
    tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    database = tmp_path / "katsched.db"
    config = write_config(tmp_path, f"sqlite:///{database}", free_port())
    first = DaemonProcess(config, tmp_path)
    daemons.append(first)
    first.wait_for("daemon_ready", timeout=STARTUP)

    # The same config, so the same port too: the database is named first, before the port or the store.
    second = start("daemon", config)
    held = f"database {database} is held by the daemon on {HOSTNAME} (pid {first.process.pid}, since "
    assert held in second.stderr, second.stderr
    assert_one_line_failure(
        second, "one daemon per SQLite file (stop that one first, or use PostgreSQL for several daemons)"
    )

    pushed = cli(config, "queue", "push", "-s", "boefje", "-o", "acme", "--data", DNS)
    assert pushed.returncode == 0, pushed.stderr
    listed = cli(config, "queue", "ls", "--json")
    assert listed.returncode == 0 and len(json.loads(listed.stdout)["results"]) == 1, listed.stderr
    once = cli(config, "status", "--once")
    assert once.returncode == 0, once.stderr  # the daemon's heartbeat is fresh
    assert f"{HOSTNAME}:{first.process.pid} up" in once.stdout

    # `katsched api` serves beside the daemon (it plans nothing) and lists it in /health.
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "katsched", "api", "--config", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = wait_for_health(port)
        assert health["additional"]["instance"] is None
        assert peers_of(health) == {f"{HOSTNAME}:{first.process.pid}": False}
    finally:
        api.terminate()
        assert api.wait(30) == 0
    assert first.process.poll() is None


def test_a_daemon_killed_with_sigkill_never_blocks_the_next_start(
    tmp_path: Path, daemons: list[DaemonProcess]
) -> None:
    url = f"sqlite:///{tmp_path / 'katsched.db'}"
    config = write_config(tmp_path, url, free_port(), "[cluster]\nlease_duration = 3600\n")
    first = DaemonProcess(config, tmp_path)
    daemons.append(first)
    first.wait_for("daemon_ready", timeout=STARTUP)
    first_id = f"{HOSTNAME}:{first.process.pid}"
    wait_until(lambda: lease_holders(url) == {first_id}, "the first daemon holds the once-only jobs")
    first.process.kill()
    first.wait()

    second = DaemonProcess(config, tmp_path)
    daemons.append(second)
    second.wait_for("daemon_ready", timeout=STARTUP)
    second_id = f"{HOSTNAME}:{second.process.pid}"
    rows = {row["id"]: row for row in status_json(config)["daemons"]}
    # The file is held by one daemon only, so the killed one is known dead: marked stopped, not silent,
    # and its hour-long lease on the once-only jobs is freed for the new daemon at once.
    dead, alive = rows[first_id], rows[second_id]
    assert (dead["alive"], dead["stale"], dead["stopped_at"] is not None) == (False, False, True)
    assert (alive["alive"], alive["stale"], alive["stopped_at"]) == (True, False, None)
    wait_until(lambda: lease_holders(url) == {second_id}, "the new daemon holds the once-only jobs")


def lease_holders(url: str) -> set[str]:
    engine = build_engine(url)
    try:
        with engine.connect() as connection:
            return set(connection.execute(select(job_leases.c.holder)).scalars())
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_two_daemons_on_postgres_are_peers_and_a_killed_one_goes_stale(
    tmp_path: Path, postgres_engine: Engine, postgres_url: str, daemons: list[DaemonProcess]
) -> None:
    empty_postgres(postgres_engine)
    ports, configs = [], []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        ports.append(free_port())
        configs.append(write_config(tmp_path / name, postgres_url, ports[-1]))
        daemons.append(DaemonProcess(configs[-1], tmp_path / name))
    for daemon in daemons:
        daemon.wait_for("daemon_ready", timeout=STARTUP)
    ids = [f"{HOSTNAME}:{daemon.process.pid}" for daemon in daemons]

    listed = {row["id"]: (row["alive"], row["stale"]) for row in status_json(configs[0])["daemons"]}
    assert listed == {ids[0]: (True, False), ids[1]: (True, False)}
    for port, instance in zip(ports, ids, strict=True):
        health = http_json(f"http://127.0.0.1:{port}/health")
        assert health["healthy"] is True and health["additional"]["instance"] == instance
        assert peers_of(health) == {ids[0]: False, ids[1]: False}
    assert "2 daemons" in cli(configs[1], "status", "--once").stdout

    daemons[1].process.kill()  # it never says it stopped: its row stays, and its heartbeat ages
    daemons[1].wait()
    long_ago = datetime.now(UTC) - timedelta(minutes=10)  # the dead daemon's clock moves on without it
    with postgres_engine.begin() as connection:
        connection.execute(
            update(daemon_state).where(daemon_state.c.id == ids[1]).values(heartbeat_at=long_ago)
        )

    assert peers_of(http_json(f"http://127.0.0.1:{ports[0]}/health")) == {ids[0]: False, ids[1]: True}
    rows = {row["id"]: row for row in status_json(configs[0])["daemons"]}
    assert (rows[ids[1]]["alive"], rows[ids[1]]["stale"], rows[ids[1]]["stopped_at"]) == (False, True, None)
    once = cli(configs[0], "status", "--once")
    assert once.returncode == 0, once.stderr  # one daemon alive: the scheduler runs
    assert "2 daemons, 1 silent" in once.stdout and f"{ids[1]} silent 10m" in once.stdout


def wait_for_health(port: int) -> dict[str, Any]:
    answer: dict[str, Any] = {}

    def answers() -> bool:
        try:
            answer.update(http_json(f"http://127.0.0.1:{port}/health"))
        except OSError:
            return False
        return True

    wait_until(answers, f"katsched api answers on port {port}", STARTUP)
    return answer
