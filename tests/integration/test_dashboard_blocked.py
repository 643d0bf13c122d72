"""`katsched status` counts the planners' refusals of the last hour (the "blocked" reasons), on SQLite and
PostgreSQL; `katsched explain` tells which objects they are about."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from katsched.cli.dashboard import blocked_last_hour
from katsched.cli.panels import blocked
from katsched.core.ports import DecisionRecord
from katsched.store.decisions import SqlDecisionLog

pytestmark = pytest.mark.integration


def status(engine: Engine, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{engine.url.render_as_string(hide_password=False)}"\n')
    command = [sys.executable, "-m", "katsched", "status", *args, "--config", str(config)]
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env)


def decide_some(engine: Engine, now: datetime) -> None:
    def decided(subject: str, action: str, reason: str, ago: timedelta = timedelta(0)) -> DecisionRecord:
        return DecisionRecord("acme", subject, "dns-records", "boefje", action, reason, now - ago)

    SqlDecisionLog(engine).record(
        [decided(f"Hostname|internet|h{i}", "skip", "scan_level_too_low") for i in range(3)]
        + [decided("Hostname|internet|d", "skip", "plugin_disabled")]
        + [decided("Hostname|internet|old", "skip", "plugin_disabled", timedelta(hours=2))]
        + [decided("Hostname|internet|w", "skip", "within_grace_period")]  # waiting is not blocked
        + [decided("Hostname|internet|r", "run", "not_active")]
    )


def test_the_blocked_reasons_of_the_last_hour_are_counted(engine: Engine) -> None:
    now = datetime.now(UTC)
    decide_some(engine, now)
    counts = blocked_last_hour(engine, now)
    assert counts == {"scan_level_too_low": 3, "plugin_disabled": 1}
    assert blocked(counts).plain == "blocked (last hour): scan_level_too_low 3 · plugin_disabled 1"
    assert blocked({}).plain == "blocked (last hour): none"


def test_status_shows_them(engine: Engine, tmp_path: Path) -> None:
    decide_some(engine, datetime.now(UTC))
    as_json = status(engine, tmp_path, "--json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["blocked_last_hour"] == {"scan_level_too_low": 3, "plugin_disabled": 1}
    once = status(engine, tmp_path, "--once")
    assert once.returncode == 1, once.stderr  # no daemon has sent a heartbeat: the frame, then exit 1
    assert "blocked (last hour): scan_level_too_low 3 · plugin_disabled 1" in once.stdout
