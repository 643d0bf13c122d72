"""How a pushed task joins the schedule of its identity (the original's post_push, reference §4.4): the rows
and the statements, shared by the single push of the API and the batched push of the planners.

A planner looks the schedule up before the push, outside its transaction, so another daemon can create the
schedule of the same identity in between: the INSERT of a new schedule then joins the one it meets on the
unique hash (`ON CONFLICT (hash) DO UPDATE`, as LINK_SCHEDULE would move it on) and returns its id. The API's
push looks it up inside its transaction (`schedules_by_hashes`, for a draft's `schedule_rule`): one
transaction per push instead of two (the read was a sixth of a push's CPU).
"""

import uuid
from collections.abc import Collection, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Row, String, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Insert

from katsched.core.models import Schedule
from katsched.core.ports import ScheduleLink
from katsched.store.prepared import fetch
from katsched.store.tables import schedules

# One hash by equality: an expanding IN renders its SQL anew at every execution.
_BY_HASH = select(schedules).where(schedules.c.hash == bindparam("hash"))
_BY_HASHES = select(schedules).where(schedules.c.hash.in_(bindparam("hashes", expanding=True)))
CHUNK = 1000  # hashes per IN: below every database's limit of bound parameters


def to_schedule(row: Row[Any] | Mapping[str, Any]) -> Schedule:
    return Schedule.model_validate(row if isinstance(row, Mapping) else row._mapping)


def schedules_by_hashes(connection: Connection, hashes: Collection[str]) -> dict[str, Schedule]:
    """The schedules of these identities, by hash, in the open transaction `connection`."""
    if len(hashes) == 1:
        (one,) = hashes
        found = fetch(connection, _BY_HASH, {"hash": one})
    else:
        ordered = list(hashes)
        parts = (ordered[start : start + CHUNK] for start in range(0, len(ordered), CHUNK))
        found = [row for part in parts for row in fetch(connection, _BY_HASHES, {"hashes": part})]
    return {str(row["hash"]): to_schedule(row) for row in found}


LINK_SCHEDULE = (
    update(schedules)
    .where(schedules.c.id == bindparam("_id"))
    .values(
        deadline_at=bindparam("_deadline_at"),
        schedule=func.coalesce(bindparam("_cron", type_=String()), schedules.c.schedule),
        modified_at=bindparam("_now"),
    )
)


@lru_cache(maxsize=2)
def schedule_upsert(dialect: str) -> Insert:
    """The INSERT of new schedule rows; a row whose identity has a schedule already moves that one on
    instead. Returns (id, hash) of the schedule each row ended in."""
    statement = postgresql.insert(schedules) if dialect == "postgresql" else sqlite.insert(schedules)
    excluded = statement.excluded
    moved_on = {
        "deadline_at": excluded.deadline_at,
        "schedule": func.coalesce(excluded.schedule, schedules.c.schedule),
        "modified_at": excluded.modified_at,
    }
    upsert = statement.on_conflict_do_update(index_elements=[schedules.c.hash], set_=moved_on)
    return upsert.returning(schedules.c.id, schedules.c.hash)


def linked_schedule(link: ScheduleLink, now: datetime) -> dict[str, Any]:
    """The parameters of LINK_SCHEDULE for an existing schedule: its next deadline (and cron, if given)."""
    return {"_id": link.schedule_id, "_deadline_at": link.deadline_at, "_cron": link.cron, "_now": now}


def new_schedule(
    link: ScheduleLink,
    scheduler_id: str,
    organisation: str,
    identity: str,
    data: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """The row of a schedule created for a task: enabled, with the task's data as its blueprint."""
    return {
        "id": uuid.uuid4(),
        "scheduler_id": scheduler_id,
        "organisation": organisation,
        "hash": identity,
        "data": data,
        "enabled": True,
        "schedule": link.cron,
        "deadline_at": link.deadline_at,
        "created_at": now,
        "modified_at": now,
    }
