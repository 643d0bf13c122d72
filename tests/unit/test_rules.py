import uuid
from dataclasses import FrozenInstanceError, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest

from katsched.core.models import (
    OOI,
    Boefje,
    BoefjeMeta,
    MutationOperation,
    Plugin,
    ScanProfile,
    Task,
    TaskStatus,
)
from katsched.core.rules import (
    Action,
    BoefjeRunFacts,
    Decision,
    Reason,
    RunPolicy,
    already_active,
    boefje_permission,
    creates_schedule,
    decide_boefje_run,
    interval_elapsed,
    normalizer_permission,
    run_on_allows,
    schedule_still_valid,
    when_last_ran,
)
from tests.world import boefje

S = TaskStatus
Op = MutationOperation
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
GRACE = timedelta(seconds=86400)
DISPATCH_TIMEOUT = timedelta(minutes=10)
RUN_TIMEOUT = timedelta(hours=1)
POLICY = RunPolicy(grace_period=GRACE, dispatch_timeout=DISPATCH_TIMEOUT, run_timeout=RUN_TIMEOUT)


def plugin(**fields: Any) -> Plugin:
    return boefje(**fields)


def ooi(level: int | None = 1, object_type: str = "Hostname") -> OOI:
    pk = f"{object_type}|internet|example.com"
    profile = None if level is None else ScanProfile(level=level, reference=pk, scan_profile_type="declared")
    return OOI(primary_key=pk, object_type=object_type, scan_profile=profile)


def run(reason: Reason) -> Decision:
    return Decision(Action.RUN, reason)


def skip(reason: Reason) -> Decision:
    return Decision(Action.SKIP, reason)


def disable(reason: Reason) -> Decision:
    return Decision(Action.DISABLE, reason)


def test_a_decision_is_frozen_and_knows_whether_it_runs() -> None:
    decision = skip(Reason.ALREADY_ACTIVE)
    assert not decision.runs
    assert run(Reason.PERMITTED).runs
    assert decision.reason == "already_active"
    with pytest.raises(FrozenInstanceError):
        decision.reason = "other"  # type: ignore[misc]


def test_reasons_are_stable_snake_case() -> None:
    assert all(reason.value == reason.name.lower() for reason in Reason)


# Permission (reference §4.2.6 and the §10.3 permission tests)


@pytest.mark.parametrize(
    ("the_plugin", "the_ooi", "expected"),
    [
        (plugin(scan_level=0), ooi(level=0), run(Reason.PERMITTED)),
        (plugin(scan_level=2), ooi(level=3), run(Reason.PERMITTED)),
        (plugin(scan_level=3), ooi(level=3), run(Reason.PERMITTED)),
        (plugin(scan_level=4), ooi(level=0), skip(Reason.SCAN_LEVEL_TOO_LOW)),  # "is too intense"
        (plugin(scan_level=1), ooi(level=0), skip(Reason.SCAN_LEVEL_TOO_LOW)),
        (plugin(enabled=False, scan_level=0), ooi(level=4), skip(Reason.PLUGIN_DISABLED)),
        (plugin(scan_level=0), ooi(level=None), skip(Reason.NO_SCAN_PROFILE)),
        (plugin(scan_level=None), ooi(level=4), skip(Reason.PLUGIN_SCAN_LEVEL_UNKNOWN)),
        (plugin(scan_level=4), None, run(Reason.PERMITTED)),  # a task without an object
        (plugin(enabled=False), None, skip(Reason.PLUGIN_DISABLED)),
        (plugin(scan_level=None), None, skip(Reason.PLUGIN_SCAN_LEVEL_UNKNOWN)),
    ],
)
def test_boefje_permission(the_plugin: Plugin, the_ooi: OOI | None, expected: Decision) -> None:
    assert boefje_permission(the_plugin, the_ooi) == expected


@pytest.mark.parametrize(
    ("enabled", "expected"), [(True, run(Reason.PERMITTED)), (False, skip(Reason.PLUGIN_DISABLED))]
)
def test_normalizer_permission(enabled: bool, expected: Decision) -> None:
    assert normalizer_permission(plugin(type="normalizer", enabled=enabled)) == expected


# run_on (the §10.3 ScanProfileMutationTestCase table)

RunOn = list[Literal["create", "update"]] | None


@pytest.mark.parametrize(
    ("run_on", "operation", "expected", "schedule"),
    [
        (["create"], Op.CREATE, run(Reason.RUN_ON_ALLOWS), False),
        (["create", "update"], Op.CREATE, run(Reason.RUN_ON_ALLOWS), False),
        (["update"], Op.CREATE, skip(Reason.RUN_ON_EXCLUDES_CREATE), False),
        (None, Op.CREATE, run(Reason.RUN_ON_ALLOWS), True),
        ([], Op.CREATE, run(Reason.RUN_ON_ALLOWS), True),
        (["create"], Op.UPDATE, skip(Reason.RUN_ON_EXCLUDES_UPDATE), False),
        (["create", "update"], Op.UPDATE, run(Reason.RUN_ON_ALLOWS), False),
        (["update"], Op.UPDATE, run(Reason.RUN_ON_ALLOWS), False),
        (None, Op.UPDATE, run(Reason.RUN_ON_ALLOWS), True),
        (None, Op.DELETE, skip(Reason.OOI_DELETED), True),
        (["create", "update"], Op.DELETE, skip(Reason.OOI_DELETED), False),
        (["create"], None, run(Reason.RUN_ON_ALLOWS), False),  # not a mutation: run_on does not apply
        (None, None, run(Reason.RUN_ON_ALLOWS), True),
    ],
)
def test_run_on(run_on: RunOn, operation: Op | None, expected: Decision, schedule: bool) -> None:
    the_plugin = plugin(run_on=run_on)
    assert run_on_allows(the_plugin, operation) == expected
    assert creates_schedule(the_plugin) is schedule


# Grace period and interval (the §10.3 grace-period tests; a plugin's interval replaces the grace period)


@pytest.mark.parametrize(
    ("ran_ago", "interval", "expected"),
    [
        (None, None, run(Reason.NEVER_RAN)),
        (None, 60, run(Reason.NEVER_RAN)),
        (timedelta(0), None, skip(Reason.WITHIN_GRACE_PERIOD)),
        (GRACE - timedelta(seconds=1), None, skip(Reason.WITHIN_GRACE_PERIOD)),
        (GRACE, None, run(Reason.INTERVAL_ELAPSED)),
        (GRACE, 0, run(Reason.INTERVAL_ELAPSED)),  # 0 means "no interval", as in the original
        (timedelta(days=30), None, run(Reason.INTERVAL_ELAPSED)),
        (timedelta(minutes=59), 60, skip(Reason.WITHIN_INTERVAL)),
        (timedelta(minutes=60), 60, run(Reason.INTERVAL_ELAPSED)),  # the interval wins over a longer grace
        (timedelta(hours=24, minutes=59), 1500, skip(Reason.WITHIN_INTERVAL)),  # and over a shorter one
        (timedelta(hours=24, minutes=59), None, run(Reason.INTERVAL_ELAPSED)),
        (timedelta(minutes=1500), 1500, run(Reason.INTERVAL_ELAPSED)),
    ],
)
def test_interval_elapsed(ran_ago: timedelta | None, interval: int | None, expected: Decision) -> None:
    last_run_at = None if ran_ago is None else NOW - ran_ago
    assert interval_elapsed(last_run_at, NOW, GRACE, interval) == expected


def task(status: TaskStatus, created_at: datetime) -> Task:
    return Task(
        scheduler_id="boefje",
        organisation="org1",
        status=status,
        created_at=created_at,
        modified_at=created_at + timedelta(minutes=30),
    )


def meta(started_at: datetime | None, ended_at: datetime | None) -> BoefjeMeta:
    return BoefjeMeta(
        id=uuid.uuid4(),
        boefje=Boefje(id="dns-records"),
        input_ooi="Hostname|internet|example.com",
        organization="org1",
        started_at=started_at,
        ended_at=ended_at,
    )


T1, T2, T3 = NOW - timedelta(hours=3), NOW - timedelta(hours=2), NOW - timedelta(hours=1)


@pytest.mark.parametrize(
    ("latest", "bytes_meta", "expected"),
    [
        (None, None, None),
        (task(S.COMPLETED, T1), meta(T2, T3), T1),  # our history first, even when Bytes is newer
        (task(S.FAILED, T1), None, T1),
        (task(S.QUEUED, T2), None, T2),
        (task(S.CANCELLED, T3), meta(T1, T2), T1),  # a cancelled task never ran: ask Bytes
        (task(S.CANCELLED, T3), None, None),
        (None, meta(T1, T2), T1),  # Bytes: the start of the run…
        (None, meta(None, T2), T2),  # …else its end
        (None, meta(None, None), None),
    ],
)
def test_when_last_ran(latest: Task | None, bytes_meta: BoefjeMeta | None, expected: datetime | None) -> None:
    assert when_last_ran(latest, bytes_meta) == expected


def test_a_schedule_coming_due_finds_its_interval_elapsed() -> None:
    # pushed at T, the deadline is T + interval; the task waited 20 minutes in the queue before it ran
    pushed = NOW - timedelta(minutes=60)
    latest = task(S.COMPLETED, pushed)
    ran = meta(pushed + timedelta(minutes=20), pushed + timedelta(minutes=25))
    assert interval_elapsed(when_last_ran(latest, ran), NOW, GRACE, 60) == run(Reason.INTERVAL_ELAPSED)


# Already active, stalled (the §10.3 running/stalled tests, and our fixes of §11.1 items 3 and 4)


@pytest.mark.parametrize(
    ("status", "unchanged_for", "expected"),
    [
        (None, None, run(Reason.NOT_ACTIVE)),
        (S.COMPLETED, timedelta(0), run(Reason.NOT_ACTIVE)),
        (S.FAILED, timedelta(0), run(Reason.NOT_ACTIVE)),
        (S.CANCELLED, timedelta(0), run(Reason.NOT_ACTIVE)),  # the original blocked this forever
        (S.PENDING, timedelta(0), skip(Reason.ALREADY_ACTIVE)),
        (S.QUEUED, timedelta(0), skip(Reason.ALREADY_ACTIVE)),
        (S.QUEUED, timedelta(days=3), skip(Reason.ALREADY_ACTIVE)),  # waiting its turn is not stalling
        (S.DISPATCHED, timedelta(0), skip(Reason.ALREADY_ACTIVE)),
        (S.DISPATCHED, DISPATCH_TIMEOUT, skip(Reason.ALREADY_ACTIVE)),
        (S.DISPATCHED, DISPATCH_TIMEOUT + timedelta(seconds=1), run(Reason.PREVIOUS_STALLED)),
        (S.DISPATCHED, timedelta(days=3), run(Reason.PREVIOUS_STALLED)),  # the original blocked forever
        (S.RUNNING, timedelta(minutes=30), skip(Reason.ALREADY_ACTIVE)),
        (S.RUNNING, RUN_TIMEOUT + timedelta(seconds=1), run(Reason.PREVIOUS_STALLED)),
    ],
)
def test_already_active(
    status: TaskStatus | None, unchanged_for: timedelta | None, expected: Decision
) -> None:
    modified_at = None if unchanged_for is None else NOW - unchanged_for
    assert already_active(status, modified_at, NOW, DISPATCH_TIMEOUT, RUN_TIMEOUT) == expected


def test_an_active_task_without_a_modification_time_still_blocks() -> None:
    decision = already_active(S.DISPATCHED, None, NOW, DISPATCH_TIMEOUT, RUN_TIMEOUT)
    assert decision == skip(Reason.ALREADY_ACTIVE)


# Schedules (the §10.3 RescheduleTestCase)


@pytest.mark.parametrize(
    ("the_plugin", "the_ooi", "expected"),
    [
        (plugin(), ooi(), run(Reason.SCHEDULE_VALID)),
        (None, ooi(), disable(Reason.PLUGIN_GONE)),
        (plugin(enabled=False), ooi(), disable(Reason.PLUGIN_DISABLED)),
        (plugin(type="normalizer"), ooi(), disable(Reason.NOT_A_BOEFJE)),
        (plugin(), None, disable(Reason.OOI_GONE)),
        (plugin(consumes=[]), ooi(), disable(Reason.NOT_CONSUMED)),
        (plugin(consumes=["IPAddressV4"]), ooi(), disable(Reason.NOT_CONSUMED)),
        (plugin(consumes="Hostname"), ooi(), run(Reason.SCHEDULE_VALID)),  # Katalogus may send one string
        (plugin(scan_level=1), ooi(level=0), disable(Reason.NOT_PERMITTED)),
        (plugin(scan_level=None), ooi(), disable(Reason.NOT_PERMITTED)),
        (plugin(), ooi(level=None), disable(Reason.NOT_PERMITTED)),
        (None, None, disable(Reason.PLUGIN_GONE)),
    ],
)
def test_schedule_still_valid(the_plugin: Plugin | None, the_ooi: OOI | None, expected: Decision) -> None:
    assert schedule_still_valid(the_plugin, the_ooi) == expected


@pytest.mark.parametrize(
    ("the_plugin", "expected"),
    [
        (plugin(scan_level=4, consumes=[]), run(Reason.SCHEDULE_VALID)),
        (plugin(enabled=False), disable(Reason.PLUGIN_DISABLED)),
        (plugin(scan_level=None), disable(Reason.NOT_PERMITTED)),
    ],
)
def test_a_schedule_without_an_object_needs_only_its_plugin(the_plugin: Plugin, expected: Decision) -> None:
    assert schedule_still_valid(the_plugin, None, expects_ooi=False) == expected


# The combined boefje decision, in SPEC §3's order

RUNNABLE = BoefjeRunFacts(
    plugin=plugin(),
    ooi=ooi(),
    operation=Op.CREATE,
    last_run_at=None,
    latest_status=None,
    latest_modified_at=None,
)
LONG_AGO = NOW - timedelta(days=2)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, run(Reason.NOT_ACTIVE)),
        ({"operation": None}, run(Reason.NOT_ACTIVE)),
        ({"ooi": None}, run(Reason.NOT_ACTIVE)),
        ({"plugin": plugin(enabled=False)}, skip(Reason.PLUGIN_DISABLED)),
        ({"ooi": ooi(level=0)}, skip(Reason.SCAN_LEVEL_TOO_LOW)),
        ({"plugin": plugin(run_on=["update"])}, skip(Reason.RUN_ON_EXCLUDES_CREATE)),
        ({"last_run_at": NOW - timedelta(hours=1)}, skip(Reason.WITHIN_GRACE_PERIOD)),
        ({"last_run_at": NOW - timedelta(hours=1), "plugin": plugin(interval=30)}, run(Reason.NOT_ACTIVE)),
        ({"last_run_at": LONG_AGO, "plugin": plugin(interval=4320)}, skip(Reason.WITHIN_INTERVAL)),
        ({"latest_status": S.QUEUED, "latest_modified_at": LONG_AGO}, skip(Reason.ALREADY_ACTIVE)),
        ({"latest_status": S.CANCELLED, "latest_modified_at": NOW}, run(Reason.NOT_ACTIVE)),
        ({"latest_status": S.DISPATCHED, "latest_modified_at": LONG_AGO}, run(Reason.PREVIOUS_STALLED)),
        (
            {"last_run_at": LONG_AGO, "latest_status": S.RUNNING, "latest_modified_at": NOW},
            skip(Reason.ALREADY_ACTIVE),
        ),
    ],
)
def test_decide_boefje_run(changes: dict[str, Any], expected: Decision) -> None:
    assert decide_boefje_run(replace(RUNNABLE, **changes), POLICY, NOW) == expected


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # every check fails: permission is asked first…
        (
            {
                "plugin": plugin(enabled=False, run_on=["update"]),
                "last_run_at": NOW,
                "latest_status": S.RUNNING,
                "latest_modified_at": NOW,
            },
            skip(Reason.PLUGIN_DISABLED),
        ),
        # …then run_on…
        (
            {
                "plugin": plugin(run_on=["update"]),
                "last_run_at": NOW,
                "latest_status": S.RUNNING,
                "latest_modified_at": NOW,
            },
            skip(Reason.RUN_ON_EXCLUDES_CREATE),
        ),
        # …then the grace period, and last whether a task is active
        (
            {"last_run_at": NOW, "latest_status": S.RUNNING, "latest_modified_at": NOW},
            skip(Reason.WITHIN_GRACE_PERIOD),
        ),
    ],
)
def test_decide_boefje_run_reports_the_first_check_that_says_no(
    changes: dict[str, Any], expected: Decision
) -> None:
    assert decide_boefje_run(replace(RUNNABLE, **changes), POLICY, NOW) == expected
