"""`katsched explain`: why a boefje does or does not run on an object, or what became of a raw file.

It runs the planners' own gather and decide steps against the configured KAT services and database, and
writes nothing. A service that is down is named; the partial answer is printed and the exit code is that of
a service error.
"""

import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from katsched.cli.common import ConfigOption, JsonOption

if TYPE_CHECKING:
    from rich.console import RenderableType

    from katsched.core.explain import BoefjeExplanation, Explanation, NormalizerExplanation
    from katsched.schedulers.explain import Explainer

OrgArgument = Annotated[str, typer.Argument(help="The organisation's code.", show_default=False)]
OoiArgument = Annotated[
    str | None, typer.Argument(help="The object's reference, e.g. Hostname|internet|example.com.")
]
BoefjeOption = Annotated[str | None, typer.Option("--boefje", "-b", help="Only this boefje.")]
RawOption = Annotated[
    uuid.UUID | None, typer.Option("--raw", help="A raw file id: explain its normalizers instead.")
]
OperationOption = Annotated[
    str, typer.Option("--operation", help="The mutation to assume: create or update.")
]
KIND_STYLE = {"queue": "green", "wait": "cyan", "active": "blue", "planned": "blue", "blocked": "red"}


def explain_command(
    organisation: OrgArgument,
    ooi: OoiArgument = None,
    boefje: BoefjeOption = None,
    raw: RawOption = None,
    operation: OperationOption = "update",
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """The decision the planner would take now for each boefje of ORG that takes OOI, and why (dry run)."""
    from katsched.cli.common import console, print_json
    from katsched.core.models import MutationOperation
    from katsched.errors import ConfigError, ServiceError

    if (ooi is None) == (raw is None):
        raise ConfigError("explain: give an object reference (OOI) or --raw RAW_ID, not both, not neither")
    if raw is not None and boefje is not None:
        raise ConfigError("explain: --boefje goes with an object, not with --raw")
    if operation not in ("create", "update"):
        raise ConfigError(f"explain: --operation must be create or update, not {operation!r}")
    with _explainer(config) as explainer:
        if raw is not None:
            explanation = explainer.explain_raw_file(organisation, raw)
        else:
            assert ooi is not None
            explanation = explainer.explain_object(organisation, ooi, boefje, MutationOperation(operation))
    if as_json:
        print_json(explanation)
    else:
        console().print(render(explanation))
    if explanation.unavailable:
        down = ", ".join(f"{name} ({error})" for name, error in sorted(explanation.unavailable.items()))
        raise ServiceError(f"partial answer: unavailable: {down}")


class _explainer:
    """The explainer over the configured services and database (read-only: never migrated here)."""

    def __init__(self, config: ConfigOption) -> None:
        from katsched import wiring
        from katsched.cli.common import open_read_only
        from katsched.clock import SystemClock
        from katsched.config import load_settings

        settings = load_settings(config)
        self.core = wiring.build_core(settings, open_read_only(settings), SystemClock())

    def __enter__(self) -> "Explainer":
        return self.core.planners.explainer

    def __exit__(self, *exc_info: object) -> None:
        self.core.close()


def render(explanation: "Explanation") -> "RenderableType":
    from rich.console import Group
    from rich.text import Text

    head = Text(f"{explanation.organisation} · ", style="bold")
    if explanation.raw is not None:
        head.append(f"raw file {explanation.raw} ({', '.join(explanation.mime_types) or 'no mime types'})")
    else:
        level = explanation.object_scan_level
        head.append(f"{explanation.ooi} (scan level {'?' if level is None else level})")
        head.append(f" · assuming a mutation: {explanation.operation}", style="dim")
    parts: list[RenderableType] = [head]
    for service, error in sorted(explanation.unavailable.items()):
        parts.append(Text(f"{service} unavailable: {error}", style="red"))
    parts += [_boefje(entry) for entry in explanation.boefjes]
    parts += [_normalizer(entry) for entry in explanation.normalizers]
    if not explanation.boefjes and not explanation.normalizers:
        parts.append(Text("no plugin takes it", style="yellow"))
    return Group(*parts)


def _verdict(name: str, kind: str, verdict: str) -> "RenderableType":
    from rich.text import Text

    return Text.assemble("\n", (name, "bold"), ": ", (verdict, KIND_STYLE.get(kind, "yellow")))


def _boefje(entry: "BoefjeExplanation") -> "RenderableType":
    from rich.console import Group
    from rich.text import Text

    facts = [
        f"enabled: {entry.enabled} · scan level: boefje {entry.plugin_scan_level}, object "
        f"{entry.object_scan_level} · run_on: {', '.join(entry.run_on) or '-'}",
        f"last run: {_last_run(entry)}",
        f"grace period: {entry.grace_period_seconds:g}s · interval: {entry.interval_minutes or '-'} min"
        + (f" · ends at {_at(entry.eligible_at)}" if entry.eligible_at else ""),
    ]
    if entry.active_task is not None:
        task = entry.active_task
        facts.append(f"active task: {task.id} {task.status} since {_at(task.since)}")
        if task.popped_by is not None:
            facts.append(f"held by: {task.popped_by}, popped at {_at(task.popped_by.at)}")
    facts.append(f"schedule: {_schedule(entry)}")
    if entry.twins:
        facts.append(f"deduplicated with: {', '.join(entry.twins)}")
    if entry.last_decision is not None:
        last = entry.last_decision
        pushed = f" (task {last.task_id})" if last.task_id else ""
        facts.append(f"last decision: {last.action} {last.reason} at {_at(last.decided_at)}{pushed}")
    lines = [Text(f"  {fact}") for fact in facts]
    return Group(_verdict(entry.boefje, entry.kind, entry.verdict), *lines)


def _normalizer(entry: "NormalizerExplanation") -> "RenderableType":
    from rich.console import Group
    from rich.text import Text

    facts = [f"enabled: {entry.enabled}"]
    if entry.task is not None:
        facts.append(f"task: {entry.task.id} {entry.task.status} since {_at(entry.task.since)}")
    if entry.last_decision is not None:
        last = entry.last_decision
        facts.append(f"last decision: {last.action} {last.reason} at {_at(last.decided_at)}")
    lines = [Text(f"  {fact}") for fact in facts]
    return Group(_verdict(entry.normalizer, entry.kind, entry.verdict), *lines)


def _last_run(entry: "BoefjeExplanation") -> str:
    run = entry.last_run
    if run is None or run.at is None:
        return "never"
    return f"{_at(run.at)} ({run.source})"


def _schedule(entry: "BoefjeExplanation") -> str:
    schedule = entry.schedule
    if schedule is None:
        return "none"
    if not schedule.enabled:
        return f"disabled ({schedule.disabled_reason or 'by hand or API'})"
    every = schedule.cron or (f"every {schedule.interval_minutes} min" if schedule.interval_minutes else None)
    deadline = _at(schedule.deadline_at) if schedule.deadline_at else "-"
    return f"enabled · {every or 'grace period'} · next deadline {deadline}"


def _at(moment: object) -> str:
    from datetime import datetime

    from katsched.core.explain import stamp

    return stamp(moment) if isinstance(moment, datetime) else "-"
