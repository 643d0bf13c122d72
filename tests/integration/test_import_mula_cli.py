"""`katsched db import-mula` as a process: the report (tables and --json), refusals, and an import killed with
SIGKILL halfway that a rerun finishes exactly as an uninterrupted one, into SQLite and into PostgreSQL."""

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from katsched.store.engine import build_engine
from katsched.store.tables import schedules, tasks
from tests.conftest import START, scratch_postgres
from tests.integration.test_import_mula import snapshot
from tests.mula_original import Original, create_schema, fill

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture(scope="module")
def original() -> Iterator[tuple[str, Original]]:
    with scratch_postgres("mula_original") as url:
        engine = create_engine(url)
        with engine.begin() as connection:
            create_schema(connection, "0010")
            contents = fill(connection, "0010", START, schedules=1000, tasks=10_000)
        engine.dispose()
        yield url, contents


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A katsched database URL of its own (the command creates and migrates it)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'katsched.db'}"
        return
    with scratch_postgres("katsched_import") as url:
        yield url


def config_for(tmp_path: Path, url: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(f'[database]\nurl = "{url}"\n')
    return path


def command(config: Path, source: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "katsched",
        "db",
        "import-mula",
        "--from",
        source,
        "--config",
        str(config),
        *extra,
    ]


def run(config: Path, source: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(config, source, *extra), capture_output=True, text=True, timeout=600, check=False
    )


def task_count(url: str) -> int:
    engine = build_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(tasks)).scalar_one())
    except Exception:  # the command under test has not created it yet
        return 0
    finally:
        engine.dispose()


def test_an_import_killed_halfway_and_rerun_equals_an_uninterrupted_one(
    original: tuple[str, Original], target: str, tmp_path: Path
) -> None:
    source, _ = original
    sqlite = nullcontext(f"sqlite:///{tmp_path / 'interrupted.db'}")
    with scratch_postgres("katsched_killed") if target.startswith("postgresql") else sqlite as other:
        interrupted = config_for(tmp_path, other, "interrupted.toml")
        killed = subprocess.Popen(
            command(interrupted, source, "--batch-size", "200", "--json"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while task_count(other) == 0 and time.monotonic() < deadline and killed.poll() is None:
            time.sleep(0.01)
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
        halfway = task_count(other)
        whole = run(config_for(tmp_path, target), source, "--json")
        assert whole.returncode == 0, whole.stderr
        total = sum(sum(by_status.values()) for by_status in json.loads(whole.stdout)["tasks"].values())
        assert 0 < halfway < total, "the import was killed in the middle of its tasks"
        rerun = run(interrupted, source, "--json")
        assert rerun.returncode == 0, rerun.stderr
        report = json.loads(rerun.stdout)
        assert report["already_present"]["tasks"] == halfway
        assert report["written"]["tasks"] == total - halfway
        assert snapshot(build_engine(other)) == snapshot(build_engine(target))


def test_the_report_lists_counts_reranking_and_skips(original: tuple[str, Original], tmp_path: Path) -> None:
    source, _ = original
    config = config_for(tmp_path, f"sqlite:///{tmp_path / 'k.db'}")
    shown = run(config, source, "--dry-run")
    assert shown.returncode == 0, shown.stderr
    said = " ".join(shown.stdout.split())  # as read, whatever the terminal's width
    assert "would import (dry run)" in said
    assert "re-ranked" in said and "FIFO creation timestamp" in said
    assert "hash_mismatch" in said and "never_queued" in said
    engine = build_engine(f"sqlite:///{tmp_path / 'k.db'}")
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(schedules)).scalar_one() == 0


def test_a_source_older_than_0008_is_refused_in_one_line(tmp_path: Path) -> None:
    with scratch_postgres("mula_old") as source:
        engine = create_engine(source)
        with engine.begin() as connection:
            create_schema(connection, "0008")
            connection.execute(text("UPDATE alembic_version SET version_num = '0006_add_jsonb_fields'"))
        engine.dispose()
        refused = run(config_for(tmp_path, f"sqlite:///{tmp_path / 'k.db'}"), source)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1
    assert "revision 0006_add_jsonb_fields, older than 0008" in refused.stderr


@pytest.mark.parametrize("source", ["sqlite:///scheduler.db", "not a url"])
def test_a_source_that_is_not_postgresql_is_refused(source: str, tmp_path: Path) -> None:
    refused = run(config_for(tmp_path, f"sqlite:///{tmp_path / 'k.db'}"), source)
    assert refused.returncode == 2 and "--from" in refused.stderr, refused.stderr


def test_an_unknown_in_flight_choice_is_a_usage_error(tmp_path: Path) -> None:
    refused = run(
        config_for(tmp_path, "sqlite:///x.db"), "postgresql://nobody@127.0.0.1/x", "--in-flight", "drop"
    )
    assert refused.returncode == 2 and "--in-flight" in refused.stderr
