"""May this task run now? Facts + `now` → a Decision with a stable reason (SPEC §3).

The planners gather the facts (plugin, object, last run, latest task) through the ports, ask these functions,
log the reason once, and act: push on RUN, drop on SKIP, disable the schedule on DISABLE.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from katsched.core.models import OOI, BoefjeMeta, MutationOperation, Plugin, Task, TaskStatus
from katsched.core.transitions import TERMINAL, lease_expired


class Action(StrEnum):
    RUN = "run"
    SKIP = "skip"
    DISABLE = "disable"


class Reason(StrEnum):
    # run
    PERMITTED = "permitted"
    RUN_ON_ALLOWS = "run_on_allows"
    NEVER_RAN = "never_ran"
    INTERVAL_ELAPSED = "interval_elapsed"
    NOT_ACTIVE = "not_active"
    PREVIOUS_STALLED = "previous_stalled"  # the latest task lost its lease: run anyway, the sweep fails it
    SCHEDULE_VALID = "schedule_valid"
    # skip, or disable for a schedule
    PLUGIN_GONE = "plugin_gone"
    PLUGIN_DISABLED = "plugin_disabled"
    NOT_A_BOEFJE = "not_a_boefje"
    PLUGIN_SCAN_LEVEL_UNKNOWN = "plugin_scan_level_unknown"
    NO_SCAN_PROFILE = "no_scan_profile"
    SCAN_LEVEL_TOO_LOW = "scan_level_too_low"
    RUN_ON_EXCLUDES_CREATE = "run_on_excludes_create"
    RUN_ON_EXCLUDES_UPDATE = "run_on_excludes_update"
    OOI_DELETED = "ooi_deleted"
    WITHIN_GRACE_PERIOD = "within_grace_period"
    WITHIN_INTERVAL = "within_interval"
    ALREADY_ACTIVE = "already_active"
    OOI_GONE = "ooi_gone"
    NOT_CONSUMED = "not_consumed"
    NOT_PERMITTED = "not_permitted"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str

    @property
    def runs(self) -> bool:
        return self.action is Action.RUN


def _run(reason: Reason) -> Decision:
    return Decision(Action.RUN, reason)


def _skip(reason: Reason) -> Decision:
    return Decision(Action.SKIP, reason)


def _disable(reason: Reason) -> Decision:
    return Decision(Action.DISABLE, reason)


def boefje_permission(plugin: Plugin, ooi: OOI | None) -> Decision:
    """An enabled boefje may scan an object whose scan level is at least its own; a task without an object
    needs only the first. Missing levels refuse rather than guess."""
    if not plugin.enabled:
        return _skip(Reason.PLUGIN_DISABLED)
    if plugin.scan_level is None:
        return _skip(Reason.PLUGIN_SCAN_LEVEL_UNKNOWN)
    if ooi is None:
        return _run(Reason.PERMITTED)
    if ooi.scan_profile is None:
        return _skip(Reason.NO_SCAN_PROFILE)
    if plugin.scan_level > ooi.scan_profile.level:
        return _skip(Reason.SCAN_LEVEL_TOO_LOW)
    return _run(Reason.PERMITTED)


def normalizer_permission(plugin: Plugin) -> Decision:
    return _run(Reason.PERMITTED) if plugin.enabled else _skip(Reason.PLUGIN_DISABLED)


def run_on_allows(plugin: Plugin, operation: MutationOperation | None) -> Decision:
    """A boefje with `run_on` runs only on the mutations it names; one without runs on every create/update.

    `operation` is None for the triggers that are not mutations (a due schedule, a newly enabled boefje),
    which `run_on` does not restrict, as in the original.
    """
    if operation is MutationOperation.DELETE:
        return _skip(Reason.OOI_DELETED)
    if operation is None or not plugin.run_on or operation.value in plugin.run_on:
        return _run(Reason.RUN_ON_ALLOWS)
    if operation is MutationOperation.CREATE:
        return _skip(Reason.RUN_ON_EXCLUDES_CREATE)
    return _skip(Reason.RUN_ON_EXCLUDES_UPDATE)


def creates_schedule(plugin: Plugin) -> bool:
    """Only boefjes without `run_on` recur; the others run once per mutation they name."""
    return not plugin.run_on


def when_last_ran(latest_task: Task | None, bytes_meta: BoefjeMeta | None) -> datetime | None:
    """The moment the grace period and interval count from: our history first, Bytes second.

    Ours: the `created_at` of the newest task with this hash, whatever its outcome, unless it was cancelled
    (a cancelled task never ran). Creation is when the schedule's next deadline was computed too, so a
    schedule coming due finds its interval elapsed instead of missing it by the time the task sat queued.
    Bytes, for runs we have no history of (e.g. made before katsched): the boefje's start, else its end.
    """
    if latest_task is not None and latest_task.status is not TaskStatus.CANCELLED:
        return latest_task.created_at
    if bytes_meta is not None:
        return bytes_meta.started_at or bytes_meta.ended_at
    return None


def interval_elapsed(
    last_run_at: datetime | None,
    now: datetime,
    grace_period: timedelta,
    plugin_interval_minutes: int | None,
) -> Decision:
    """Runs again once the plugin's interval (minutes), else the grace period, has passed since
    `last_run_at` (see `when_last_ran()` for which moment that is)."""
    if last_run_at is None:
        return _run(Reason.NEVER_RAN)
    if plugin_interval_minutes is not None and plugin_interval_minutes > 0:
        wait, too_soon = timedelta(minutes=plugin_interval_minutes), Reason.WITHIN_INTERVAL
    else:
        wait, too_soon = grace_period, Reason.WITHIN_GRACE_PERIOD
    return _skip(too_soon) if now - last_run_at < wait else _run(Reason.INTERVAL_ELAPSED)


def already_active(
    active_task_status: TaskStatus | None,
    modified_at: datetime | None,
    now: datetime,
    dispatch_timeout: timedelta,
    run_timeout: timedelta,
) -> Decision:
    """The newest task with this hash blocks a new one while it is pending, queued, dispatched or running.

    Fixes of the original: a finished task of any kind, cancelled included, never blocks; nor does a task
    whose lease ran out (stalled), as its worker is gone. `modified_at` is when its status last changed.
    """
    if active_task_status is None or active_task_status in TERMINAL:
        return _run(Reason.NOT_ACTIVE)
    if modified_at is not None and lease_expired(
        active_task_status, modified_at, now, dispatch_timeout, run_timeout
    ):
        return _run(Reason.PREVIOUS_STALLED)
    return _skip(Reason.ALREADY_ACTIVE)


def schedule_still_valid(plugin: Plugin | None, ooi: OOI | None, *, expects_ooi: bool = True) -> Decision:
    """Whether a boefje schedule may go on; DISABLE with the reason when its plugin or object moved on.

    `expects_ooi` is False for a schedule of a boefje task without `input_ooi`; then `ooi` is not looked at.
    """
    if plugin is None:
        return _disable(Reason.PLUGIN_GONE)
    if not plugin.enabled:
        return _disable(Reason.PLUGIN_DISABLED)
    if plugin.type != "boefje":
        return _disable(Reason.NOT_A_BOEFJE)
    if not expects_ooi:
        ooi = None
    elif ooi is None:
        return _disable(Reason.OOI_GONE)
    elif ooi.object_type not in _consumed_types(plugin):
        return _disable(Reason.NOT_CONSUMED)
    if not boefje_permission(plugin, ooi).runs:
        return _disable(Reason.NOT_PERMITTED)
    return _run(Reason.SCHEDULE_VALID)


def _consumed_types(plugin: Plugin) -> list[str]:
    return [plugin.consumes] if isinstance(plugin.consumes, str) else plugin.consumes


@dataclass(frozen=True)
class RunPolicy:
    """The per-scheduler settings the boefje checks use."""

    grace_period: timedelta
    dispatch_timeout: timedelta
    run_timeout: timedelta


@dataclass(frozen=True)
class BoefjeRunFacts:
    """What the boefje planner knows about one (boefje, object, organisation) before it pushes."""

    plugin: Plugin
    ooi: OOI | None
    operation: MutationOperation | None  # None when the trigger is not a mutation
    last_run_at: datetime | None  # from `when_last_ran()`
    latest_status: TaskStatus | None  # of the newest task with this hash, None if there is none
    latest_modified_at: datetime | None


def decide_boefje_run(facts: BoefjeRunFacts, policy: RunPolicy, now: datetime) -> Decision:
    """SPEC §3's checks in order — permission, run_on, grace period / interval, already active — and the
    first that says no; else RUN, with the reason of the last check (PREVIOUS_STALLED tells the planner the
    old task is stalled)."""
    decision = _run(Reason.PERMITTED)
    for decision in _boefje_checks(facts, policy, now):
        if not decision.runs:
            return decision
    return decision


def _boefje_checks(facts: BoefjeRunFacts, policy: RunPolicy, now: datetime) -> Iterator[Decision]:
    """Lazily, so a check is not evaluated once an earlier one has refused."""
    yield boefje_permission(facts.plugin, facts.ooi)
    yield run_on_allows(facts.plugin, facts.operation)
    yield interval_elapsed(facts.last_run_at, now, policy.grace_period, facts.plugin.interval)
    yield already_active(
        facts.latest_status, facts.latest_modified_at, now, policy.dispatch_timeout, policy.run_timeout
    )
