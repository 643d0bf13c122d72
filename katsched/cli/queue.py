"""`katsched queue`: look at, push to and pop from the queues. Safe while a daemon holds the same database."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from katsched.cli.bulk import FilterOption, OlderThanFilter, OrgFilter, YesOption, run_bulk, selection
from katsched.cli.common import ConfigOption, JsonOption, console, open_queue, print_json
from katsched.cli.render import task_table
from katsched.core.filters import FilterExpr, parse_filter_request, parse_filters
from katsched.core.models import SchedulerKind, TaskStatus
from katsched.core.ports import PoppedBy, TaskDraft, TaskQuery
from katsched.errors import InvalidItem, NotAllowed

app = typer.Typer(help="Look at, push to and pop from the queues.", no_args_is_help=True)

SchedulerOption = Annotated[
    SchedulerKind, typer.Option("--scheduler", "-s", help="boefje, normalizer or report.")
]
PURGED = "purged by an operator (katsched queue purge)"
LimitOption = Annotated[int, typer.Option("--limit", "-n", min=1, help="How many tasks at most.")]


def read_json_argument(value: str, name: str) -> Any:
    """A JSON document given inline, as @FILE, or as - for standard input."""
    try:
        text = (
            sys.stdin.read()
            if value == "-"
            else Path(value[1:]).read_text()
            if value.startswith("@")
            else value
        )
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {value[1:]}: {exc.strerror}", param_hint=name) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", param_hint=name
        ) from exc


def cli_runner() -> PoppedBy:
    """What `tasks show` and `status` name as the holder of a task popped from the command line. Looked up
    when popping: reading the version from the package metadata costs the other commands time."""
    from katsched import __version__

    return PoppedBy("cli", f"katsched/{__version__} (command line)")


def parse_filter_option(value: str | None) -> FilterExpr | None:
    if value is None:
        return None
    document = read_json_argument(value, "--filter")
    if isinstance(document, dict) and "filters" in document:
        return parse_filter_request(document, "task")
    return parse_filters(document, "task")


@app.command("ls")
def list_command(
    scheduler: Annotated[SchedulerKind | None, typer.Option("--scheduler", "-s")] = None,
    org: Annotated[str | None, typer.Option("--org", "-o", help="Organisation code.")] = None,
    status: Annotated[TaskStatus, typer.Option("--status", help="Task status.")] = TaskStatus.QUEUED,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0)] = 20,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """List tasks, newest first (queued ones unless --status says otherwise)."""

    query = TaskQuery(
        scheduler_id=scheduler.value if scheduler else None, organisation=org, status=status, limit=limit
    )
    page = open_queue(config, read_only=True).list_tasks(query)
    if as_json:
        print_json({"count": page.count, "results": page.tasks})
        return
    console().print(
        task_table(page.tasks, f"{len(page.tasks)} of {page.count} {status.value} tasks", console().width)
    )


@app.command("push")
def push_command(
    scheduler: SchedulerOption,
    org: Annotated[str, typer.Option("--org", "-o", help="Organisation code.")],
    data: Annotated[str, typer.Option("--data", "-d", help="Task data as JSON, @FILE or - for stdin.")],
    priority: Annotated[int, typer.Option("--priority", "-p", help="Lower is served first; 1 = manual.")] = 1,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Push one task onto a queue."""

    document = read_json_argument(data, "--data")
    if not isinstance(document, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--data")
    stated = document.get("organization")
    if stated is not None and stated != org:
        raise InvalidItem(
            f'--org is {org} but --data says "organization": {json.dumps(stated)}; give one value'
        )
    try:
        task = open_queue(config).push(TaskDraft(scheduler.value, org, priority, document))
    except NotAllowed as refused:
        if refused.twin_id is None:
            raise
        raise NotAllowed(
            f"task {refused.twin_id} with the same identity is already queued on {scheduler.value}, and the "
            "push policy does not allow replacing it (see `katsched tasks show` for it)"
        ) from None
    if as_json:
        print_json(task)
        return
    console().print(f"pushed {task.id} to {task.scheduler_id} (priority {task.priority}, hash {task.hash})")


@app.command("pop")
def pop_command(
    scheduler: SchedulerOption,
    limit: LimitOption = 1,
    filter_: Annotated[str | None, typer.Option("--filter", "-f", help="Filter as JSON, @FILE or -.")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Claim the best queued tasks (they become dispatched) and print them."""
    filters = parse_filter_option(filter_)
    tasks = open_queue(config).pop(scheduler.value, limit, filters, popped_by=cli_runner())
    if as_json:
        print_json(tasks)
        return
    console().print(task_table(tasks, f"popped {len(tasks)} task(s) from {scheduler.value}", console().width))


@app.command("peek")
def peek_command(
    scheduler: SchedulerOption,
    limit: LimitOption = 10,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Show the tasks a pop would hand out next, without claiming them."""
    tasks = open_queue(config, read_only=True).peek(scheduler.value, limit)
    if as_json:
        print_json(tasks)
        return
    console().print(task_table(tasks, f"next {len(tasks)} task(s) of {scheduler.value}", console().width))


@app.command("stats")
def stats_command(as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """Task counts per scheduler and status."""
    from rich.table import Table

    totals: dict[str, dict[str, int]] = {
        kind.value: {s.value: 0 for s in TaskStatus} for kind in SchedulerKind
    }
    for scheduler_id, _organisation, status, number in open_queue(config, read_only=True).counts():
        totals.setdefault(scheduler_id, {s.value: 0 for s in TaskStatus})[status.value] += number
    if as_json:
        print_json(totals)
        return
    # A row per status, a column per scheduler: three numbers across fit any terminal.
    table = Table(title="tasks per status and scheduler", title_justify="left")
    table.add_column("status")
    for scheduler_id in totals:
        table.add_column(scheduler_id, justify="right")
    for status in TaskStatus:
        table.add_row(status.value, *(str(counts[status.value]) for counts in totals.values()))
    console().print(table)


@app.command("purge")
def purge_command(
    scheduler: SchedulerOption,
    org: OrgFilter = None,
    older_than: OlderThanFilter = None,
    filter_: FilterOption = None,
    yes: YesOption = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Empty a queue: cancel every queued task of the scheduler (narrowed by the options), after showing how
    many and asking. The tasks stay, cancelled, with the reason in their history; dispatched and running
    tasks are left to their runners."""
    chosen = selection(
        [TaskStatus.QUEUED], scheduler=scheduler, org=org, older_than=older_than, filter_=filter_
    )
    run_bulk(
        open_queue(config),
        chosen,
        TaskStatus.CANCELLED,
        verb="purge",
        describe=f"queued task(s) from {scheduler.value}",
        reason=PURGED,
        yes=yes,
        as_json=as_json,
    )
