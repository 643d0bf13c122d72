"""How a pushed task joins the schedule of its identity (the original's post_push, reference §4.4): the rows
and the statement, shared by the single push of the API and the batched push of the planners."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import String, bindparam, func, update

from katsched.core.ports import ScheduleLink
from katsched.store.tables import schedules

LINK_SCHEDULE = (
    update(schedules)
    .where(schedules.c.id == bindparam("_id"))
    .values(
        deadline_at=bindparam("_deadline_at"),
        schedule=func.coalesce(bindparam("_cron", type_=String()), schedules.c.schedule),
        modified_at=bindparam("_now"),
    )
)


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
