"""Import benchmark: `katsched db import-mula` of an OpenKAT scheduler database (revision 0010, 10,000
schedules and 100,000 tasks by default) into a fresh SQLite file and a fresh PostgreSQL database.

Raw reference, measured in the same run on the same rows: psycopg reads the source's tables and writes the
same columns into the same katsched schema with the driver's fastest path (COPY on PostgreSQL, one
`executemany` per batch on sqlite3), with none of the import's validation, hashing or mapping. Medians of 3
runs, each into a fresh target. Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust).

    python bench/import_mula.py [--quick]
"""

import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # the tests' stand-in for the original's database

from katsched.store.engine import build_engine
from katsched.store.migrate import upgrade
from katsched.store.mula_import import ImportOptions, MulaImport
from katsched.store.mula_source import MulaSource, source_engine
from tests.mula_original import create_schema, fill

QUICK = "--quick" in sys.argv
SCHEDULES, TASKS = (1_000, 10_000) if QUICK else (10_000, 100_000)
RUNS = 3
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH = 2000
TASK_COLUMNS = (
    "id, scheduler_id, schedule_id, organisation, priority, status, type, hash, data, created_at, modified_at"
)
SCHEDULE_COLUMNS = (
    "id, scheduler_id, organisation, hash, data, enabled, schedule, deadline_at, created_at, modified_at"
)
# The source rows in katsched's shape, with nothing checked: what any copy has to move at the least.
READ_TASKS = (
    "SELECT id, split_part(scheduler_id, '-', 1), schedule_id, organisation, priority, lower(status::text),"
    " type, hash, data::text, created_at, modified_at FROM tasks WHERE status <> 'PENDING'"
)
READ_SCHEDULES = (
    "SELECT id, split_part(scheduler_id, '-', 1), organisation, hash, data::text, enabled, schedule,"
    " deadline_at, created_at, modified_at FROM schedules"
)


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def build_source(url: str) -> None:
    from datetime import UTC, datetime

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        create_schema(connection, "0010")
        fill(connection, "0010", datetime(2026, 11, 28, 12, tzinfo=UTC), schedules=SCHEDULES, tasks=TASKS)
    engine.dispose()


@contextmanager
def fresh_target(dialect: str) -> Iterator[str]:
    """A migrated, empty katsched database (migration not timed)."""
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite:///{directory}/katsched.db"
            _migrate(url)
            yield url
        return
    with scratch_database("bench_import_target") as url:
        _migrate(url)
        yield url


def _migrate(url: str) -> None:
    engine = build_engine(url)
    upgrade(engine)
    engine.dispose()


def katsched_import(source: str, target: str) -> None:
    engine, reader = build_engine(target), source_engine(source)
    report = MulaImport(MulaSource(reader), engine, ImportOptions()).run()
    assert report.written["tasks"] > 0.9 * TASKS, report.as_dict()
    engine.dispose()
    reader.dispose()


def raw_copy(source: str, target: str) -> None:
    with psycopg.connect(source) as reader:
        schedules = reader.execute(READ_SCHEDULES).fetchall()
        tasks = reader.execute(READ_TASKS).fetchall()
    if target.startswith("sqlite"):
        _raw_sqlite(target.removeprefix("sqlite:///"), schedules, tasks)
    else:
        _raw_postgres(target, schedules, tasks)


def _raw_postgres(target: str, schedules: list[Any], tasks: list[Any]) -> None:
    with psycopg.connect(target) as writer:
        for table, columns, rows in (
            ("schedules", SCHEDULE_COLUMNS, schedules),
            ("tasks", TASK_COLUMNS, tasks),
        ):
            for start in range(0, len(rows), BATCH):
                with writer.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows[start : start + BATCH]:
                        copy.write_row(row)
                writer.commit()


def _raw_sqlite(path: str, schedules: list[Any], tasks: list[Any]) -> None:
    def plain(value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return value.hex
        return value.isoformat() if hasattr(value, "isoformat") else value

    connection = sqlite3.connect(path, isolation_level=None)
    for table, columns, rows in (("schedules", SCHEDULE_COLUMNS, schedules), ("tasks", TASK_COLUMNS, tasks)):
        marks = ", ".join("?" for _ in columns.split(","))
        for start in range(0, len(rows), BATCH):
            connection.execute("BEGIN IMMEDIATE")
            batch = [tuple(plain(v) for v in row) for row in rows[start : start + BATCH]]
            connection.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", batch)
            connection.execute("COMMIT")
    connection.close()


def median_seconds(run: Callable[[str, str], None], source: str, dialect: str) -> float:
    timings = []
    for _ in range(RUNS):
        with fresh_target(dialect) as target:
            started = time.perf_counter()
            run(source, target)
            timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> None:
    with scratch_database("bench_mula_source") as source:
        started = time.perf_counter()
        build_source(source)
        built = time.perf_counter() - started
        print(f"source: {SCHEDULES:,} schedules, {TASKS:,} tasks at revision 0010 (built in {built:.0f} s)")
        results = {}
        for dialect in ("sqlite", "postgres"):
            ours = median_seconds(katsched_import, source, dialect)
            raw = median_seconds(raw_copy, source, dialect)
            load = os.getloadavg()
            results[dialect] = {
                "katsched_s": round(ours, 2),
                "raw_s": round(raw, 2),
                "ratio": round(ours / raw, 2),
            }
            print(
                f"into {dialect:8} katsched {ours:6.1f} s   raw copy {raw:6.1f} s   ratio {ours / raw:4.1f}x"
                f"   (target < 60 s)   load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
            )
        print(json.dumps(results))


if __name__ == "__main__":
    main()
