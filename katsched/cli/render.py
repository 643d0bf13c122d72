"""Rich renderings of tasks for people; scripts use --json."""

from datetime import datetime
from typing import Any

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


def task_table(tasks: list[Task], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("id", "scheduler", "organisation", "priority", "status", "what", "created", "modified"):
        table.add_column(column, overflow="fold", no_wrap=column in {"id", "priority", "created", "modified"})
    for task in tasks:
        table.add_row(
            str(task.id),
            task.scheduler_id,
            task.organisation,
            str(task.priority),
            f"[{STATUS_STYLE.get(task.status, '')}]{task.status.value}[/]",
            describe(task.data),
            when(task.created_at),
            when(task.modified_at),
        )
    return table
