"""`katsched schedules`: look at the blueprints of recurring tasks, switch them on and off, run one now.

`ls` and `show` only read: they open the database as it is and never create or migrate it. The store is
imported inside each command, so `katsched --help` does not load SQLAlchemy.
"""

import uuid
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from katsched.cli.common import ConfigOption, JsonOption, console, print_json
from katsched.cli.render import STATUS_STYLE, describe, when
from katsched.core.models import Schedule, SchedulerKind

if TYPE_CHECKING:
    from katsched.store.schedules import SqlScheduleStore

app = typer.Typer(help="List, show, enable, disable and run recurring schedules.", no_args_is_help=True)

ScheduleId = Annotated[uuid.UUID, typer.Argument(help="The schedule's id.")]


def _store(config: ConfigOption, *, read_only: bool) -> "SqlScheduleStore":
    from katsched.cli.common import open_engine, open_read_only
    from katsched.clock import SystemClock
    from katsched.config import load_settings
    from katsched.wiring import schedule_store

    settings = load_settings(config)
    engine = open_read_only(settings) if read_only else open_engine(settings)
    return schedule_store(engine, SystemClock())


def schedule_table(found: list[Schedule], title: str, width: int) -> Table:
    """Full ids (people copy them into the other commands); the deadline and the blueprint as width allows."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True)
    table.add_column("scheduler/org", overflow="fold")
    table.add_column("on", no_wrap=True)
    table.add_column("next", no_wrap=True)
    if width >= 120:
        table.add_column("cron", no_wrap=True)
        table.add_column("what", overflow="fold")
    for schedule in found:
        row = [
            str(schedule.id),
            f"{schedule.scheduler_id}/{schedule.organisation}",
            "yes" if schedule.enabled else "[dim]no[/]",
            when(schedule.deadline_at) if schedule.deadline_at else "-",
        ]
        if width >= 120:
            row += [schedule.schedule or "-", describe(schedule.data)]
        table.add_row(*row)
    return table


@app.command("ls")
def list_command(
    scheduler: Annotated[SchedulerKind | None, typer.Option("--scheduler", "-s")] = None,
    org: Annotated[str | None, typer.Option("--org", "-o", help="Organisation code.")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enabled/--disabled", help="Only enabled, or only disabled, schedules.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=0)] = 20,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """List schedules, newest first."""
    from katsched.core.ports import ScheduleQuery

    query = ScheduleQuery(
        scheduler_id=scheduler.value if scheduler else None, organisation=org, enabled=enabled, limit=limit
    )
    page = _store(config, read_only=True).list_schedules(query)
    if as_json:
        print_json({"count": page.count, "results": [s.model_dump(mode="json") for s in page.schedules]})
        return
    title = f"{len(page.schedules)} of {page.count} schedules"
    console().print(schedule_table(page.schedules, title, console().width))


@app.command("show")
def show_command(schedule_id: ScheduleId, as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """A schedule with its blueprint and its latest tasks."""
    from katsched.core.filters import parse_filters
    from katsched.core.ports import TaskQuery
    from katsched.store.queue import SqlTaskQueue

    store = _store(config, read_only=True)
    schedule = store.get(schedule_id)
    its_tasks = parse_filters(
        [{"column": "schedule_id", "operator": "==", "value": str(schedule_id)}], "task"
    )
    recent = SqlTaskQueue(store.engine, store.clock).list_tasks(TaskQuery(filters=its_tasks, limit=5)).tasks
    if as_json:
        document = schedule.model_dump(mode="json")
        document["tasks"] = [task.model_dump(mode="json") for task in recent]
        print_json(document)
        return
    console().print(schedule_table([schedule], f"schedule {schedule.id}", max(console().width, 120)))
    console().print_json(data=schedule.data)
    table = Table(title="latest tasks", title_justify="left", box=box.SIMPLE_HEAD)
    for column in ("id", "status", "changed"):
        table.add_column(column, no_wrap=True)
    for task in recent:
        status = f"[{STATUS_STYLE.get(task.status, '')}]{task.status.value}[/]"
        table.add_row(str(task.id), status, when(task.modified_at))
    console().print(table)


def _switch(schedule_id: uuid.UUID, enabled: bool, as_json: bool, config: ConfigOption) -> None:
    schedule = _store(config, read_only=False).update(schedule_id, {"enabled": enabled})
    if as_json:
        print_json(schedule)
        return
    console().print(f"schedule {schedule.id} is {'enabled' if enabled else 'disabled'}")


@app.command("enable")
def enable_command(schedule_id: ScheduleId, as_json: JsonOption = False, config: ConfigOption = None) -> None:
    """Let the schedule plan tasks again (from its current deadline)."""
    _switch(schedule_id, True, as_json, config)


@app.command("disable")
def disable_command(
    schedule_id: ScheduleId, as_json: JsonOption = False, config: ConfigOption = None
) -> None:
    """Stop the schedule from planning tasks; it is kept, and `enable` brings it back."""
    _switch(schedule_id, False, as_json, config)


@app.command("run-now")
def run_now_command(
    schedule_id: ScheduleId, as_json: JsonOption = False, config: ConfigOption = None
) -> None:
    """Make the schedule due now. It does not push a task itself: the daemon's next rescheduling run (every
    [recurring] reschedule_interval seconds) plans it, with the same checks as any due schedule, unless
    the schedule still has an unfinished task."""
    from katsched.errors import NotAllowed

    store = _store(config, read_only=False)
    if not store.get(schedule_id).enabled:
        raise NotAllowed(
            f"schedule {schedule_id} is disabled: run `katsched schedules enable {schedule_id}` first"
        )
    schedule = store.update(schedule_id, {"deadline_at": store.clock.now()})
    if as_json:
        print_json(schedule)
        return
    console().print(f"schedule {schedule.id} is due now: the daemon's next rescheduling run plans it")
