"""Rankers: the facts about a task and `now` → its priority (SPEC §3). Lower is served first.

A ranker never returns 0 (0 means "no priority" on push) nor anything below 1; 1 itself is left to manual
pushes. The configuration chooses a ranker per scheduler by its key in `RANKERS`.
"""

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


def staleness(facts: RankFacts, now: datetime) -> int:
    """Never run → 2; else 3 once stale for STALE_AFTER, rising linearly to 1000 for a run that just ended.

    The age is measured in total seconds: the original read `timedelta.seconds`, the seconds-of-day part,
    which made a run 2 days and 1 hour old look fresher than one 23 hours old.
    """
    if facts.last_run_at is None:
        return NEVER_RUN
    age = max((now - facts.last_run_at).total_seconds(), 0.0)  # a clock ahead of ours counts as "just ran"
    window = STALE_AFTER.total_seconds()
    if age >= window:
        return MOST_STALE
    return int(MOST_STALE + (JUST_RAN - MOST_STALE) * (1 - age / window))


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


def ranker_named(name: str) -> Ranker:
    """The ranker the configuration names; ValueError listing the known names otherwise."""
    try:
        return RANKERS[name]
    except KeyError:
        known = ", ".join(sorted(RANKERS))
        raise ValueError(f"unknown ranker {name!r}; known rankers: {known}") from None
