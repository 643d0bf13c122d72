"""The planners' last decisions (the `DecisionLog` port): pruned with the history, counted for `status`."""

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Insert, delete, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from katsched.core.ports import DecisionRecord
from katsched.store.engine import read, write
from katsched.store.tables import decisions

KEY = ("organisation", "subject", "plugin_id")
COLUMNS = [column.name for column in decisions.c]


class SqlDecisionLog:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(self, records: Sequence[DecisionRecord]) -> None:
        if not records:
            return
        with write(self.engine) as connection:
            upsert_decisions(connection, records)

    def last(self, organisation: str, subject: str) -> dict[str, DecisionRecord]:
        statement = select(decisions).where(
            decisions.c.organisation == organisation, decisions.c.subject == subject
        )
        with read(self.engine) as connection:
            return {row.plugin_id: _record(row) for row in connection.execute(statement)}


def upsert_decisions(connection: Connection, records: Sequence[DecisionRecord]) -> None:
    """Keep each record as the last decision of its key, in the open transaction `connection`."""
    if not records:
        return
    # One row per key in a statement (PostgreSQL refuses to update a row twice in one INSERT), the last
    # decision winning; in key order, so two daemons upserting overlapping keys cannot deadlock.
    latest = {(r.organisation, r.subject, r.plugin_id): r for r in records}
    rows = [_row(latest[key]) for key in sorted(latest)]
    connection.execute(_upsert(connection), rows)


def _row(record: DecisionRecord) -> dict[str, Any]:
    row = {column: getattr(record, column) for column in COLUMNS}
    row["subject_data"] = dict(record.subject_data) if record.subject_data is not None else None
    return row


def _record(row: Any) -> DecisionRecord:
    return DecisionRecord(**{column: getattr(row, column) for column in COLUMNS})


def _upsert(connection: Connection) -> Insert:
    """INSERT … ON CONFLICT DO UPDATE, which both dialects spell alike."""
    if connection.dialect.name == "postgresql":
        pg = postgresql.insert(decisions)
        kept = {c: pg.excluded[c] for c in COLUMNS if c not in KEY}
        return pg.on_conflict_do_update(index_elements=list(KEY), set_=kept)
    lite = sqlite.insert(decisions)
    replaced = {c: lite.excluded[c] for c in COLUMNS if c not in KEY}
    return lite.on_conflict_do_update(index_elements=list(KEY), set_=replaced)


def prune_decisions(engine: Engine, older_than: datetime, batch_size: int) -> int:
    """Delete one batch of decisions taken before `older_than`."""
    key = tuple_(decisions.c.organisation, decisions.c.subject, decisions.c.plugin_id)
    batch = (
        select(decisions.c.organisation, decisions.c.subject, decisions.c.plugin_id)
        .where(decisions.c.decided_at < older_than)
        .limit(batch_size)
    )
    with write(engine) as connection:
        return int(connection.execute(delete(decisions).where(key.in_(batch))).rowcount)


def refusals_since(connection: Connection, since: datetime, reasons: Sequence[str]) -> dict[str, int]:
    """How many last decisions taken since `since` were refusals for each of `reasons`, most first."""
    count = func.count().label("n")
    statement = (
        select(decisions.c.reason, count)
        .where(decisions.c.decided_at >= since, decisions.c.reason.in_(list(reasons)))
        .group_by(decisions.c.reason)
        .order_by(count.desc(), decisions.c.reason)
    )
    return {str(reason): int(n) for reason, n in connection.execute(statement)}


def count_refusals(engine: Engine, since: datetime, reasons: Sequence[str]) -> dict[str, int]:
    with read(engine) as connection:
        return refusals_since(connection, since, reasons)


if TYPE_CHECKING:  # mypy proves that the adapter implements the port
    from katsched.core.ports import DecisionLog

    def _implements_port(store: SqlDecisionLog) -> DecisionLog:
        return store
