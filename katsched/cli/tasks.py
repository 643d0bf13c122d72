"""`katsched tasks`: one task at a time, and the bulk actions over tasks an operator selects."""

import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from katsched.cli.bulk import (
    FilterOption,
    OlderThanFilter,
    OrgFilter,
    SchedulerFilter,
    StatusFilter,
    YesOption,
    run_bulk,
    selection,
    statuses_or,
)
from katsched.cli.common import (
    ConfigOption,
    JsonOption,
    TaskIdArgument,
    console,
    open_queue,
    print_json,
    resolve_task_id,
)
from katsched.cli.render import task_table, when
from katsched.core.models import TaskStatus
from katsched.errors import InvalidTransition, NotAllowed

if TYPE_CHECKING:
    from katsched.store.queue import SqlTaskQueue

app = typer.Typer(
    help="Show one task; cancel, requeue or change the status of one task or of many.", no_args_is_help=True
)

# The history's reason for an operator's bulk action: `tasks show` tells them from a runner's or a sweep's.
OPERATOR_CANCELLED = "cancelled by an operator (katsched tasks cancel)"
OPERATOR_REQUEUED = "requeued by an operator (katsched tasks requeue)"


@app.command("show")
def show_command(task_id: TaskIdArgument, as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """A task with its data and status history."""
    from rich.table import Table

    queue = open_queue(config, read_only=True)
    task = queue.get(resolve_task_id(queue, task_id))
    history = queue.history(task.id)
    runner = queue.popped_by(task.id)
    if as_json:
        document = task.model_dump()
        document["popped_by"] = (
            {"address": runner.address, "agent": runner.agent, "at": runner.at}
            if runner is not None and runner.at is not None
            else None
        )
        document["history"] = [{"status": s.value, "at": at, "reason": r} for s, at, r in history]
        print_json(document)
        return
    console().print(task_table([task], f"task {task.id}", console().width))
    if runner is not None and runner.at is not None:
        console().print(
            f"popped by {runner.address or '?'} ({runner.agent or 'no user agent'}) at {when(runner.at)}"
        )
    console().print_json(data=task.data)
    table = Table(title="history", title_justify="left")
    for column in ("at", "status", "reason"):
        table.add_column(column)
    for status, at, reason in history:
        table.add_row(when(at), status.value, reason or "")
    console().print(table)


@app.command("set-status")
def set_status_command(
    task_id: TaskIdArgument,
    status: Annotated[TaskStatus, typer.Argument(help="The new status.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Recorded in the task's history.")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Move a task to another status (checked against the transition table)."""
    queue = open_queue(config)
    task = queue.set_status(resolve_task_id(queue, task_id), status, reason)
    if as_json:
        print_json(task)
        return
    console().print(f"{task.id} is now {task.status.value}")


OptionalTaskId = Annotated[
    str | None,
    typer.Argument(
        help="One task's id (or its first 4+ hex digits); without it, every task the options select."
    ),
]


def _single(task_id: str | None, *options: object) -> bool:
    """A task id and the selection options do not mix."""
    if task_id is not None and any(option not in (None, []) for option in options):
        raise typer.BadParameter(
            "give a task id or selection options (--scheduler, --org, …), not both", param_hint="TASK_ID"
        )
    return task_id is not None


@app.command("cancel")
def cancel_command(
    task_id: OptionalTaskId = None,
    scheduler: SchedulerFilter = None,
    org: OrgFilter = None,
    status: StatusFilter = None,
    older_than: OlderThanFilter = None,
    filter_: FilterOption = None,
    yes: YesOption = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Cancel one task, or every unfinished task the options select (queued ones unless --status says
    otherwise), after showing how many and asking."""
    if _single(task_id, scheduler, org, status, older_than, filter_):
        assert task_id is not None
        queue = open_queue(config)
        task = queue.cancel(resolve_task_id(queue, task_id), reason="cancelled from the command line")
        if as_json:
            print_json(task)
            return
        console().print(f"cancelled {task.id}")
        return
    from katsched.core.transitions import check_transition

    statuses = statuses_or(status, [TaskStatus.QUEUED])
    for current in statuses:
        check_transition(current, TaskStatus.CANCELLED)
    chosen = selection(statuses, scheduler=scheduler, org=org, older_than=older_than, filter_=filter_)
    run_bulk(
        open_queue(config),
        chosen,
        TaskStatus.CANCELLED,
        verb="cancel",
        describe=f"{'/'.join(statuses)} task(s)",
        reason=OPERATOR_CANCELLED,
        yes=yes,
        as_json=as_json,
    )


@app.command("requeue")
def requeue_command(
    task_id: OptionalTaskId = None,
    scheduler: SchedulerFilter = None,
    org: OrgFilter = None,
    status: StatusFilter = None,
    older_than: OlderThanFilter = None,
    filter_: FilterOption = None,
    yes: YesOption = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Put failed or cancelled tasks back on their queue, keeping their id and priority. Recorded in each
    task's history as an operator's action. A task whose identity is already queued again stays as it is."""
    from katsched.core.transitions import REQUEUEABLE, check_transition
    from katsched.store import bulk

    single = _single(task_id, scheduler, org, status, older_than, filter_)
    statuses = statuses_or(status, REQUEUEABLE)
    for current in statuses:
        check_transition(current, TaskStatus.QUEUED, by_operator=True)
    queue = open_queue(config)
    one = resolve_task_id(queue, task_id) if task_id is not None else None
    chosen = selection(
        statuses, scheduler=scheduler, org=org, older_than=older_than, filter_=filter_, task_id=one
    )
    selected = bulk.count(queue.engine, chosen)
    eligible = bulk.count(queue.engine, chosen, bulk.requeueable)
    if single and not eligible:
        _explain_refused_requeue(queue, one)
    run_bulk(
        queue,
        chosen,
        TaskStatus.QUEUED,
        verb="requeue",
        describe=f"{'/'.join(statuses)} task(s)",
        reason=OPERATOR_REQUEUED,
        yes=yes or single,
        as_json=as_json,
        requeue=True,
        extra={"selected": selected, "queued_twin": selected - eligible},
    )


def _explain_refused_requeue(queue: "SqlTaskQueue", task_id: uuid.UUID | None) -> None:
    from katsched.core.transitions import REQUEUEABLE

    assert task_id is not None
    task = queue.get(task_id)
    if task.status not in REQUEUEABLE:
        raise InvalidTransition(
            f"task {task_id} is {task.status}: only failed or cancelled tasks are requeued"
        )
    raise NotAllowed(f"task {task_id} is already queued again as another task with hash {task.hash}")
