"""`katsched status`: a live view of the queues, the throughput and the daemon, read from the store.

It never writes and never migrates: it reads one snapshot per refresh (`katsched.store.overview`) plus the
daemon's heartbeat row, so it works from any machine that can read the database, whether or not the daemon
runs. At 80 columns the sections stack; from 120 columns they sit in two columns.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from katsched.cli.common import ConfigOption, JsonOption, open_read_only, print_json
from katsched.clock import SystemClock
from katsched.config import Settings, load_settings
from katsched.core.explain import BLOCKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from katsched.store.daemon_state import DaemonState
    from katsched.store.overview import Overview

WIDE = 120
COMPACT_HEIGHT = 24  # the classic terminal: every list is one line
BLOCKS = "▁▂▃▄▅▆▇█"
STATE_STYLE = {"ok": "green", "connected": "green", "running": "green", "static": "cyan", "down": "red"}


# -- data ------------------------------------------------------------------------------------------------


def snapshot(engine: Engine, settings: Settings, now: datetime) -> Overview:
    from katsched.store.overview import take_overview

    overdue_after = timedelta(seconds=max(3 * settings.recurring.reschedule_interval, 300))
    return take_overview(engine, now, overdue_after=overdue_after)


def stale_after(settings: Settings) -> float:
    """Seconds without a heartbeat after which a daemon that did not say it stopped is taken for dead."""
    return max(3.0 * settings.recurring.metrics_interval, 30.0)


def heartbeat_fresh(overview: Overview, settings: Settings) -> bool:
    """Some daemon beat within the last three heartbeat intervals and has not said it stopped."""
    return any(
        daemon.stopped_at is None and not daemon.stale(overview.taken_at, stale_after(settings))
        for daemon in overview.daemons
    )


def as_json(overview: Overview, settings: Settings) -> dict[str, Any]:
    document = asdict(overview)
    for daemon, state in zip(document["daemons"], overview.daemons, strict=True):
        daemon["alive"] = state.stopped_at is None and not state.stale(
            overview.taken_at, stale_after(settings)
        )
    return document


# -- rendering -------------------------------------------------------------------------------------------


def sparkline(values: list[int], width: int) -> str:
    """One block character per value (the newest `width` of them), scaled to the largest; blank for 0."""
    shown = values[-width:] if width > 0 else []
    peak = max(shown, default=0)
    if peak == 0:
        return " " * len(shown)
    return "".join(
        " " if v == 0 else BLOCKS[min(len(BLOCKS) - 1, (v * len(BLOCKS) - 1) // peak)] for v in shown
    )


def age(seconds: float) -> str:
    """A short duration: 42s, 3m05s, 2h10m, 4d03h."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def since(moment: datetime | None, now: datetime) -> str:
    return "-" if moment is None else age((now - moment).total_seconds())


def styled(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, "yellow"))


def header(overview: Overview, settings: Settings) -> Text:
    now = overview.taken_at
    line = Text.assemble(
        ("katsched", "bold"), f" · {now:%Y-%m-%d %H:%M:%S}Z · ", no_wrap=True, overflow="ellipsis"
    )
    if not overview.daemons:
        return line.append("no daemon has run on this database", style="yellow")
    daemon = overview.daemons[0]
    if daemon.stopped_at is not None:
        return line.append(f"{daemon.id} stopped {since(daemon.stopped_at, now)} ago", style="yellow")
    if daemon.stale(now, stale_after(settings)):
        return line.append(f"{daemon.id} silent for {since(daemon.heartbeat_at, now)}", style="red")
    line.append(daemon.id, style="green")
    return line.append(
        f" up {since(daemon.started_at, now)}, heartbeat {since(daemon.heartbeat_at, now)} ago"
    )


def queues(overview: Overview) -> Table:
    table = Table(box=None, pad_edge=False, expand=True, header_style="bold")
    for column in ("scheduler", "queued", "dispatched", "running", "oldest queued"):
        table.add_column(column, justify="left" if column == "scheduler" else "right", no_wrap=True)
    for load in overview.schedulers:
        oldest = since(load.oldest_queued_at, overview.taken_at)
        table.add_row(
            load.scheduler_id, f"{load.queued:,}", f"{load.dispatched:,}", f"{load.running:,}", oldest
        )
    return table


def throughput(overview: Overview, width: int) -> Table:
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(no_wrap=True)
    table.add_column(ratio=1, no_wrap=True, overflow="crop")
    table.add_column(justify="right", no_wrap=True)
    spark_width = max(10, min(60, width - 30))
    for label, series in (
        ("pushed/min", overview.pushed_per_minute),
        ("popped/min", overview.popped_per_minute),
    ):
        spark = Text(sparkline(series, spark_width), style="cyan")
        table.add_row(label, spark, f"now {series[-1]:,} · hour {sum(series):,}")
    return table


def outcomes(overview: Overview) -> Text:
    text = Text("last 24 h: ", style="bold")
    styles = {"completed": "green", "failed": "red", "cancelled": "dim"}
    for status, count in overview.outcomes_24h.items():
        text.append(f"{status} ").append(f"{count:,}", style=styles.get(status, "")).append("  ")
    return text.append("swept ").append(f"{overview.swept_24h:,}", style="red" if overview.swept_24h else "")


def listing(
    title: str, rows: Sequence[tuple[str, ...]], columns: tuple[str, ...], room: int
) -> RenderableType:
    """A section that is one line (its first entries, cut at the width) when `room` is 0, or a table of
    up to `room` rows when the terminal is tall enough."""
    if not rows:
        return Text(f"{title}: ", style="bold").append("none", style="dim")
    if room == 0:
        line = Text(f"{title}: ", style="bold", no_wrap=True, overflow="ellipsis")
        return line.append(" · ".join(" ".join(row) for row in rows))
    table = Table(box=None, pad_edge=False, expand=True, header_style="bold", title_justify="left")
    table.title = Text(title, style="bold")
    table.add_column(columns[0], no_wrap=True, overflow="ellipsis", ratio=1)
    for column in columns[1:]:
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows[:room]:
        table.add_row(*row)
    return table


def organisations(overview: Overview, room: int) -> RenderableType:
    shown = overview.top_organisations[: max(room, 4)]
    rows = [(org, f"{count:,}") for org, count in shown]
    return listing("top queues", rows, ("organisation", "queued"), room)


def runners(overview: Overview, room: int) -> RenderableType:
    """Who holds the dispatched and running tasks, the longest holder first."""
    rows = []
    for hold in overview.holds:
        name = hold.address or "unrecorded"
        if hold.agent and room:
            name = f"{name} {hold.agent}"
        held = f"{hold.dispatched:,}d/{hold.running:,}r"
        rows.append((name, held, f"oldest {since(hold.oldest_popped_at, overview.taken_at)}"))
    return listing("runners", rows, ("runner", "held", "since"), room)


def failures(overview: Overview, room: int) -> RenderableType:
    rows = [(reason, f"{count:,}") for reason, count in overview.failures_1h]
    return listing("failed, last hour", rows, ("reason", "tasks"), room)


def unplanned(components: dict[str, Any], room: int) -> RenderableType:
    """Events the intake planned nothing for, by reason, since the daemon started."""
    counts = sorted(components.get("unplanned", {}).items(), key=lambda item: (-item[1], item[0]))
    rows = [(reason, f"{count:,}") for reason, count in counts]
    return listing("events planning nothing", rows, ("reason", "events"), room)


def schedules(overview: Overview) -> Text:
    due, now = overview.schedules, overview.taken_at
    text = Text("schedules: ", style="bold").append(f"{due.enabled:,} enabled · ")
    text.append(f"{due.due:,} due", style="yellow" if due.due else "")
    text.append(" · ").append(f"{due.overdue:,} overdue", style="red" if due.overdue else "")
    if due.oldest_due_at is not None:
        text.append(f" (oldest {since(due.oldest_due_at, now)})")
    if due.next_deadline_at is not None:
        text.append(f" · next in {age((due.next_deadline_at - now).total_seconds())}")
    return text


def jobs(components: dict[str, Any], now: datetime) -> Table:
    table = Table(box=None, pad_edge=False, expand=True, header_style="bold")
    for column in ("job", "next", "runs", "failed", "last error"):
        table.add_column(
            column, justify="right" if column in ("next", "runs", "failed") else "left", no_wrap=True
        )
    table.columns[-1].overflow = "ellipsis"
    table.columns[-1].ratio = 1
    for name, job in sorted(components.get("jobs", {}).items()):
        at = job.get("next_run_at")
        upcoming = age((datetime.fromisoformat(at) - now).total_seconds()) if at else "-"
        label = f"{name} x{job['instances']}" if job.get("instances", 1) > 1 else name
        failed = Text(str(job.get("failures", 0)), style="red" if job.get("failures") else "")
        table.add_row(label, upcoming, str(job.get("runs", 0)), failed, job.get("last_error") or "")
    return table


def services(components: dict[str, Any]) -> Text:
    text = Text("services: ", style="bold")
    for name, state in components.get("services", {}).items():
        text.append(f"{name} ").append_text(styled(state)).append("  ")
    return text


def intake(components: dict[str, Any]) -> RenderableType:
    consumers = components.get("consumers", {})
    if not consumers:
        return Text("intake: ", style="bold").append("off", style="dim")
    table = Table.grid(padding=(0, 1))
    for justify in ("left", "left", "left", "right"):
        table.add_column(justify=justify, no_wrap=True)
    for index, (queue, consumer) in enumerate(consumers.items()):
        label = Text("intake:" if index == 0 else "", style="bold")
        table.add_row(label, queue, styled(consumer.get("state", "?")), f"{consumer.get('acked', 0):,} acked")
    return table


def supervised(components: dict[str, Any]) -> Text:
    text = Text("components: ", style="bold")
    for name, slot in components.get("supervisor", {}).items():
        text.append(f"{name} ").append_text(styled(slot.get("state", "?")))
        restarts = slot.get("restarts", 0)
        text.append(f" ({restarts} restart{'s' if restarts != 1 else ''})  " if restarts else "  ")
    return text


def blocked_last_hour(engine: Engine, now: datetime) -> dict[str, int]:
    """The planners' refusals an operator must act on, of the last hour, counted by reason (`explain` tells
    which objects): from the last decision kept per organisation, subject and plugin."""
    from katsched.store.decisions import count_refusals

    return count_refusals(engine, now - timedelta(hours=1), sorted(BLOCKING))


def blocked(counts: dict[str, int]) -> Text:
    text = Text("blocked (last hour): ", style="bold")
    if not counts:
        return text.append("none", style="dim")
    return text.append(" · ".join(f"{reason} {n:,}" for reason, n in counts.items()), style="yellow")


def room(height: int, wide: bool) -> int:
    """Rows each list (runners, failures, top queues) may fill: none beyond one line each on a 24-row
    terminal, a share of every row above that (two columns side by side leave the left one more)."""
    spare = max(0, height - COMPACT_HEIGHT)
    return spare // (2 if wide else 4)


def frame(
    overview: Overview,
    settings: Settings,
    width: int,
    height: int = COMPACT_HEIGHT,
    refusals: dict[str, int] | None = None,
) -> RenderableType:
    """The whole screen for a console `width` columns wide and `height` rows tall."""
    daemon = live_daemon(overview.daemons)
    components = daemon.components if daemon is not None else {}
    wide = width >= WIDE
    rows = room(height, wide)
    left: list[RenderableType] = [queues(overview), throughput(overview, width // 2 if wide else width)]
    left += [outcomes(overview), runners(overview, rows), failures(overview, rows)]
    left.append(organisations(overview, rows))
    if refusals is not None:
        left.append(blocked(refusals))
    right: list[RenderableType] = [
        schedules(overview),
        jobs(components, overview.taken_at),
        services(components),
        intake(components),
        unplanned(components, rows // 2),
        supervised(components),
    ]
    if not wide:
        return Group(header(overview, settings), *left, *right)
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(Panel(Group(*left), title="queues"), Panel(Group(*right), title="daemon"))
    return Group(header(overview, settings), grid)


def live_daemon(daemons: list[DaemonState]) -> DaemonState | None:
    return daemons[0] if daemons else None


# -- the command -----------------------------------------------------------------------------------------

IntervalOption = Annotated[float, typer.Option("--interval", min=0.5, help="Seconds between refreshes.")]
OnceOption = Annotated[bool, typer.Option("--once", help="Print one frame and exit.")]


def status_command(
    config: ConfigOption = None,
    once: OnceOption = False,
    json_output: JsonOption = False,
    interval: IntervalOption = 2.0,
) -> None:
    """Show the queues, runners, failures and the daemon, live until Ctrl-C.

    Who holds which tasks, recent failures, schedules and the daemon's state. With --once, exit 1 when no
    daemon has sent a heartbeat in the last three intervals."""
    settings = load_settings(config)
    engine = open_read_only(settings)
    clock = SystemClock()
    try:
        now = clock.now()
        if json_output:
            document = as_json(snapshot(engine, settings, now), settings)
            document["blocked_last_hour"] = blocked_last_hour(engine, now)
            print_json(document)
        elif once:
            console = Console()
            overview = snapshot(engine, settings, now)
            refusals = blocked_last_hour(engine, now)
            console.print(frame(overview, settings, console.width, console.height, refusals))
            if not heartbeat_fresh(overview, settings):
                raise typer.Exit(1)  # for monitoring scripts: the daemon is down, stopped or silent
        else:
            watch(engine, settings, interval)
    finally:
        engine.dispose()


def watch(engine: Engine, settings: Settings, interval: float) -> None:
    from rich.live import Live

    console = Console()
    clock = SystemClock()
    with Live(console=console, auto_refresh=False, screen=console.is_terminal, transient=False) as live:
        try:
            while True:
                now = clock.now()
                overview, refusals = snapshot(engine, settings, now), blocked_last_hour(engine, now)
                live.update(frame(overview, settings, console.width, console.height, refusals), refresh=True)
                time.sleep(interval)  # the pace of a view a person reads
        except KeyboardInterrupt:
            return
