"""`katsched db`: the schema, pruning by the retention policy, and importing an existing OpenKAT scheduler's
data."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import typer

from katsched.cli.common import ConfigOption, JsonOption, console, load, open_engine, print_json

app = typer.Typer(help="Database schema and retention.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command(config: ConfigOption = None) -> None:
    """Apply every pending migration (the daemon also does this when it starts)."""
    from katsched.store.migrate import current_revision

    engine = open_engine(load(config))
    console().print(f"database at revision {current_revision(engine)}")


SourceOption = Annotated[
    str, typer.Option("--from", help="The original scheduler's database: postgresql://user@host/scheduler.")
]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the report; write nothing.")]
SinceOption = Annotated[
    datetime | None,
    typer.Option(
        "--since",
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
        help="Finished tasks only from this date (UTC); queued and in-flight tasks and all schedules always.",
    ),
]


class InFlightChoice(StrEnum):
    """The import's own `InFlight`, spelled here so that `katsched --help` need not load the import."""

    REQUEUE = "requeue"
    FAIL = "fail"


InFlightOption = Annotated[
    InFlightChoice,
    typer.Option(
        "--in-flight",
        help="Tasks the original had handed to a runner (dispatched, running): queue again, or fail.",
    ),
]
BatchOption = Annotated[
    int,
    typer.Option(
        "--batch-size", min=100, help="Rows written per transaction (each batch commits on its own)."
    ),
]


@app.command("import-mula")
def import_mula_command(
    source: SourceOption,
    dry_run: DryRunOption = False,
    since: SinceOption = None,
    in_flight: InFlightOption = InFlightChoice.REQUEUE,
    as_json: JsonOption = False,
    batch_size: BatchOption = 2000,
    config: ConfigOption = None,
) -> None:
    """Import OpenKAT's scheduler database (revision 0008 to 0011): schedules, queued tasks and history.

    Safe to run again: rows already imported are left alone, and an interrupted import is finished by the
    next run. Stop the original scheduler first.
    """
    from katsched.cli.mula import run_import  # the import's modules load only for this command

    options = {"dry_run": dry_run, "since": since, "in_flight": in_flight.value, "batch": batch_size}
    run_import(load(config), source, options, as_json=as_json)


@app.command("prune")
def prune_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would go; delete nothing.")] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Delete finished tasks older than [retention] tasks_days and status history older than history_days,
    as the daemon's retention job does (in batches of batch_size, safe beside a running daemon)."""
    from katsched import wiring
    from katsched.clock import SystemClock
    from katsched.schedulers.sweeps import PruneSummary, RetentionPolicy, prunable, prune_retention

    settings = load(config)
    housekeeping = wiring.housekeeping(open_engine(settings))
    retention = settings.retention
    policy = RetentionPolicy(retention.tasks_days, retention.history_days, retention.batch_size)
    if dry_run:
        summary = prunable(housekeeping, SystemClock(), policy)
    else:
        summary = PruneSummary(complete=False)
        while not summary.complete:  # the daemon's job stops after max_batches; an operator wants it all
            run = prune_retention(housekeeping, SystemClock(), policy)
            summary = PruneSummary(
                summary.tasks + run.tasks,
                summary.history + run.history,
                summary.daemons + run.daemons,
                run.complete,
            )
    counts = {"tasks": summary.tasks, "history": summary.history, "daemons": summary.daemons}
    if as_json:
        print_json({"dry_run": dry_run, **counts})
        return
    verb = "would delete" if dry_run else "deleted"
    console().print(
        f"{verb} {summary.tasks:,} finished task(s) older than {policy.tasks_days} days, "
        f"{summary.history:,} history row(s) and {summary.daemons:,} daemon record(s) "
        f"older than {policy.history_days} days"
    )
