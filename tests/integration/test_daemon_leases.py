"""Several daemons on one PostgreSQL database run the once-only jobs (stalled-task sweeps, retention,
re-ranking, new-plugin enumeration) on one daemon at a time, through the lease row. SIGKILL the holder:
another daemon holds the lease within twice its duration and sweeps the stalled tasks; a clean stop hands
it over at once.

Real processes on a real database; which daemon runs what is read from each daemon's heartbeat row (its job
counters and the leases it holds), which is what `katsched status` shows."""

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from katsched.core.models import TaskStatus
from katsched.store.daemon_state import DaemonStateStore
from katsched.store.engine import build_engine
from katsched.store.leases import SqlJobLeases
from katsched.store.tables import tasks
from katsched.wiring import ONCE_ONLY_JOBS, ONCE_ONLY_LEASE
from tests.conftest import scratch_postgres
from tests.contract.kat_fake_server import KatFakeServer
from tests.integration.support import queued_boefje_rows
from tests.integration.test_daemon_lifecycle import DaemonProcess, wait_until, write_config

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

LEASE = 3  # seconds: the shortest lease the settings allow, renewed every second
FLEET = 3
STARTUP = 180.0  # three interpreters importing everything at once on a shared two-core machine


@pytest.fixture
def database() -> Iterator[str]:
    with scratch_postgres("katsched_leases") as url:
        yield url


@pytest.fixture
def engine(database: str) -> Iterator[Engine]:
    engine = build_engine(database)
    yield engine
    engine.dispose()


def config(home: Path, database: str, kat: KatFakeServer) -> Path:
    home.mkdir()
    return write_config(
        home / "config.toml",
        f"""
[database]
url = "{database}"
[api]
enabled = false
[katalogus]
url = "{kat.katalogus_url}"
[octopoes]
url = "{kat.octopoes_url}"
[recurring]
interval = 1
sweep_interval = 1
prune_interval = 1
metrics_interval = 1
jitter = 0
[cluster]
lease_duration = {LEASE}
""",
    )


def instance_id(daemon: DaemonProcess) -> str:
    return f"{socket.gethostname()}:{daemon.process.pid}"


def holder(engine: Engine) -> str | None:
    """Who holds the once-only lease now (an expired row holds nothing)."""
    now = datetime.now(UTC)
    leases = SqlJobLeases(engine).leases()
    return next((row.holder for row in leases if row.name == ONCE_ONLY_LEASE and row.expires_at > now), None)


def components(engine: Engine) -> dict[str, dict[str, Any]]:
    """Each daemon's heartbeat components, by instance id."""
    return {state.id: state.components for state in DaemonStateStore(engine).instances()}


def once_only_runs(state: dict[str, Any]) -> dict[str, int]:
    return {name: job["runs"] for name, job in state.get("jobs", {}).items() if name in ONCE_ONLY_JOBS}


def skipped_sweeps(state: dict[str, Any]) -> int:
    return int(state.get("jobs", {}).get("lease_sweep", {}).get("skipped", 0))


def stalled_task(engine: Engine) -> str:
    """A task popped an hour ago by a runner that never started it: the sweep queues it again."""
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    [row] = queued_boefje_rows(1, long_ago)
    row["status"] = TaskStatus.DISPATCHED.value
    with engine.begin() as connection:
        connection.execute(insert(tasks), [row])
    return str(row["id"])


def status(engine: Engine, task_id: str) -> str:
    with engine.connect() as connection:
        return str(connection.execute(select(tasks.c.status).where(tasks.c.id == task_id)).scalar_one())


def only_the_holder_runs_the_once_only_jobs(engine: Engine, held_by: str, others: list[str]) -> None:
    """The holder says so in its heartbeat and has swept; every other daemon has skipped sweeps (so it was
    asked to run them) and has run none of the once-only jobs."""

    def reported() -> bool:
        states = components(engine)
        mine = states.get(held_by, {})
        return (
            mine.get("leases") == [ONCE_ONLY_LEASE]
            and once_only_runs(mine).get("lease_sweep", 0) > 0
            and all(skipped_sweeps(states.get(other, {})) >= 2 for other in others)
        )

    wait_until(reported, "the holder has swept and every other daemon has skipped the sweep twice")
    states = components(engine)
    for other in others:
        assert states[other]["leases"] == []
        assert set(once_only_runs(states[other]).values()) == {0}, (other, states[other]["jobs"])


def ready_with_holder(daemons: list[DaemonProcess], engine: Engine) -> tuple[dict[str, DaemonProcess], str]:
    """Every daemon ready, by instance id, and the one that holds the once-only lease."""
    for daemon in daemons:
        daemon.wait_for("daemon_ready", timeout=STARTUP)
    by_id = {instance_id(daemon): daemon for daemon in daemons}
    wait_until(lambda: holder(engine) in by_id, "one of the daemons holds the once-only lease")
    first = holder(engine)
    assert first is not None
    return by_id, first


def test_one_daemon_runs_the_once_only_jobs_and_another_takes_them_over_when_it_is_killed(
    tmp_path: Path, database: str, engine: Engine, kat: KatFakeServer
) -> None:
    daemons = [DaemonProcess(config(tmp_path / f"d{n}", database, kat), tmp_path) for n in range(FLEET)]
    try:
        by_id, first = ready_with_holder(daemons, engine)
        only_the_holder_runs_the_once_only_jobs(engine, first, [i for i in by_id if i != first])

        by_id[first].process.kill()
        killed_at = time.monotonic()
        by_id[first].wait()
        task = stalled_task(engine)
        survivors = [i for i in by_id if i != first]
        wait_until(lambda: holder(engine) in survivors, "a surviving daemon holds the lease", 4 * LEASE)
        assert time.monotonic() - killed_at < 2 * LEASE
        second = holder(engine)
        assert second is not None
        wait_until(lambda: status(engine, task) == TaskStatus.QUEUED.value, "the new holder swept the task")
        assert f"lease_acquired lease={ONCE_ONLY_LEASE} holder={second}" in by_id[second].log()
        assert "task_requeued" in by_id[second].wait_for(f"task_id={task}")
        [third] = [i for i in survivors if i != second]
        only_the_holder_runs_the_once_only_jobs(engine, second, [third])
        assert f"task_id={task}" not in by_id[third].log()
    finally:
        for daemon in daemons:
            daemon.kill()


def test_a_clean_stop_hands_the_lease_over_without_waiting_for_it_to_expire(
    tmp_path: Path, database: str, engine: Engine, kat: KatFakeServer
) -> None:
    daemons = [DaemonProcess(config(tmp_path / f"d{n}", database, kat), tmp_path) for n in range(2)]
    try:
        by_id, first = ready_with_holder(daemons, engine)
        [other] = [i for i in by_id if i != first]
        by_id[first].signal(15)
        assert by_id[first].wait() == 0
        stopped_at = time.monotonic()
        assert f"lease_released lease={ONCE_ONLY_LEASE} holder={first}" in by_id[first].log()
        assert components(engine)[first]["leases"] == []
        wait_until(lambda: holder(engine) == other, "the other daemon holds the lease", 4 * LEASE)
        # Released, not expired: the next renewal (every third of the lease) takes it.
        assert time.monotonic() - stopped_at < LEASE
    finally:
        for daemon in daemons:
            daemon.kill()
