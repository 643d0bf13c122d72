"""The pure mapping of the original scheduler's rows (`katsched.core.mula_rows`)."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from katsched.core.hashing import murmur_hex
from katsched.core.models import SchedulerKind
from katsched.core.mula_rows import (
    InFlight,
    MappedTask,
    Skipped,
    SourceSchedule,
    SourceTask,
    TaskMapper,
    map_schedule,
    split_scheduler_id,
    supported_revision,
)
from katsched.core.ranking import MOST_STALE, NEVER_RUN
from katsched.errors import SourceError

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OOI = "Hostname|internet|example.com"
HASH = murmur_hex(f"{OOI}-dns-records-org1")


def boefje_data(task_id: uuid.UUID | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"boefje": {"id": "dns-records"}, "input_ooi": OOI, "organization": "org1"}
    return data if task_id is None else {**data, "id": str(task_id)}


def task(status: str = "QUEUED", **fields: Any) -> SourceTask:
    task_id = fields.pop("id", uuid.uuid4())
    defaults: dict[str, Any] = {
        "id": task_id,
        "scheduler_id": "boefje",
        "organisation": "org1",
        "schedule_id": None,
        "status": status,
        "hash": HASH,
        "priority": int(NOW.timestamp()),
        "data": boefje_data(task_id),
        "created_at": NOW - timedelta(hours=1),
        "modified_at": NOW - timedelta(hours=1),
    }
    return SourceTask(**(defaults | fields))


def mapper(in_flight: InFlight = InFlight.REQUEUE, **fields: Any) -> TaskMapper:
    return TaskMapper(in_flight=in_flight, ranked_at=NOW, schedule_ids=set(), **fields)


def mapped(result: MappedTask | Skipped) -> MappedTask:
    assert isinstance(result, MappedTask), result
    return result


@pytest.mark.parametrize("version", ["0008", "0009", "0010", "0011", "0011_add_more_indexes"])
def test_revisions_0008_to_0011_are_accepted(version: str) -> None:
    assert 8 <= supported_revision(version) <= 11


@pytest.mark.parametrize(
    ("version", "says"),
    [
        ("0007", "older than 0008"),
        ("003", "older than 0008"),
        ("0006_add_jsonb_fields", "older"),
        (None, "no"),
    ],
)
def test_older_or_unknown_revisions_are_refused_with_a_reason(version: str | None, says: str) -> None:
    with pytest.raises(SourceError, match=says):
        supported_revision(version)


def test_both_scheduler_id_forms() -> None:
    assert split_scheduler_id("boefje") == (SchedulerKind.BOEFJE, None)
    assert split_scheduler_id("normalizer-my-org") == (SchedulerKind.NORMALIZER, "my-org")
    with pytest.raises(ValueError):
        split_scheduler_id("scanner-org1")


def test_a_queued_boefje_task_with_a_fifo_timestamp_priority_is_reranked_by_staleness() -> None:
    never = mapped(mapper().map(task()))
    assert (never.row["status"], never.row["priority"], never.reranked) == ("queued", NEVER_RUN, True)
    stale = mapped(mapper(last_runs={HASH: NOW - timedelta(days=8)}).map(task()))
    assert stale.row["priority"] == MOST_STALE
    manual = mapped(mapper().map(task(priority=1)))
    assert (manual.row["priority"], manual.reranked) == (1, False)


def test_history_keeps_its_priority_and_lowercases_its_status() -> None:
    done = mapped(mapper().map(task("COMPLETED", priority=7)))
    assert (done.row["status"], done.row["priority"], done.reranked) == ("completed", 7, False)


def test_in_flight_tasks_are_requeued_unless_their_work_is_queued_already() -> None:
    assert mapped(mapper().map(task("RUNNING"))).row["status"] == "queued"
    twin = mapper(queued_in_source={("boefje", HASH)}).map(task("DISPATCHED"))
    assert (mapped(twin).row["status"], mapped(twin).in_flight) == ("failed", "DISPATCHED")
    assert mapped(mapper(InFlight.FAIL).map(task("RUNNING"))).row["status"] == "failed"


def test_a_second_queued_task_of_one_identity_is_skipped() -> None:
    same = mapper()
    mapped(same.map(task()))
    skipped = same.map(task())
    assert isinstance(skipped, Skipped) and skipped.reason == "duplicate_queued"


def test_old_style_ids_and_a_missing_organisation_column() -> None:
    """Before revision 0009 there is no organisation column: it comes from the data, as 0009 derived it."""
    row = mapped(mapper().map(task(scheduler_id="boefje-org1", organisation=None)))
    assert (row.row["scheduler_id"], row.row["organisation"]) == ("boefje", "org1")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"status": "PENDING"}, "never_queued"),
        ({"hash": "0" * 32}, "hash_mismatch"),
        ({"data": {"boefje": {}}}, "invalid_data"),
        ({"scheduler_id": "scanner"}, "unknown_scheduler"),
        ({"data": boefje_data(uuid.uuid4())}, "id_mismatch"),
    ],
)
def test_rows_that_cannot_be_imported_say_why(fields: dict[str, Any], reason: str) -> None:
    skipped = mapper().map(task(**fields))
    assert isinstance(skipped, Skipped) and skipped.reason == reason and skipped.detail


def test_a_schedule_keeps_its_cron_deadline_and_state_in_utc() -> None:
    local = datetime(2026, 11, 28, 13, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Amsterdam"))
    source = SourceSchedule(
        id=uuid.uuid4(),
        scheduler_id="report-org1",
        organisation=None,
        hash=None,
        data={"report_recipe_id": "r1", "organisation_id": "org1", "type": "report"},
        enabled=False,
        schedule="0 0 * * *",
        deadline_at=local,
        created_at=NOW,
        modified_at=NOW,
    )
    row = map_schedule(source)
    assert isinstance(row, dict)
    assert row["hash"] == "e2805bbc0ac29935b53a88d3ea52984e"  # SPEC's test vector for r1-org1
    assert (row["scheduler_id"], row["organisation"], row["enabled"]) == ("report", "org1", False)
    assert row["deadline_at"] == local and row["deadline_at"].tzinfo is UTC
    bad = map_schedule(SourceSchedule(**{**source.__dict__, "schedule": "61 * * * *"}))
    assert isinstance(bad, Skipped) and bad.reason == "invalid_cron"
