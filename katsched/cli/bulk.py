"""What the bulk actions (`tasks requeue`, `tasks cancel`, `queue purge`) share: the selection options, the
confirmation prompt and the report. The store modules are imported inside the functions that use them, so that
`katsched --help` does not load SQLAlchemy."""

import re
import sys
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from katsched.cli.common import console, print_json
from katsched.core.models import SchedulerKind, TaskStatus

if TYPE_CHECKING:
    from katsched.store.bulk import Selection
    from katsched.store.queue import SqlTaskQueue

SchedulerFilter = Annotated[
    SchedulerKind | None, typer.Option("--scheduler", "-s", help="Only this scheduler's tasks.")
]
OrgFilter = Annotated[str | None, typer.Option("--org", "-o", help="Only this organisation's tasks.")]
StatusFilter = Annotated[
    list[TaskStatus] | None, typer.Option("--status", help="Only tasks in this status (repeatable).")
]
OlderThanFilter = Annotated[
    str | None,
    typer.Option("--older-than", help="Only tasks created longer ago than this: 90s, 30m, 2h or 7d."),
]
FilterOption = Annotated[
    str | None, typer.Option("--filter", "-f", help="The filter language as JSON, @FILE or -.")
]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do it without asking.")]

_DURATION = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `2h`, `7d` → a timedelta; anything else is a usage error naming --older-than."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise typer.BadParameter(
            f"{text!r} is not a duration: a whole number and s, m, h or d (e.g. 2h)",
            param_hint="--older-than",
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def selection(
    statuses: Iterable[TaskStatus],
    *,
    scheduler: SchedulerKind | None,
    org: str | None,
    older_than: str | None,
    filter_: str | None,
    task_id: uuid.UUID | None = None,
) -> "Selection":
    from katsched.cli.queue import parse_filter_option
    from katsched.clock import SystemClock
    from katsched.store.bulk import Selection

    age = parse_duration(older_than) if older_than is not None else None
    return Selection(
        statuses=frozenset(statuses),
        scheduler_id=scheduler.value if scheduler else None,
        organisation=org,
        created_before=SystemClock().now() - age if age is not None else None,
        filters=parse_filter_option(filter_),
        task_id=task_id,
    )


def statuses_or(chosen: list[TaskStatus] | None, default: Iterable[TaskStatus]) -> list[TaskStatus]:
    return list(chosen) if chosen else sorted(default)


def confirm(question: str, *, yes: bool) -> bool:
    """True to go ahead. Without --yes a person must answer; a script (stdin not a terminal) is refused."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise typer.BadParameter(
            f"needed to {question[:-1]} without a prompt: standard input is not a terminal",
            param_hint="--yes",
        )
    return typer.confirm(question, default=False, err=True)


def run_bulk(
    queue: "SqlTaskQueue",
    chosen: "Selection",
    to: TaskStatus,
    *,
    verb: str,
    describe: str,
    reason: str,
    yes: bool,
    as_json: bool,
    requeue: bool = False,
    extra: dict[str, int] | None = None,
) -> None:
    """Count, ask (`verb` N `describe`?), move at most that many tasks to `to`, report. Nothing to do, or
    a "no", changes nothing."""
    from katsched.store import bulk

    eligible = bulk.requeueable if requeue else bulk.selected
    matched = bulk.count(queue.engine, chosen, eligible)
    document: dict[str, object] = {"action": verb, "matched": matched, **(extra or {})}
    if matched and not confirm(f"{verb} {matched:,} {describe}?", yes=yes):
        typer.echo("katsched: not confirmed, nothing changed", err=True)
        raise typer.Exit(1)
    changed = bulk.change_status(
        queue.engine, queue.clock, chosen, to, reason, at_most=matched, eligible=eligible
    )
    document |= {"changed": len(changed), "task_ids": [str(task_id) for task_id in changed]}
    if as_json:
        print_json(document)
        return
    console().print(f"{verb}: {len(changed):,} {describe}" + (f" ({matched:,} matched)" if matched else ""))
