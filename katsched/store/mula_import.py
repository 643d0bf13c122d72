"""`katsched db import-mula`: the original scheduler's schedules and tasks into katsched's database.

Schedules first (tasks link to them), then tasks, oldest first. Each batch is mapped (`core.mula_rows`) and
written in its own short transaction with "insert unless the id is there": a second run writes nothing, and a
run killed halfway is finished by the next one, which makes the same decisions from the same source rows.
"""

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Insert, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from katsched.core.mula_report import ImportReport
from katsched.core.mula_rows import InFlight, MappedTask, Skipped, TaskMapper, map_schedule
from katsched.store.engine import read, write
from katsched.store.mula_source import MulaSource
from katsched.store.tables import schedules, tasks

BATCH = 2000
EMPTY_SOURCE = datetime(1970, 1, 1, tzinfo=UTC)  # no task or schedule to rank: any moment will do

# (phase, rows in it) when a phase starts; (phase, rows done) after each batch.
Progress = Callable[[str, int], None]


def _quiet(_phase: str, _rows: int) -> None:
    return None


@dataclass(frozen=True)
class ImportOptions:
    in_flight: InFlight = InFlight.REQUEUE
    since: datetime | None = None
    dry_run: bool = False
    batch: int = BATCH


class MulaImport:
    def __init__(
        self,
        source: MulaSource,
        target: Engine,
        options: ImportOptions,
        *,
        started: Progress = _quiet,
        advanced: Progress = _quiet,
    ) -> None:
        self.source = source
        self.target = target
        self.options = options
        self._started = started
        self._advanced = advanced

    def run(self) -> ImportReport:
        options = self.options
        report = ImportReport(
            source_revision=self.source.revision(),
            dry_run=options.dry_run,
            in_flight=options.in_flight.value,
            since=options.since.isoformat() if options.since else None,
        )
        schedule_ids = self._schedules(report)
        self._tasks(report, schedule_ids)
        return report

    # -- schedules -------------------------------------------------------------------------------------------

    def _schedules(self, report: ImportReport) -> set[uuid.UUID]:
        """Import every schedule; the ids of those now in katsched, for the tasks' links."""
        self._started("schedules", self.source.count("schedules"))
        present: set[uuid.UUID] = set()
        for batch in self.source.schedules(self.options.batch):
            rows: list[dict[str, Any]] = []
            for found in map(map_schedule, batch):
                if isinstance(found, Skipped):
                    report.skip(found)
                else:
                    rows.append(found)
            for row in self._write_schedules(rows, report):
                present.add(row["id"])
                report.schedules[row["scheduler_id"]] += 1
            self._advanced("schedules", len(batch))
        return present

    def _write_schedules(self, rows: Sequence[dict[str, Any]], report: ImportReport) -> list[dict[str, Any]]:
        """The rows that are in katsched after this batch: written now, or by an earlier run. A schedule whose
        hash another katsched schedule already has is skipped (hashes are unique)."""
        with write(self.target) if not self.options.dry_run else read(self.target) as connection:
            taken = _taken_schedules(connection, rows)
            fresh, kept = [], []
            for row in rows:
                holder = taken.get(row["hash"])
                if taken.get(row["id"]) == row["id"] or holder == row["id"]:
                    report.already_present["schedules"] += 1
                    kept.append(row)
                elif holder is not None:
                    detail = f"katsched's schedule {holder} already has hash {row['hash']}"
                    report.skip(Skipped("schedules", str(row["id"]), "hash_taken", detail))
                else:
                    fresh.append(row)
                    taken[row["hash"]] = row["id"]  # two source rows whose data hash alike: the first wins
            if fresh and not self.options.dry_run:
                connection.execute(_insert_new(connection, schedules), fresh)
            report.written["schedules"] += len(fresh)
        return kept + fresh

    # -- tasks -----------------------------------------------------------------------------------------------

    def _tasks(self, report: ImportReport, schedule_ids: set[uuid.UUID]) -> None:
        source = self.source
        mapper = TaskMapper(
            in_flight=self.options.in_flight,
            ranked_at=source.last_activity() or EMPTY_SOURCE,
            schedule_ids=schedule_ids,
            queued_in_source=source.queued_identities(),
            last_runs=source.last_runs(),
        )
        self._started("tasks", source.count("tasks", self.options.since))
        for batch in source.tasks(self.options.batch, self.options.since):
            mapped: list[MappedTask] = []
            for found in map(mapper.map, batch):
                if isinstance(found, Skipped):
                    report.skip(found)
                else:
                    mapped.append(found)
                    report.task(found)
            written = self._write_tasks([item.row for item in mapped])
            report.written["tasks"] += written
            report.already_present["tasks"] += len(mapped) - written
            self._advanced("tasks", len(batch))

    def _write_tasks(self, rows: list[dict[str, Any]]) -> int:
        """How many of `rows` were new; the others an earlier run wrote."""
        if not rows:
            return 0
        with write(self.target) if not self.options.dry_run else read(self.target) as connection:
            ids = [row["id"] for row in rows]
            existing = set(connection.execute(select(tasks.c.id).where(tasks.c.id.in_(ids))).scalars())
            fresh = [row for row in rows if row["id"] not in existing]
            if fresh and not self.options.dry_run:
                _insert_rows(connection, fresh)
        return len(fresh)


def _taken_schedules(connection: Connection, rows: Sequence[dict[str, Any]]) -> dict[Any, uuid.UUID]:
    """For each id and hash of `rows` already in katsched: the id of the schedule holding it."""
    if not rows:
        return {}
    ids, hashes = [row["id"] for row in rows], [row["hash"] for row in rows]
    statement = select(schedules.c.id, schedules.c.hash).where(
        or_(schedules.c.id.in_(ids), schedules.c.hash.in_(hashes))
    )
    taken: dict[Any, uuid.UUID] = {}
    for schedule_id, schedule_hash in connection.execute(statement):
        taken[schedule_id] = schedule_id
        taken[schedule_hash] = schedule_id
    return taken


def _insert_rows(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """New task rows, in this transaction. PostgreSQL: COPY, several times faster than any INSERT for
    thousands of rows (the history trigger fires for it all the same). SQLite: one executemany."""
    if connection.dialect.name != "postgresql":
        connection.execute(_insert_new(connection, tasks), rows)
        return
    from psycopg.types.json import Jsonb  # the `postgres` extra: only a PostgreSQL target gets here

    # A column the rows leave out takes its server default (COPY would write NULL into it instead).
    columns = [column.name for column in tasks.c if column.server_default is None or column.name in rows[0]]
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f"COPY tasks ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([Jsonb(row["data"]) if name == "data" else row.get(name) for name in columns])


def _insert_new(connection: Connection, table: Any) -> Insert:
    """INSERT … ON CONFLICT (id) DO NOTHING, in the target's dialect."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement: Insert = dialect.insert(table).on_conflict_do_nothing(index_elements=["id"])
    return statement
