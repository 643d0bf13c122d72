import uuid
from datetime import UTC, datetime, timedelta

import pytest

from katsched.core.hashing import task_hash
from katsched.core.models import (
    Boefje,
    BoefjeMeta,
    BoefjeTask,
    Normalizer,
    NormalizerTask,
    PushPolicy,
    RawData,
    ReportTask,
    SchedulerKind,
    TaskStatus,
)
from katsched.core.push import PushAction, align_ids, check_capacity, decide_push, validated_hash
from katsched.core.transitions import (
    REQUEUEABLE,
    TERMINAL,
    allowed_moves,
    check_transition,
    lease_expired,
)
from katsched.errors import InvalidItem, InvalidTransition, NotAllowed, QueueFull

S = TaskStatus
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def boefje_task(input_ooi: str | None) -> BoefjeTask:
    return BoefjeTask(boefje=Boefje(id="dns-records"), input_ooi=input_ooi, organization="org1")


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (boefje_task("Hostname|internet|example.com"), "74956880324db1838156e1ebf7847448"),
        (boefje_task(None), "316d04d4f0baf363b64ec113ce54f9ce"),
        (boefje_task(""), "316d04d4f0baf363b64ec113ce54f9ce"),
        (ReportTask(organisation_id="org1", report_recipe_id="r1"), "e2805bbc0ac29935b53a88d3ea52984e"),
    ],
)
def test_identity_hash_matches_the_reference_vectors(payload: BoefjeTask | ReportTask, expected: str) -> None:
    assert task_hash(payload) == expected


def test_normalizer_hash_uses_the_boefje_meta_id_not_the_raw_data_id() -> None:
    meta = BoefjeMeta(
        id=uuid.UUID(int=1),
        boefje=Boefje(id="dns-records"),
        input_ooi=None,
        organization="org1",
        started_at=None,
        ended_at=None,
    )
    payload = NormalizerTask(
        normalizer=Normalizer(id="kat_dns_normalize"),
        raw_data=RawData(id=uuid.uuid4(), boefje_meta=meta, mime_types=[{"value": "text/plain"}]),
    )
    assert task_hash(payload) == "391949b2410cd284b67dc4790f557ac2"


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (S.QUEUED, S.DISPATCHED),
        (S.QUEUED, S.CANCELLED),
        (S.PENDING, S.CANCELLED),
        (S.DISPATCHED, S.RUNNING),
        (S.DISPATCHED, S.QUEUED),
        (S.DISPATCHED, S.COMPLETED),
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.QUEUED),
        (S.RUNNING, S.RUNNING),
    ],
)
def test_allowed_transitions(current: TaskStatus, new: TaskStatus) -> None:
    check_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [(S.QUEUED, S.RUNNING), (S.RUNNING, S.DISPATCHED), (S.RUNNING, S.PENDING), (S.QUEUED, S.COMPLETED)]
    + [(terminal, other) for terminal in TERMINAL for other in TaskStatus if other is not terminal],
)
def test_forbidden_transitions_name_the_allowed_moves(current: TaskStatus, new: TaskStatus) -> None:
    with pytest.raises(InvalidTransition, match=f"from {current} to {new}; allowed: "):
        check_transition(current, new)


def test_terminal_states_allow_only_a_repeat_of_themselves() -> None:
    assert {S.COMPLETED, S.FAILED, S.CANCELLED} == TERMINAL
    assert all(allowed_moves(status) == frozenset({status}) for status in TERMINAL)
    check_transition(S.COMPLETED, S.COMPLETED)  # a runner retrying the PATCH whose answer it lost


def test_lease_expiry_per_status() -> None:
    dispatch, run = timedelta(minutes=10), timedelta(minutes=30)
    assert lease_expired(S.DISPATCHED, NOW - timedelta(minutes=11), NOW, dispatch, run)
    assert not lease_expired(S.DISPATCHED, NOW - timedelta(minutes=9), NOW, dispatch, run)
    assert lease_expired(S.RUNNING, NOW - timedelta(minutes=31), NOW, dispatch, run)
    assert not lease_expired(S.RUNNING, NOW - timedelta(minutes=11), NOW, dispatch, run)
    assert not lease_expired(S.QUEUED, NOW - timedelta(days=30), NOW, dispatch, run)


BOEFJE_DATA = {
    "boefje": {"id": "dns-records"},
    "input_ooi": "Hostname|internet|example.com",
    "organization": "org1",
}


def test_validated_hash_refuses_missing_or_zero_priority_and_bad_data() -> None:
    assert validated_hash(SchedulerKind.BOEFJE, BOEFJE_DATA, 5) == "74956880324db1838156e1ebf7847448"
    for priority in (0, None):
        with pytest.raises(InvalidItem, match="non-zero priority"):
            validated_hash(SchedulerKind.BOEFJE, BOEFJE_DATA, priority)
    with pytest.raises(InvalidItem, match=r"not a valid BoefjeTask: boefje: Field required"):
        validated_hash(SchedulerKind.BOEFJE, {"organization": "org1"}, 5)
    with pytest.raises(InvalidItem, match="ReportTask"):
        validated_hash(SchedulerKind.REPORT, BOEFJE_DATA, 5)


def test_negative_priorities_are_accepted() -> None:
    assert validated_hash(SchedulerKind.BOEFJE, BOEFJE_DATA, -3)


@pytest.mark.parametrize(
    ("policy", "existing", "priority", "data", "expected"),
    [
        (PushPolicy(), None, 5, {"a": 1}, PushAction.INSERT),
        (PushPolicy(allow_replace=True), (5, {"a": 1}), 5, {"a": 1}, PushAction.UPDATE),
        (PushPolicy(allow_updates=True), (5, {"a": 1}), 5, {"a": 2}, PushAction.UPDATE),
        (PushPolicy(allow_priority_updates=True), (5, {"a": 1}), 3, {"a": 1}, PushAction.UPDATE),
    ],
)
def test_push_policy_allows(
    policy: PushPolicy,
    existing: tuple[int, dict[str, int]] | None,
    priority: int,
    data: dict[str, int],
    expected: PushAction,
) -> None:
    assert decide_push(policy, existing, priority, data) is expected


@pytest.mark.parametrize(
    ("policy", "priority", "data"),
    [
        (PushPolicy(), 5, {"a": 2}),
        (PushPolicy(allow_updates=True), 3, {"a": 1}),
        (PushPolicy(allow_priority_updates=True), 5, {"a": 2}),
    ],
)
def test_push_policy_refuses_a_duplicate(policy: PushPolicy, priority: int, data: dict[str, int]) -> None:
    with pytest.raises(NotAllowed, match="queue is not allowed to push items"):
        decide_push(policy, (5, {"a": 1}), priority, data)


def test_capacity_is_bypassed_by_manual_priorities() -> None:
    policy = PushPolicy(maxsize=2)
    check_capacity(policy, 1, 10)
    check_capacity(policy, 2, 1)
    check_capacity(PushPolicy(maxsize=0), 10_000, 10)
    with pytest.raises(QueueFull, match="2 of 2"):
        check_capacity(policy, 2, 2)


def test_align_ids_fills_one_id_from_the_other_and_refuses_conflicts() -> None:
    one, other = uuid.uuid4(), uuid.uuid4()
    assert align_ids(SchedulerKind.BOEFJE, one, {"x": 1}) == (one, {"x": 1, "id": str(one)})
    assert align_ids(SchedulerKind.BOEFJE, None, {"id": str(other)})[0] == other
    generated, data = align_ids(SchedulerKind.NORMALIZER, None, {})
    assert data["id"] == str(generated)
    with pytest.raises(InvalidItem, match=r"does not match data\.id"):
        align_ids(SchedulerKind.BOEFJE, one, {"id": str(other)})
    with pytest.raises(InvalidItem, match="not a valid UUID"):
        align_ids(SchedulerKind.BOEFJE, None, {"id": "nope"})
    assert align_ids(SchedulerKind.REPORT, one, {"report_recipe_id": "r"}) == (one, {"report_recipe_id": "r"})


def test_a_finished_task_goes_back_to_the_queue_only_by_an_operator() -> None:
    for status in (TaskStatus.FAILED, TaskStatus.CANCELLED):
        with pytest.raises(InvalidTransition, match="the task is finished"):
            check_transition(status, TaskStatus.QUEUED)
        check_transition(status, TaskStatus.QUEUED, by_operator=True)
        assert allowed_moves(status, by_operator=True) == {status, TaskStatus.QUEUED}  # repeating is accepted
    with pytest.raises(InvalidTransition, match="the task is finished"):
        check_transition(TaskStatus.COMPLETED, TaskStatus.QUEUED, by_operator=True)
    with pytest.raises(InvalidTransition):
        check_transition(TaskStatus.FAILED, TaskStatus.RUNNING, by_operator=True)
    assert {TaskStatus.FAILED, TaskStatus.CANCELLED} == REQUEUEABLE
