"""`katsched db import-mula` (issue 13): an OpenKAT scheduler database at revision 0008 or 0010, built with
our own DDL in a real PostgreSQL database, imported into SQLite and into PostgreSQL."""

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, delete, func, select

from katsched.core.hashing import task_hash
from katsched.core.models import Organisation, SchedulerKind
from katsched.core.mula_report import ImportReport
from katsched.core.mula_rows import InFlight
from katsched.core.push import parse_payload
from katsched.store.mula_import import ImportOptions, MulaImport
from katsched.store.mula_source import MulaSource, source_engine
from katsched.store.tables import plugins_seen, schedules, task_events, tasks
from katsched.testing import FakeClock
from tests.conftest import START, scratch_postgres
from tests.mula_original import ACTIVE, BOEFJES, ORGS, Original, create_schema, fill
from tests.stores import sql_stores
from tests.world import World, boefje, hostname

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SCHEDULES, TASKS = 1000, 10_000
FINISHED = ("COMPLETED", "FAILED", "CANCELLED")


@pytest.fixture(scope="module", params=["0008", "0010"])
def original(request: pytest.FixtureRequest) -> Iterator[tuple[str, Original]]:
    """The source database (read-only to the import, so one per revision serves every test)."""
    with scratch_postgres("mula_original") as url:
        engine = create_engine(url)
        with engine.begin() as connection:
            create_schema(connection, request.param)
            contents = fill(connection, request.param, START, schedules=SCHEDULES, tasks=TASKS)
        engine.dispose()
        yield url, contents


def run_import(url: str, target: Engine, **options: Any) -> ImportReport:
    source = source_engine(url)
    try:
        return MulaImport(MulaSource(source), target, ImportOptions(**options)).run()
    finally:
        source.dispose()


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything the import writes, comparable between runs (history ids come from a sequence)."""
    with engine.connect() as connection:
        return {
            "schedules": sorted(tuple(map(str, row)) for row in connection.execute(select(schedules))),
            "tasks": sorted(tuple(map(str, row)) for row in connection.execute(select(tasks))),
            "events": Counter(
                tuple(row)
                for row in connection.execute(
                    select(task_events.c.task_id, task_events.c.status, task_events.c.changed_at)
                )
            ),
        }


def expected_task_statuses(original: Original) -> Counter[tuple[str, str]]:
    """(scheduler, status) of every task the import should write, from the rows the fixture made."""
    expected: Counter[tuple[str, str]] = Counter()
    for row in original.tasks:
        if row["status"] == "PENDING":
            continue
        status = "queued" if row["status"] in ACTIVE else row["status"].lower()
        expected[(row["type"], status)] += 1
    return expected


def test_counts_match_the_report_and_the_source(original: tuple[str, Original], engine: Engine) -> None:
    url, contents = original
    report = run_import(url, engine)
    with engine.connect() as connection:
        by_status = Counter(
            {
                (scheduler, status): count
                for scheduler, status, count in connection.execute(
                    select(tasks.c.scheduler_id, tasks.c.status, func.count()).group_by(
                        tasks.c.scheduler_id, tasks.c.status
                    )
                )
            }
        )
        by_scheduler = Counter(
            dict(
                connection.execute(
                    select(schedules.c.scheduler_id, func.count()).group_by(schedules.c.scheduler_id)
                ).all()
            )
        )
    assert by_status == report.tasks == expected_task_statuses(contents)
    assert by_scheduler == report.schedules
    assert sum(by_scheduler.values()) == SCHEDULES - len(contents.bad_hash_schedules)
    pending = sum(row["status"] == "PENDING" for row in contents.tasks)
    assert report.skipped == Counter(
        {("schedules", "hash_mismatch"): len(contents.bad_hash_schedules), ("tasks", "never_queued"): pending}
    )
    assert report.written == Counter(
        {"schedules": sum(by_scheduler.values()), "tasks": sum(by_status.values())}
    )
    in_flight = sum(row["status"] in ("DISPATCHED", "RUNNING") for row in contents.tasks)
    assert sum(report.in_flight_moved.values()) == in_flight
    queued_boefjes = sum(
        row["type"] == "boefje" and row["status"] in ACTIVE and row["priority"] != 1 for row in contents.tasks
    )
    assert report.reranked == Counter({"boefje": queued_boefjes})


def test_every_schedule_has_katscheds_identity_hash(original: tuple[str, Original], engine: Engine) -> None:
    url, contents = original
    run_import(url, engine)
    with engine.connect() as connection:
        rows = connection.execute(select(schedules)).all()
    assert rows and all(
        row.hash == task_hash(parse_payload(SchedulerKind(row.scheduler_id), row.data)) for row in rows
    )
    assert contents.bad_hash_schedules.isdisjoint(row.id for row in rows)
    assert {row.scheduler_id for row in rows} == {"boefje", "report"}  # both id forms, combined
    source_orgs = {row["id"]: row["organisation"] for row in contents.schedules}
    assert all(row.organisation == source_orgs[row.id] for row in rows)


def test_a_second_import_changes_nothing(original: tuple[str, Original], engine: Engine) -> None:
    url, _ = original
    first = run_import(url, engine)
    before = snapshot(engine)
    second = run_import(url, engine)
    assert snapshot(engine) == before
    assert second.written == Counter({"schedules": 0, "tasks": 0})
    assert second.already_present == first.written
    assert (second.tasks, second.schedules, second.skipped) == (first.tasks, first.schedules, first.skipped)


def test_a_dry_run_writes_nothing_and_reports_the_same(
    original: tuple[str, Original], engine: Engine
) -> None:
    url, _ = original
    dry = run_import(url, engine, dry_run=True)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(tasks)).scalar_one() == 0
        assert connection.execute(select(func.count()).select_from(schedules)).scalar_one() == 0
    real = run_import(url, engine)
    assert (dry.tasks, dry.schedules, dry.skipped, dry.written) == (
        real.tasks,
        real.schedules,
        real.skipped,
        real.written,
    )


def test_in_flight_fail_fails_dispatched_and_running_tasks(
    original: tuple[str, Original], engine: Engine
) -> None:
    url, contents = original
    report = run_import(url, engine, in_flight=InFlight.FAIL)
    in_flight = Counter(row["status"] for row in contents.tasks if row["status"] in ("DISPATCHED", "RUNNING"))
    assert report.in_flight_moved == Counter({(status, "failed"): n for status, n in in_flight.items()})
    ids = [row["id"] for row in contents.tasks if row["status"] in ("DISPATCHED", "RUNNING")]
    with engine.connect() as connection:
        statuses = set(connection.execute(select(tasks.c.status).where(tasks.c.id.in_(ids))).scalars())
    assert statuses == {"failed"}


def test_since_limits_the_history_only(original: tuple[str, Original], engine: Engine) -> None:
    url, contents = original
    since = START.replace(day=20)
    report = run_import(url, engine, since=since)
    kept = [
        row
        for row in contents.tasks
        if row["status"] != "PENDING" and (row["status"] not in FINISHED or row["modified_at"] >= since)
    ]
    assert sum(report.tasks.values()) == len(kept)
    assert report.tasks[("boefje", "queued")] == expected_task_statuses(contents)[("boefje", "queued")]


def due_in(contents: Original) -> set[uuid.UUID]:
    """Schedules the original would have run next: imported, enabled, deadline passed, no active task."""
    busy = {row["schedule_id"] for row in contents.tasks if row["status"] in ACTIVE}
    return {
        row["id"]
        for row in contents.schedules
        if row["id"] not in contents.bad_hash_schedules
        and row["enabled"]
        and row["deadline_at"] is not None
        and row["deadline_at"] <= START
        and row["id"] not in busy
    }


def katsched_world(engine: Engine, contents: Original) -> World:
    """The real planners on the imported database, with every boefje and object of the source present."""
    clock = FakeClock(START)
    world = World(sql_stores(engine, clock), clock)
    for org in ORGS:
        world.catalog.add_organisation(Organisation(id=org))
        for plugin_id in BOEFJES:
            world.add_plugin(boefje(plugin_id), org)
    for row in contents.schedules:
        reference = row["data"].get("input_ooi")
        if reference:
            world.add_object(hostname(reference.split("|")[-1]), row["organisation"])
    return world


def test_the_first_rescheduling_plans_exactly_the_due_schedules(
    original: tuple[str, Original], engine: Engine
) -> None:
    url, contents = original
    run_import(url, engine)
    with engine.begin() as connection:
        connection.execute(delete(plugins_seen))  # the shared PostgreSQL database keeps this table
        before = {row.id: (row.deadline_at, row.enabled) for row in connection.execute(select(schedules))}
        known = set(connection.execute(select(tasks.c.id)).scalars())
    world = katsched_world(engine, contents)
    for org in ORGS:
        world.boefjes().reschedule_due(org)
        world.reports().reschedule_due(org)
    with engine.connect() as connection:
        after = {row.id: (row.deadline_at, row.enabled) for row in connection.execute(select(schedules))}
        new = connection.execute(select(tasks.c.id, tasks.c.schedule_id)).all()
    pushed = {schedule_id for task_id, schedule_id in new if task_id not in known}
    changed = {schedule_id for schedule_id, state in after.items() if state != before[schedule_id]}
    expected = due_in(contents)
    assert len(pushed) > len(expected) / 2  # most due schedules run; the rest ran within the grace period
    assert pushed | changed == expected
    assert all(after[schedule_id][1] for schedule_id in expected)  # none disabled
