"""The store contract suite, the one push path: what a refused push reports (the queued twin and why), a draft
that joins a schedule as it is, an id already taken, and the decisions a push records with it
(`TaskStore.push_with_decisions`). Run on every implementation, as `test_store_contract.py` is."""

import uuid
from collections.abc import Sequence
from dataclasses import replace

import pytest

from katsched.core.hashing import task_hash
from katsched.core.models import BoefjeTask, PushPolicy, Schedule
from katsched.core.ports import (
    DecisionRecord,
    DecisionsOf,
    PushOutcome,
    PushResult,
    ScheduleLink,
    TaskDraft,
)
from katsched.errors import InvalidValue, NotAllowed
from katsched.testing import FakeClock, MemoryDecisionLog
from tests.contract.test_store_contract import draft, pushed, queued
from tests.stores import Stores
from tests.world import GRACE, ORG, boefje_data


def test_a_refused_push_names_the_queued_twin_and_why(stores: Stores) -> None:
    (first,) = pushed(stores, draft("a"))
    (again,) = stores.tasks.push_many([draft("a", priority=2)])
    assert again.result is PushResult.ALREADY_QUEUED and again.task is None
    assert again.twin_id == first.id and again.refusal == "queue is not allowed to push items"


def test_a_full_queue_refuses_with_its_size(stores: Stores) -> None:
    stores.queue.policies["boefje"] = PushPolicy(maxsize=1)
    pushed(stores, draft("a"))
    (full,) = stores.tasks.push_many([draft("b")])
    assert full.result is PushResult.QUEUE_FULL and full.twin_id is None
    assert full.refusal == "the queue is full (1 of 1 tasks)"


def test_a_draft_joins_an_existing_schedule_as_it_is(stores: Stores, clock: FakeClock) -> None:
    schedule = stores.registry.create("boefje", ORG, {}, None, deadline_at=clock.now() + GRACE)
    clock.advance(minutes=1)
    (task,) = pushed(stores, replace(draft("a"), schedule_id=schedule.id))
    assert task.schedule_id == schedule.id
    assert stores.registry.get(schedule.id) == schedule  # deadline and modified_at untouched


def test_a_draft_whose_id_is_taken_fails_the_batch(stores: Stores) -> None:
    (first,) = pushed(stores, draft("a"))
    stores.queue.pop("boefje")
    taken = TaskDraft("boefje", ORG, 5, {**boefje_data("dns-records", "b"), "id": str(first.id)})
    with pytest.raises(NotAllowed, match=f"a task with .*{first.id}.* already exists"):  # the id is named
        stores.tasks.push_many([draft("c"), taken])
    assert queued(stores) == []


def decided(clock: FakeClock) -> DecisionsOf:
    """The decisions a planner would make of the outcomes: one per draft, with the push's result."""

    def decisions_of(outcomes: Sequence[PushOutcome]) -> list[DecisionRecord]:
        return [
            DecisionRecord(
                ORG,
                str(outcome.draft.data["input_ooi"]),
                "dns-records",
                "boefje",
                "run",
                outcome.result.value,
                clock.now(),
                outcome.task.id if outcome.task is not None else None,
            )
            for outcome in outcomes
        ]

    return decisions_of


def test_a_push_records_the_decisions_its_outcomes_make(stores: Stores, clock: FakeClock) -> None:
    drafts = [draft("a"), draft("a", priority=3), draft("b")]
    outcomes = stores.tasks.push_with_decisions(drafts, decided(clock), stores.decisions)
    assert [o.result for o in outcomes] == [PushResult.PUSHED, PushResult.ALREADY_QUEUED, PushResult.PUSHED]
    last_a = stores.decisions.last(ORG, "a")["dns-records"]
    last_b = stores.decisions.last(ORG, "b")["dns-records"]
    assert (last_a.reason, last_a.task_id) == ("already_queued", None)  # the later decision wins
    assert outcomes[2].task is not None and (last_b.reason, last_b.task_id) == ("pushed", outcomes[2].task.id)


def test_a_push_that_fails_records_no_decision(stores: Stores, clock: FakeClock) -> None:
    bad = replace(draft("b"), schedule=ScheduleLink(uuid.uuid4(), None))  # a schedule that does not exist
    with pytest.raises(InvalidValue):
        stores.tasks.push_with_decisions([draft("a"), bad], decided(clock), stores.decisions)
    assert stores.decisions.last(ORG, "a") == {} and queued(stores) == []


def test_decisions_without_a_push_are_recorded_all_the_same(stores: Stores, clock: FakeClock) -> None:
    skipped = DecisionRecord(ORG, "a", "dns-records", "boefje", "skip", "plugin_disabled", clock.now())
    assert stores.tasks.push_with_decisions([], lambda _: [skipped], stores.decisions) == []
    assert stores.decisions.last(ORG, "a") == {"dns-records": skipped}


def test_a_log_elsewhere_gets_the_decisions_after_the_push(stores: Stores, clock: FakeClock) -> None:
    elsewhere = MemoryDecisionLog()
    (outcome,) = stores.tasks.push_with_decisions([draft("a")], decided(clock), elsewhere)
    assert outcome.task is not None and elsewhere.last(ORG, "a")["dns-records"].task_id == outcome.task.id
    assert stores.decisions.last(ORG, "a") == {}


def test_a_schedule_rule_decides_from_the_schedule_as_the_push_finds_it(
    stores: Stores, clock: FakeClock
) -> None:
    """The API's push: a schedule disabled after the request decided how to join it, but before the push's
    transaction, is left alone (the rule sees it disabled), in both stores."""
    data = boefje_data("dns-records", "a")
    identity = task_hash(BoefjeTask.model_validate(data))
    schedule = stores.registry.create("boefje", ORG, data, identity, deadline_at=clock.now() + GRACE)
    seen: list[Schedule | None] = []

    def rule(found: Schedule | None) -> ScheduleLink | None:
        seen.append(found)
        return None if found is None or not found.enabled else ScheduleLink(found.id, clock.now())

    ruled = TaskDraft("boefje", ORG, 5, data, schedule_rule=rule)
    stores.schedules.disable([schedule.id])
    (task,) = pushed(stores, ruled)
    assert [found.id if found else None for found in seen] == [schedule.id]
    assert seen[0] is not None and seen[0].enabled is False
    assert task.schedule_id is None
    assert stores.registry.get(schedule.id).deadline_at == schedule.deadline_at  # not moved


def test_a_schedule_rule_that_finds_no_schedule_creates_one(stores: Stores, clock: FakeClock) -> None:
    seen: list[Schedule | None] = []

    def rule(found: Schedule | None) -> ScheduleLink | None:
        seen.append(found)
        return ScheduleLink(None, clock.now() + GRACE, cron="0 * * * *")

    (task,) = pushed(stores, TaskDraft("boefje", ORG, 5, boefje_data("dns-records", "b"), schedule_rule=rule))
    assert seen == [None]
    assert task.schedule_id is not None
    created = stores.registry.get(task.schedule_id)
    assert (created.hash, created.schedule, created.deadline_at) == (
        task.hash,
        "0 * * * *",
        clock.now() + GRACE,
    )
