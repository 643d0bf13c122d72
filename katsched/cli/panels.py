"""The sections of `katsched status`'s frame, each drawn from one read-only snapshot (`store.overview`) and,
for the daemon's jobs, services and intake, the components its heartbeat row carries. Pure rendering: no
I/O; `katsched.cli.dashboard` lays them out and runs the command."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from katsched.config import Settings
    from katsched.store.daemon_state import DaemonState
    from katsched.store.overview import Overview

BLOCKS = "▁▂▃▄▅▆▇█"
STATE_STYLE = {"ok": "green", "connected": "green", "running": "green", "static": "cyan", "down": "red"}


def stale_after(settings: Settings) -> float:
    """Seconds without a heartbeat after which a daemon that did not say it stopped is taken for dead."""
    from katsched.store.daemon_state import stale_after as after_missed_beats

    return after_missed_beats(settings.recurring.metrics_interval)


def peers(overview: Overview) -> list[DaemonState]:
    """The daemons that have not said they stopped, silent ones included, freshest heartbeat first."""
    return [daemon for daemon in overview.daemons if daemon.stopped_at is None]


def silent(daemon: DaemonState, overview: Overview, settings: Settings) -> bool:
    return daemon.stopped_at is None and daemon.stale(overview.taken_at, stale_after(settings))


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
    running = peers(overview)
    if len(running) > 1:
        quiet = sum(1 for daemon in running if silent(daemon, overview, settings))
        line.append(f"{len(running)} daemons", style="green" if quiet < len(running) else "red")
        return line.append(f", {quiet} silent", style="red") if quiet else line
    daemon = running[0] if running else overview.daemons[0]
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
    title: str, rows: Sequence[tuple[str | Text, ...]], columns: tuple[str, ...], room: int
) -> RenderableType:
    """A section that is one line (its first entries, cut at the width) when `room` is 0, or a table of
    up to `room` rows when the terminal is tall enough."""
    if not rows:
        return Text(f"{title}: ", style="bold").append("none", style="dim")
    if room == 0:
        line = Text(f"{title}: ", style="bold", no_wrap=True, overflow="ellipsis")
        entries = [
            Text(" ").join(Text(cell) if isinstance(cell, str) else cell for cell in row if cell)
            for row in rows
        ]
        return line.append_text(Text(" · ").join(entries))
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


def daemons(overview: Overview, settings: Settings, room: int) -> RenderableType:
    """Every daemon on the database that has not said it stopped: who, since when, its last heartbeat (a
    silent one says so) and the once-only jobs it holds."""
    now = overview.taken_at
    rows: list[tuple[str | Text, ...]] = []
    for daemon in peers(overview):
        beat = since(daemon.heartbeat_at, now)
        quiet = silent(daemon, overview, settings)
        state = Text(f"silent {beat}", style="red") if quiet else Text(f"beat {beat}")
        if room == 0:  # one line: who, alive or not, how many leases
            held = (
                f"{len(daemon.leases)} lease{'s' if len(daemon.leases) != 1 else ''}" if daemon.leases else ""
            )
            rows.append((daemon.id, state, held))
            continue
        uptime = f"up {since(daemon.started_at, now)}"
        rows.append((daemon.id, daemon.version, uptime, state, ",".join(daemon.leases) or "-"))
    return listing("daemons", rows, ("daemon", "version", "up", "heartbeat", "leases"), room)


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


def blocked(counts: dict[str, int]) -> Text:
    text = Text("blocked (last hour): ", style="bold")
    if not counts:
        return text.append("none", style="dim")
    return text.append(" · ".join(f"{reason} {n:,}" for reason, n in counts.items()), style="yellow")
