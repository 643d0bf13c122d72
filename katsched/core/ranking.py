"""Rankers: the facts about a task and `now` → its priority (SPEC §3). Lower is served first.

A ranker never returns 0 (0 means "no priority" on push) nor anything below 1; 1 itself is left to manual
pushes. The configuration chooses a ranker per scheduler by its key in `RANKERS`.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class RankFacts:
    """What the rankers may look at. Each ranker reads one field; the planner fills in the ones it knows."""

    last_run_at: datetime | None = None  # staleness: when this boefje last ran on this OOI, None if never
    ended_at: datetime | None = None  # ended_at: when the boefje whose raw data is normalised finished
    created_at: datetime | None = None  # created_at: when the task was created


Ranker = Callable[[RankFacts, datetime], int]

NEVER_RUN = 2
MOST_STALE = 3
JUST_RAN = 1000
STALE_AFTER = timedelta(days=7)
_WINDOW = int(STALE_AFTER.total_seconds())


def staleness(facts: RankFacts, now: datetime) -> int:
    """Never run → 2; else 3 once stale for STALE_AFTER, rising linearly to 1000 for a run that just ended.

    The age is measured in total seconds: the original read `timedelta.seconds`, the seconds-of-day part,
    which made a run 2 days and 1 hour old look fresher than one 23 hours old. Whole seconds and integer
    arithmetic, so that `staleness_changes_at` can say to the second when the rank moves next.
    """
    if facts.last_run_at is None:
        return NEVER_RUN
    age = _age_seconds(facts.last_run_at, now)
    if age >= _WINDOW:
        return MOST_STALE
    return MOST_STALE + (JUST_RAN - MOST_STALE) * (_WINDOW - age) // _WINDOW


def staleness_changes_at(facts: RankFacts, now: datetime) -> datetime | None:
    """The first moment after `now` at which `staleness` gives another rank; None once it never will
    (never run, or already most stale). Re-ranking visits a task only then, not on every run."""
    if facts.last_run_at is None:
        return None
    rank = staleness(facts, now)
    if rank <= MOST_STALE:
        return None
    # The rank falls below `rank` at the first whole second of age where 997 * (W - age) < (rank - 3) * W.
    age = _WINDOW * (JUST_RAN - rank) // (JUST_RAN - MOST_STALE) + 1
    return max(facts.last_run_at + timedelta(seconds=age), now)


def _age_seconds(last_run_at: datetime, now: datetime) -> int:
    # A clock ahead of ours counts as "just ran".
    return max(math.floor((now - last_run_at).total_seconds()), 0)


def by_ended_at(facts: RankFacts, now: datetime) -> int:
    """Epoch seconds of the boefje's end, so raw data is normalised in the order it was produced.

    A missing `ended_at` (the original raised) ranks as if the boefje ended now.
    """
    return _epoch(facts.ended_at or now)


def by_created_at(facts: RankFacts, now: datetime) -> int:
    """Epoch seconds of the task's creation: first come, first served. Missing → now."""
    return _epoch(facts.created_at or now)


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:  # core works in UTC; never let the host's zone shift a priority
        moment = moment.replace(tzinfo=UTC)
    return max(int(moment.timestamp()), 2)


RANKERS: dict[str, Ranker] = {
    "staleness": staleness,
    "ended_at": by_ended_at,
    "created_at": by_created_at,
}


RankChange = Callable[[RankFacts, datetime], datetime | None]

# The rankers whose rank moves with time, and when it moves next; the others rank once, at push.
RANK_CHANGES: dict[str, RankChange] = {"staleness": staleness_changes_at}


# A queued task's moving rank is rewritten at most this often. A staleness step is ~10 minutes (7 days over
# 997 ranks), so rewriting at every step costs one row update per recently run task every 10 minutes: at a
# million queued tasks that was most of an idle daemon's CPU. Once an hour bounds that work 6 times lower, and
# a rank then lags its exact value by at most the staleness of one hour (6 of the 997 steps).
RERANK_SPACING = timedelta(hours=1)


def rerank_due_at(name: str, facts: RankFacts, now: datetime) -> datetime | None:
    """When the rank that ranker `name` gives at `now` is next rewritten: once it has changed, but not before
    RERANK_SPACING has passed; None if it never changes."""
    changes = RANK_CHANGES.get(name)
    changes_at = changes(facts, now) if changes is not None else None
    return None if changes_at is None else max(changes_at, now + RERANK_SPACING)


def ranker_named(name: str) -> Ranker:
    """The ranker the configuration names; ValueError listing the known names otherwise."""
    try:
        return RANKERS[name]
    except KeyError:
        known = ", ".join(sorted(RANKERS))
        raise ValueError(f"unknown ranker {name!r}; known rankers: {known}") from None
