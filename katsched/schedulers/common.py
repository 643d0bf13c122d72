"""What the planners share: pushing a batch with one log line per task, and deferring on outages."""

import logging
import threading
import uuid
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from typing import TypeVar

from katsched.core.ports import (
    DecisionLog,
    DecisionRecord,
    DecisionsOf,
    PushOutcome,
    PushResult,
    ScheduleClaim,
    ScheduleStore,
    TaskDraft,
    TaskStore,
)
from katsched.errors import ServiceError, StorageUnavailable
from katsched.schedulers.summary import PlanSummary

logger = logging.getLogger("katsched.schedulers")

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# The planners' own reasons, beside those of `katsched.core.rules.Reason` and `PushResult`.
INVALID_DATA = "invalid_data"  # a schedule whose data no longer parses as its task type
NO_VALUE = "no_value"  # a create/update mutation without the object
ERROR_MIME_TYPE = "error_mime_type"  # a raw file that records a boefje's failure
ALREADY_PLANNED = "already_planned"  # a normalizer task exists for this very raw file
DEDUPLICATED = "deduplicated"  # pushed for another organisation that has the same object and settings


@dataclass(frozen=True)
class Planned:
    """A draft and why it is pushed (the reason of the decision), for the log line."""

    draft: TaskDraft
    reason: str


class ForgetDecisions:
    """A `DecisionLog` that keeps nothing, for a planner built without one."""

    def record(self, decisions: Sequence[DecisionRecord]) -> None:
        pass

    def last(self, organisation: str, subject: str) -> dict[str, DecisionRecord]:
        return {}


def concurrently(call: Callable[[K], V], keys: Iterable[K], workers: int) -> dict[K, V]:
    """`call(key)` for each distinct key, up to `workers` at a time: service look-ups that each wait on the
    network then overlap. Every call finishes before the first error, if any, is raised."""
    unique = list(dict.fromkeys(keys))
    if workers <= 1 or len(unique) <= 1:
        return {key: call(key) for key in unique}
    pool = _lookup_pool(workers)
    futures = {key: pool.submit(call, key) for key in unique}
    wait(futures.values())
    return {key: future.result() for key, future in futures.items()}


_lookup_pools = threading.local()


def _lookup_pool(workers: int) -> ThreadPoolExecutor:
    """The calling thread's own `workers` look-up threads, kept between calls: starting them for every batch
    cost more CPU than the batch's look-ups. Each thread that plans has its own, so two batches planned at
    once still have `workers` each; they end with that thread."""
    pools: dict[int, ThreadPoolExecutor] = _lookup_pools.__dict__.setdefault("by_size", {})
    if workers not in pools:
        pools[workers] = ThreadPoolExecutor(workers, thread_name_prefix="katsched-lookup")
    return pools[workers]


@contextmanager
def deferring(planner: str, organisation: str) -> Iterator[None]:
    """Log one line when a KAT service or the database fails, then let the error propagate: the caller defers
    the work (the RabbitMQ consumer requeues the message; a recurring job tries again at its next run).
    Batches committed before the failure stay committed; running the same input again skips them."""
    try:
        yield
    except (ServiceError, StorageUnavailable) as exc:
        logger.warning("planner_deferred planner=%s org=%s error=%r", planner, organisation, str(exc))
        raise


@contextmanager
def claimed(
    schedules: ScheduleStore, scheduler_id: str, limit: int, lease: timedelta, organisation: str
) -> Iterator[ScheduleClaim]:
    """A batch of the organisation's due schedules that no other daemon holds, claimed for `lease` and
    released afterwards, planned or not (a failed batch is then anyone's again at the next run; if this
    process dies instead, the claim lapses). Nothing claimed: nothing to look up, no KAT request."""
    claim = schedules.claim_due(scheduler_id, limit, lease, organisation)
    try:
        yield claim
    finally:
        if claim.schedules:
            schedules.release(claim)


def held_by(schedules: ScheduleStore, claim: ScheduleClaim, lease: timedelta, planner: str) -> set[uuid.UUID]:
    """The claim renewed just before the batch writes: the schedules still held (one whose claim lapsed while
    its facts were gathered, and that another daemon claimed since, is left to that daemon)."""
    if not claim.schedules:
        return set()
    held = schedules.confirm(claim, lease)
    if len(held) < len(claim.schedules):
        logger.warning(
            "schedule_claims_lost planner=%s lost=%d held=%d",
            planner,
            len(claim.schedules) - len(held),
            len(held),
        )
    return held


def push_and_record(
    store: TaskStore,
    planned: Sequence[Planned],
    summary: PlanSummary,
    decisions_of: DecisionsOf | None = None,
    log: DecisionLog | None = None,
) -> list[PushOutcome]:
    """Push the drafts in one transaction, with the decisions their outcomes make when `log` is given; count
    and log each outcome."""
    drafts = [item.draft for item in planned]
    if decisions_of is not None and log is not None:
        outcomes = store.push_with_decisions(drafts, decisions_of, log)
    else:
        outcomes = store.push_many(drafts)
    for item, outcome in zip(planned, outcomes, strict=True):
        draft = item.draft
        if outcome.result is PushResult.PUSHED and outcome.task is not None:
            summary.created += 1
            logger.info(
                "task_pushed task_id=%s scheduler=%s org=%s priority=%d schedule_id=%s reason=%s",
                outcome.task.id, draft.scheduler_id, draft.organisation, draft.priority,
                outcome.task.schedule_id, item.reason,
            )  # fmt: skip
        else:
            summary.skip(outcome.result.value)
            logger.debug(
                "task_skipped scheduler=%s org=%s subject=%s reason=%s",
                draft.scheduler_id, draft.organisation, _describe(draft), outcome.result.value,
            )  # fmt: skip
    return outcomes


def _describe(draft: TaskDraft) -> str:
    """What the task is about: `plugin:object` (boefje), `plugin:raw file` (normalizer), or the recipe."""
    data = draft.data
    for key in ("boefje", "normalizer"):
        if isinstance(data.get(key), dict):
            return f"{data[key].get('id')}:{data.get('input_ooi') or data.get('raw_data', {}).get('id')}"
    return str(data.get("report_recipe_id"))


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items (itertools.batched arrived in Python 3.12)."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch
