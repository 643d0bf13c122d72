"""`katsched tasks`: one task at a time."""

import uuid
from typing import Annotated

import typer
from rich.table import Table

from katsched.cli.common import ConfigOption, JsonOption, console, open_queue, print_json
from katsched.cli.render import task_table, when
from katsched.core.models import TaskStatus

app = typer.Typer(help="Show, cancel and change the status of one task.", no_args_is_help=True)

TaskId = Annotated[uuid.UUID, typer.Argument(help="The task's id.")]


@app.command("show")
def show_command(task_id: TaskId, as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """A task with its data and status history."""
    queue = open_queue(config)
    task = queue.get(task_id)
    history = queue.history(task_id)
    if as_json:
        document = task.model_dump(mode="json")
        document["history"] = [{"status": s.value, "at": at.isoformat(), "reason": r} for s, at, r in history]
        print_json(document)
        return
    console.print(task_table([task], f"task {task.id}", console.width))
    console.print_json(data=task.data)
    table = Table(title="history", title_justify="left")
    for column in ("at", "status", "reason"):
        table.add_column(column)
    for status, at, reason in history:
        table.add_row(when(at), status.value, reason or "")
    console.print(table)


@app.command("cancel")
def cancel_command(task_id: TaskId, as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """Cancel a task that has not finished."""
    task = open_queue(config).cancel(task_id, reason="cancelled from the command line")
    if as_json:
        print_json(task)
        return
    console.print(f"cancelled {task.id}")


@app.command("set-status")
def set_status_command(
    task_id: TaskId,
    status: Annotated[TaskStatus, typer.Argument(help="The new status.")],
    reason: Annotated[str | None, typer.Option("--reason", help="Recorded in the task's history.")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Move a task to another status (checked against the transition table)."""
    task = open_queue(config).set_status(task_id, status, reason)
    if as_json:
        print_json(task)
        return
    console.print(f"{task.id} is now {task.status.value}")
