"""`katsched status`: one frame at 80 and 160 columns, and JSON, over a populated store."""

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import Engine

from katsched.cli.dashboard import as_json, frame, heartbeat_fresh, snapshot
from katsched.cli.panels import age, sparkline
from katsched.config import Settings
from katsched.core.models import TaskStatus
from katsched.core.ports import PoppedBy, TaskDraft
from katsched.store.daemon_state import DaemonState, DaemonStateStore
from katsched.store.engine import build_engine
from katsched.store.maintenance import sweep_expired_leases
from katsched.store.queue import SqlTaskQueue
from katsched.store.schedules import SqlScheduleStore
from katsched.testing import FakeClock

pytestmark = pytest.mark.integration

INTERVAL = 600  # seconds between the daemon's heartbeats, in the configs `katsched status` reads here
ORGANISATIONS = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]


def boefje(ooi: str, org: str) -> dict[str, Any]:
    return {"boefje": {"id": "dns-records"}, "input_ooi": ooi, "organization": org}


def components(now: datetime) -> dict[str, Any]:
    def soon(seconds: int) -> str:
        return (now + timedelta(seconds=seconds)).isoformat()

    return {
        "supervisor": {
            "api": {"state": "running", "restarts": 0, "error": None},
            "recurring": {"state": "running", "restarts": 1, "error": "its thread ended"},
        },
        "consumers": {
            "scan_profile_mutations": {"state": "connected", "error": None, "acked": 1204},
            "raw_file_received": {"state": "disconnected", "error": "connection refused", "acked": 0},
        },
        "services": {"database": "ok", "katalogus": "ok", "octopoes": "down", "bytes": "not configured"},
        "jobs": {
            "lease_sweep": {"next_run_at": soon(12), "instances": 1, "runs": 300, "failures": 0},
            "boefje.reschedule": {
                "next_run_at": soon(31),
                "instances": 6,
                "runs": 900,
                "failures": 2,
                "last_error": "katalogus GET /v1/organisations/acme/plugins: 503",
            },
            "retention": {"next_run_at": soon(2880), "instances": 1, "runs": 3, "failures": 0},
        },
        "organisations": 6,
        "swept_total": 3,
        "unplanned": {"no_boefje_for_type": 3, "organisation_unknown": 12},
    }


@pytest.fixture
def database(any_engine: Engine, any_database_url: str) -> str:
    """Tasks pushed over the last 40 minutes, some popped and finished, due schedules, a live daemon: on a
    SQLite file and on PostgreSQL (the URL)."""
    engine = any_engine
    now = datetime.now(UTC)
    clock = FakeClock(now - timedelta(minutes=40))
    queue = SqlTaskQueue(engine, clock)
    for i in range(120):
        org = ORGANISATIONS[i % 6] if i % 3 else "acme"
        queue.push(TaskDraft("boefje", org, 10, boefje(f"Hostname|internet|h{i}.example", org)))
        clock.advance(seconds=15)
    queue.push(TaskDraft("report", "acme", 5, {"report_recipe_id": "r1", "organisation_id": "acme"}))
    popped = queue.pop("boefje", limit=20, popped_by=PoppedBy("10.0.0.7", "boefje-runner/1.0"))
    popped += queue.pop("boefje", limit=10, popped_by=PoppedBy("cli", "katsched"))
    for task in popped[:20]:
        queue.set_status(task.id, TaskStatus.RUNNING)
    for task in popped[:12]:
        queue.set_status(task.id, TaskStatus.COMPLETED)
    for task in popped[12:15]:
        queue.set_status(task.id, TaskStatus.FAILED, "boefje crashed" if task != popped[14] else None)
    schedules = SqlScheduleStore(engine, clock)
    for i in range(4):
        deadline = now - timedelta(minutes=i * 9)
        schedules.create("boefje", "acme", boefje(f"o{i}", "acme"), f"{i:032d}", deadline_at=deadline)
    states = DaemonStateStore(engine)
    started = now - timedelta(hours=3)
    state = DaemonState("host1:4242", "host1", 4242, "0.1.0", started, now, components=components(now))
    states.register(state)
    return any_database_url


@pytest.fixture
def settings(database: str) -> Settings:
    return Settings.model_validate({"database": {"url": database}})


def render(settings: Settings, width: int, height: int = 24, now: datetime | None = None) -> str:
    engine = build_engine(settings.database.url)
    try:
        overview = snapshot(engine, settings, now or datetime.now(UTC))
    finally:
        engine.dispose()
    console = Console(width=width, height=height, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(frame(overview, settings, width, height))
    return console.export_text()


def assert_the_content(text: str) -> None:
    for expected in (
        "host1:4242 up 3h",  # the daemon and its heartbeat
        "boefje",
        "normalizer",
        "report",
        "pushed/min",
        "popped/min",
        "hour 121",  # 120 boefje pushes and one report in the last hour
        "hour 30",  # 30 pops
        "completed 12",
        "failed 3",
        "acme 31",  # top organisation by queue size: 40 pushed, 9 of them popped
        "4 due",
        "3 overdue",  # due for more than 5 minutes
        "lease_sweep",
        "boefje.reschedule x6",
        "katalogus GET",
        "octopoes down",
        "scan_profile_mutations connected",
        "raw_file_received disconnected",
        "recurring running (1 restart)",
        "10.0.0.7",  # the runner holding the running tasks
        "boefje crashed 2",  # why tasks failed in the last hour
        "organisation_unknown 12",  # why events planned nothing
    ):
        assert expected in text, f"{expected!r} not in the frame:\n{text}"


def test_one_frame_at_80_columns_fits_a_terminal(settings: Settings) -> None:
    text = render(settings, 80)
    assert_the_content(" ".join(text.split()))
    lines = text.rstrip("\n").splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert len(lines) <= 24
    assert "│" not in text  # stacked, no side-by-side panels
    queue_line = next(line for line in lines if line.startswith("boefje"))
    assert queue_line.split()[1:4] == ["90", "10", "5"]  # queued, dispatched, running
    assert "runners: 10.0.0.7 0d/5r oldest 10m" in text and "cli 10d/0r" in text
    assert "failed, last hour: boefje crashed 2 · no reason given 1" in text


def test_a_tall_terminal_gets_longer_lists(settings: Settings) -> None:
    text = render(settings, 200, 50)
    lines = text.rstrip("\n").splitlines()
    assert 24 < len(lines) <= 50 and max(len(line) for line in lines) <= 200
    flat = " ".join(text.replace("│", " ").split())
    assert_the_content(flat)
    assert "stark 15" in flat and "stark" not in render(
        settings, 80
    )  # the fifth queue, not only the top four
    assert "10.0.0.7 boefje-runner/1.0 0d/5r oldest 10m" in flat  # runners with their user agent
    assert re.search(r"│ boefje crashed +2 │", text) and re.search(r"│ no reason given +1 │", text)  # a table
    assert re.search(r"│ organisation_unknown +12 │", text)


def test_one_frame_at_160_columns_uses_the_width(settings: Settings) -> None:
    text = render(settings, 160)
    assert_the_content(" ".join(text.replace("│", " ").split()))
    lines = text.splitlines()
    assert max(len(line) for line in lines) > 120
    assert any(line.count("│") >= 4 for line in lines)  # two panels side by side


def test_a_silent_daemon_is_reported(settings: Settings) -> None:
    engine = build_engine(settings.database.url)
    DaemonStateStore(engine).heartbeat("host1:4242", datetime.now(UTC) - timedelta(minutes=5), {})
    engine.dispose()
    assert "host1:4242 silent for 5m" in render(settings, 80)


def test_several_daemons_are_listed_with_their_leases_and_a_silent_one_flagged(settings: Settings) -> None:
    engine = build_engine(settings.database.url)
    now, states = datetime.now(UTC), DaemonStateStore(engine)
    leases = {"leases": ["lease_sweep", "retention"]}
    states.register(
        DaemonState("host2:77", "host2", 77, "0.1.0", now, now - timedelta(seconds=4), None, leases)
    )
    killed = now - timedelta(minutes=7)
    states.register(DaemonState("host3:9", "host3", 9, "0.0.9", now - timedelta(days=1), killed))
    states.register(DaemonState("host4:5", "host4", 5, "0.1.0", killed, killed, killed))  # stopped
    try:
        overview = snapshot(engine, settings, now)
    finally:
        engine.dispose()

    compact = render(settings, 80, now=now)
    assert "3 daemons, 1 silent" in compact.splitlines()[0]  # the stopped one is not counted
    assert re.search(
        r"daemons: host1:4242 beat \d+s · host2:77 beat 4s 2 leases · host3:9 silent 7m", compact
    )
    tall = " ".join(render(settings, 200, 50, now=now).replace("│", " ").split())
    assert "daemon host1:4242" in tall  # whose jobs and services the right panel shows
    assert "host2:77 0.1.0 up 0s beat 4s lease_sweep,retention" in tall
    assert "host3:9 0.0.9 up 1d00h silent 7m00s -" in tall and "host4" not in tall

    document = {daemon["id"]: daemon for daemon in as_json(overview, settings)["daemons"]}
    assert {name: (d["alive"], d["stale"], d["leases"]) for name, d in document.items()} == {
        "host1:4242": (True, False, []),
        "host2:77": (True, False, ["lease_sweep", "retention"]),
        "host3:9": (False, True, []),
        "host4:5": (False, False, []),
    }


def test_the_exit_code_of_status_once_asks_whether_any_daemon_is_alive(settings: Settings) -> None:
    engine = build_engine(settings.database.url)
    now, states = datetime.now(UTC), DaemonStateStore(engine)
    killed = now - timedelta(minutes=7)
    states.register(DaemonState("host3:9", "host3", 9, "0.1.0", killed, killed))
    try:
        assert heartbeat_fresh(snapshot(engine, settings, now), settings)  # host1 beats, host3 is silent
        states.mark_stopped("host1:4242", now, {})
        assert not heartbeat_fresh(snapshot(engine, settings, now), settings)  # only a silent one left
    finally:
        engine.dispose()


def status(url: str, tmp_path: Path, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "status.toml"
    # a long heartbeat interval: on a busy test machine the fixture's heartbeat must not go stale mid-test
    config.write_text(f'[database]\nurl = "{url}"\n[recurring]\nmetrics_interval = {INTERVAL}\n')
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "24"}
    command = [sys.executable, "-m", "katsched", "status", "--config", str(config), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)


def run_status(database: str, tmp_path: Path, *args: str, columns: int = 80) -> str:
    result = status(database, tmp_path, *args, columns=columns)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_status_once_prints_one_frame(database: str, tmp_path: Path) -> None:
    for columns in (80, 160):
        output = run_status(database, tmp_path, "--once", columns=columns)
        assert_the_content(" ".join(output.replace("│", " ").split()))


def test_status_json_is_for_scripts(database: str, tmp_path: Path) -> None:
    document = json.loads(run_status(database, tmp_path, "--json"))
    loads = {load["scheduler_id"]: load for load in document["schedulers"]}
    boefje = loads["boefje"]
    assert (boefje["queued"], boefje["dispatched"], boefje["running"]) == (90, 10, 5)
    assert sum(document["pushed_per_minute"]) == 121 and len(document["pushed_per_minute"]) == 60
    assert document["outcomes_24h"] == {"cancelled": 0, "completed": 12, "failed": 3}
    assert document["top_organisations"][0] == ["acme", 31]
    assert document["schedules"]["due"] == 4
    assert document["daemons"][0]["alive"] is True


def test_status_without_a_database_says_so(tmp_path: Path) -> None:
    config = tmp_path / "status.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "absent.db"}"\n')
    command = [sys.executable, "-m", "katsched", "status", "--once", "--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 7
    assert "no database at" in result.stderr
    assert not (tmp_path / "absent.db").exists()


def test_sparkline_and_ages() -> None:
    assert sparkline([0, 1, 4, 8], 4) == " ▁▄█"
    assert sparkline([5, 0, 0], 2) == "  "
    assert sparkline(list(range(1, 101)), 3) == "███"  # only the newest values, scaled among themselves
    assert [age(s) for s in (5, 185, 7800, 90000)] == ["5s", "3m05s", "2h10m", "1d01h"]


def test_status_once_fails_when_the_heartbeat_is_older_than_three_intervals(
    settings: Settings, database: str, tmp_path: Path
) -> None:
    engine = build_engine(settings.database.url)
    beat = datetime.now(UTC) - timedelta(seconds=3 * INTERVAL + 60)
    DaemonStateStore(engine).heartbeat("host1:4242", beat, components(beat))
    engine.dispose()
    silent = status(database, tmp_path, "--once")
    assert silent.returncode == 1
    assert "host1:4242 silent for" in silent.stdout  # the frame is still printed


def test_status_on_both_dialects_shows_holders_and_failure_reasons(
    any_engine: Engine, any_database_url: str, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    queue = SqlTaskQueue(any_engine, FakeClock(now - timedelta(minutes=30)))
    for i in range(6):
        queue.push(TaskDraft("boefje", "acme", 5, boefje(f"Hostname|internet|h{i}", "acme")))
    held = queue.pop("boefje", limit=4, popped_by=PoppedBy("10.1.2.3", "runner/2"))
    queue.set_status(held[0].id, TaskStatus.RUNNING)
    queue.set_status(held[1].id, TaskStatus.FAILED, "exit code 1")
    sweep_expired_leases(any_engine, "boefje", now, timedelta(minutes=10), timedelta(hours=1))
    DaemonStateStore(any_engine).register(DaemonState("h:1", "h", 1, "0.1.0", now, now, components={}))

    result = status(any_database_url, tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["outcomes_24h"] == {"cancelled": 0, "completed": 0, "failed": 3}
    assert document["swept_24h"] == 2  # the two dispatched ones whose lease ran out
    assert document["failures_1h"] == [["lease_expired", 2], ["exit code 1", 1]]
    assert [(h["address"], h["agent"], h["running"]) for h in document["holds"]] == [
        ("10.1.2.3", "runner/2", 1)
    ]
    once = status(any_database_url, tmp_path, "--once")
    assert once.returncode == 0, once.stderr
    assert "runners: 10.1.2.3 0d/1r" in once.stdout
