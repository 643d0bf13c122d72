"""`katsched status`: a live view of the queues, the throughput and the daemon, read from the store.

It never writes and never migrates: it reads one snapshot per refresh (`katsched.store.overview`) plus the
daemon's heartbeat row, so it works from any machine that can read the database, whether or not the daemon
runs. At 80 columns the sections stack; from 120 columns they sit in two columns.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table

from katsched.cli.common import ConfigOption, JsonOption, open_read_only, print_json
from katsched.cli.panels import (
    blocked,
    daemons,
    failures,
    header,
    intake,
    jobs,
    organisations,
    outcomes,
    peers,
    queues,
    runners,
    schedules,
    services,
    silent,
    supervised,
    throughput,
    unplanned,
)
from katsched.clock import SystemClock
from katsched.config import Settings, load_settings
from katsched.core.explain import BLOCKING

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from katsched.store.daemon_state import DaemonState
    from katsched.store.overview import Overview

WIDE = 120
COMPACT_HEIGHT = 24  # the classic terminal: every list is one line


# -- data ------------------------------------------------------------------------------------------------


def snapshot(engine: Engine, settings: Settings, now: datetime) -> Overview:
    from katsched.store.overview import take_overview

    overdue_after = timedelta(seconds=max(3 * settings.recurring.reschedule_interval, 300))
    return take_overview(engine, now, overdue_after=overdue_after)


def heartbeat_fresh(overview: Overview, settings: Settings) -> bool:
    """Some daemon beat within the last three heartbeat intervals and has not said it stopped: the
    scheduler runs. With several daemons one alive is enough (the others' leases and claims lapse and
    move to it); a silent peer is flagged in the frame and in `--json`, not in the exit code."""
    return any(not silent(daemon, overview, settings) for daemon in peers(overview))


def as_json(overview: Overview, settings: Settings) -> dict[str, Any]:
    document = asdict(overview)
    for daemon, state in zip(document["daemons"], overview.daemons, strict=True):
        daemon["stale"] = silent(state, overview, settings)
        daemon["alive"] = state.stopped_at is None and not daemon["stale"]
        daemon["leases"] = state.leases
    return document


def blocked_last_hour(engine: Engine, now: datetime) -> dict[str, int]:
    """The planners' refusals an operator must act on, of the last hour, counted by reason (`explain` tells
    which objects): from the last decision kept per organisation, subject and plugin."""
    from katsched.store.decisions import count_refusals

    return count_refusals(engine, now - timedelta(hours=1), sorted(BLOCKING))


# -- the frame -------------------------------------------------------------------------------------------


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
    several = len(peers(overview)) > 1
    wide = width >= WIDE
    rows = room(height, wide)
    left: list[RenderableType] = [queues(overview), throughput(overview, width // 2 if wide else width)]
    left += [outcomes(overview), runners(overview, rows), failures(overview, rows)]
    left.append(organisations(overview, rows))
    if refusals is not None:
        left.append(blocked(refusals))
    right: list[RenderableType] = [
        daemons(overview, settings, rows // 2),
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
    title = f"daemon {daemon.id}" if several and daemon is not None else "daemon"
    grid.add_row(Panel(Group(*left), title="queues"), Panel(Group(*right), title=title))
    return Group(header(overview, settings), grid)


def live_daemon(daemons: list[DaemonState]) -> DaemonState | None:
    """Whose jobs, services and intake the frame shows: the freshest daemon not stopped, else the last one."""
    running = [daemon for daemon in daemons if daemon.stopped_at is None]
    shown = running or daemons
    return shown[0] if shown else None


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
