"""The import from OpenKAT's scheduler as the command line shows it: a progress bar on stderr while it runs,
then the report as tables, or one JSON document for scripts."""

from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from katsched.cli.common import console, open_engine, print_json
from katsched.config import Settings
from katsched.core.mula_report import RERANK_REASON_BY_ID, ImportReport
from katsched.core.mula_rows import InFlight
from katsched.store.mula_import import ImportOptions, MulaImport
from katsched.store.mula_source import MulaSource, source_engine


def run_import(settings: Settings, url: str, chosen: dict[str, Any], *, as_json: bool) -> None:
    """`chosen`: the command's dry_run, since, in_flight and batch."""
    since: datetime | None = chosen["since"]
    options = ImportOptions(
        in_flight=InFlight(chosen["in_flight"]),
        since=since.replace(tzinfo=UTC) if since and since.tzinfo is None else since,
        dry_run=chosen["dry_run"],
        batch=chosen["batch"],
    )
    source = source_engine(url)
    reader = MulaSource(source)
    try:
        reader.revision()  # an unusable source is refused before the progress bar draws anything
        target = open_engine(settings)
    except BaseException:
        source.dispose()
        raise
    try:
        with _progress(as_json) as progress:
            phases: dict[str, TaskID] = {}
            importer = MulaImport(
                reader,
                target,
                options,
                started=lambda phase, total: phases.update({phase: progress.add_task(phase, total=total)}),
                advanced=lambda phase, rows: progress.advance(phases[phase], rows),
            )
            report = importer.run()
    finally:
        source.dispose()
        target.dispose()
    if as_json:
        print_json(report.as_dict())
    else:
        _show(report)


def _progress(quiet: bool) -> Progress:
    columns = (TextColumn("{task.description:>9}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=Console(stderr=True), disable=quiet, transient=False)


def _show(report: ImportReport) -> None:
    verb = "would import (dry run)" if report.dry_run else "imported"
    console().print(
        f"source at revision {report.source_revision}; {verb}; in-flight tasks: {report.in_flight}"
    )
    counts = Table(title="tasks by scheduler and status", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("scheduler", "status", "tasks"):
        counts.add_column(column, justify="right" if column == "tasks" else "left")
    for (scheduler, status), count in sorted(report.tasks.items()):
        counts.add_row(scheduler, status, str(count))
    for scheduler, count in sorted(report.schedules.items()):
        counts.add_row(scheduler, "[dim]schedules[/]", str(count))
    console().print(counts)
    written, present = report.written, report.already_present
    console().print(
        f"written: {written['schedules']} schedules, {written['tasks']} tasks; "
        f"already there from an earlier run: {present['schedules']} schedules, {present['tasks']} tasks"
    )
    for scheduler, count in sorted(report.reranked.items()):
        console().print(f"re-ranked {count} queued {scheduler} tasks: {RERANK_REASON_BY_ID[scheduler]}")
    for (original, now), count in sorted(report.in_flight_moved.items()):
        console().print(f"{count} tasks {original.lower()} in the original → {now}")
    _show_skipped(report)


def _show_skipped(report: ImportReport) -> None:
    if not report.skipped:
        console().print("nothing skipped")
        return
    skipped = Table(title="skipped rows", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("table", "reason", "rows", "for example"):
        skipped.add_column(column, overflow="fold")
    for (table, reason), count in sorted(report.skipped.items()):
        skipped.add_row(table, reason, str(count), "\n".join(report.samples[(table, reason)]))
    console().print(skipped)
