"""Rich renderings of tasks for people; scripts use --json."""

from datetime import datetime
from typing import Any

from rich import box
from rich.table import Table

from katsched.core.models import Task, TaskStatus

STATUS_STYLE = {
    TaskStatus.QUEUED: "cyan",
    TaskStatus.DISPATCHED: "blue",
    TaskStatus.RUNNING: "yellow",
    TaskStatus.COMPLETED: "green",
    TaskStatus.FAILED: "red",
    TaskStatus.CANCELLED: "dim",
}


def describe(data: dict[str, Any]) -> str:
    """One line saying what a task does: plugin and input."""
    if "boefje" in data:
        return f"{data['boefje'].get('id')} on {data.get('input_ooi') or '-'}"
    if "normalizer" in data:
        meta = data.get("raw_data", {}).get("boefje_meta", {})
        return f"{data['normalizer'].get('id')} on raw of {meta.get('boefje', {}).get('id', '?')}"
    if "report_recipe_id" in data:
        return f"report {data['report_recipe_id']}"
    return "-"


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def task_table(tasks: list[Task], title: str, width: int = 80) -> Table:
    """Full ids always (people copy them into `tasks show`); the other columns as the width allows."""
    wide = width >= 120
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True)
    if wide:
        table.add_column("scheduler/org", overflow="fold")
    table.add_column("prio", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("what", overflow="fold")
    if wide:
        table.add_column("created", no_wrap=True)
    for task in tasks:
        status = f"[{STATUS_STYLE.get(task.status, '')}]{task.status.value}[/]"
        if wide:
            where = f"{task.scheduler_id}/{task.organisation}"
            table.add_row(
                str(task.id), where, str(task.priority), status, describe(task.data), when(task.created_at)
            )
        else:
            table.add_row(str(task.id), str(task.priority), status, describe(task.data))
    return table
