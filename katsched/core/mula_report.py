"""What an import from the original scheduler did: counts per scheduler and status, re-ranked and in-flight
tasks, and every skipped row with its reason. Printed as tables or, with `--json`, as one document."""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from katsched.core.mula_rows import RERANK_REASON, MappedTask, Skipped

TABLES = ("schedules", "tasks")
SAMPLES = 5  # row ids shown per skip reason; the counts are always complete


@dataclass
class ImportReport:
    source_revision: str
    dry_run: bool
    in_flight: str
    since: str | None = None
    schedules: Counter[str] = field(default_factory=Counter)  # by scheduler: in katsched after the import
    tasks: Counter[tuple[str, str]] = field(default_factory=Counter)  # by (scheduler, status)
    written: Counter[str] = field(default_factory=Counter)  # rows written by this run, by table
    already_present: Counter[str] = field(default_factory=Counter)  # rows an earlier run wrote, by table
    reranked: Counter[str] = field(default_factory=Counter)  # queued tasks given a new priority, by scheduler
    in_flight_moved: Counter[tuple[str, str]] = field(
        default_factory=Counter
    )  # (original status, new status)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (table, reason)
    samples: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def skip(self, skipped: Skipped) -> None:
        key = (skipped.table, skipped.reason)
        self.skipped[key] += 1
        examples = self.samples.setdefault(key, [])
        if len(examples) < SAMPLES:
            examples.append(f"{skipped.row_id}: {skipped.detail}")

    def task(self, mapped: MappedTask) -> None:
        scheduler, status = mapped.row["scheduler_id"], mapped.row["status"]
        self.tasks[(scheduler, status)] += 1
        if mapped.reranked:
            self.reranked[scheduler] += 1
        if mapped.in_flight is not None:
            self.in_flight_moved[(mapped.in_flight, status)] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "source_revision": self.source_revision,
            "dry_run": self.dry_run,
            "in_flight": self.in_flight,
            "since": self.since,
            "schedules": dict(sorted(self.schedules.items())),
            "tasks": _nested(self.tasks),
            "written": {table: self.written[table] for table in TABLES},
            "already_present": {table: self.already_present[table] for table in TABLES},
            "reranked": {
                scheduler: {"count": count, "why": RERANK_REASON_BY_ID[scheduler]}
                for scheduler, count in sorted(self.reranked.items())
            },
            "in_flight_moved": _nested(self.in_flight_moved),
            "skipped": [
                {"table": table, "reason": reason, "count": count, "examples": self.samples[(table, reason)]}
                for (table, reason), count in sorted(self.skipped.items())
            ],
        }


RERANK_REASON_BY_ID = {kind.value: why for kind, why in RERANK_REASON.items()}


def _nested(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    nested: dict[str, dict[str, int]] = {}
    for (outer, inner), count in sorted(counts.items()):
        nested.setdefault(outer, {})[inner] = count
    return nested
