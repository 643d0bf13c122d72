"""The INSERT of a push's new tasks, meeting a queued twin in the statement (migration 0012's unique index).

A twin appears between the push's duplicate query and its INSERT only when another transaction queued it
meanwhile (PostgreSQL's READ COMMITTED; SQLite's write lock rules it out). The statement then does to the twin
what the push policy would have done had the query seen it: replace it, update it where the data or priority
differ, or leave it (`DO NOTHING`) and the draft is refused. An update keeps the twin's id (in `data.id` too,
where the task kind carries one), as `katsched.core.push` wants.
"""

from functools import lru_cache

from sqlalchemy import Boolean, Text, case, cast, func, literal, literal_column, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement, Insert

from katsched.core.models import PushPolicy
from katsched.store.tables import tasks

# A literal, not a bound parameter: SQLite uses a partial index only when the WHERE visibly implies it.
IS_QUEUED = tasks.c.status == literal_column("'queued'")
# What a push returns per row: the id tells an inserted draft (its own id, its own created_at) from a twin it
# updated; a refused draft returns no row.
RETURNED = (tasks.c.id, tasks.c.hash, tasks.c.created_at)


def task_upsert(dialect: str, policy: PushPolicy) -> Insert:
    """The INSERT … ON CONFLICT of new QUEUED task rows of one scheduler, for its push `policy`."""
    return _task_upsert(dialect, policy.allow_replace, policy.allow_updates, policy.allow_priority_updates)


@lru_cache(maxsize=32)
def _task_upsert(dialect: str, replace: bool, updates: bool, priority_updates: bool) -> Insert:
    statement = postgresql.insert(tasks) if dialect == "postgresql" else sqlite.insert(tasks)
    target = [tasks.c.scheduler_id, tasks.c.hash]
    excluded = statement.excluded
    differs: list[ColumnElement[bool]] = []
    if updates:
        differs.append(tasks.c.data.is_distinct_from(excluded.data))
    if priority_updates:
        differs.append(tasks.c.priority.is_distinct_from(excluded.priority))
    if not replace and not differs:
        return statement.on_conflict_do_nothing(index_elements=target, index_where=IS_QUEUED).returning(
            *RETURNED
        )
    changes = {
        "priority": excluded.priority,
        "data": _data_keeping_id(dialect, excluded.data),
        "modified_at": excluded.modified_at,
        "last_run_at": excluded.last_run_at,
        "rerank_at": excluded.rerank_at,
        "schedule_id": func.coalesce(excluded.schedule_id, tasks.c.schedule_id),
    }
    where = None if replace else or_(*differs)
    upsert = statement.on_conflict_do_update(
        index_elements=target, index_where=IS_QUEUED, set_=changes, where=where
    )
    return upsert.returning(*RETURNED)


def _data_keeping_id(dialect: str, data: ColumnElement[object]) -> ColumnElement[object]:
    """The draft's data with the twin's id in `data.id`, where the data has an id (boefje, normalizer)."""
    if dialect == "postgresql":
        twin_id = func.to_jsonb(cast(tasks.c.id, Text))
        with_id = func.jsonb_set(data, literal(["id"], postgresql.ARRAY(Text)), twin_id)
        has_id = data.op("?", return_type=Boolean)(literal("id", Text))
        return case((has_id, with_id), else_=data)
    # SQLite stores a UUID as 32 hex digits; data.id holds its hyphenated form.
    hex_id = cast(tasks.c.id, Text)
    parts = [
        func.substr(hex_id, start, length) for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))
    ]
    hyphenated = func.lower(parts[0] + "-" + parts[1] + "-" + parts[2] + "-" + parts[3] + "-" + parts[4])
    with_id = func.json_set(data, "$.id", hyphenated)
    return case((func.json_type(data, "$.id").is_not(None), with_id), else_=data)
