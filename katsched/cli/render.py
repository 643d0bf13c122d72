"""Rich renderings of tasks for people; scripts use --json."""

from datetime import datetime
from typing import Any

from rich import box
from rich.table import Table

from katsched.core.models import Task, TaskStatus

SCHEDULER_SHORT = {"boefje": "boefje", "normalizer": "norm", "report": "report"}
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


def short(text: str, most: int) -> str:
    """`text`, cut to `most` characters with an ellipsis: narrow tables abbreviate rather than drop."""
    return text if len(text) <= most else text[: most - 1] + "…"


def where(task: Task, wide: bool) -> str:
    """scheduler/organisation; narrow tables abbreviate both (`norm/acme-corpor…`)."""
    if wide:
        return f"{task.scheduler_id}/{task.organisation}"
    scheduler = SCHEDULER_SHORT.get(task.scheduler_id, short(task.scheduler_id, 6))
    return f"{scheduler}/{short(task.organisation, 12)}"


def task_table(tasks: list[Task], title: str, width: int = 80) -> Table:
    """Every column at any width: below 120 columns ids are cut to their first 8 digits (`tasks show` takes
    a prefix), scheduler and organisation abbreviated, and the creation time left out."""
    wide = width >= 120
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True)
    table.add_column("scheduler/org" if wide else "sched/org", no_wrap=True)
    table.add_column("prio", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("what", overflow="fold")
    if wide:
        table.add_column("created", no_wrap=True)
    for task in tasks:
        status = f"[{STATUS_STYLE.get(task.status, '')}]{task.status.value}[/]"
        row = [str(task.id) if wide else str(task.id)[:8], where(task, wide), str(task.priority), status]
        row.append(describe(task.data))
        table.add_row(*row, *([when(task.created_at)] if wide else []))
    return table
