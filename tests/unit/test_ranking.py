from datetime import UTC, datetime, timedelta, timezone

import pytest

from katsched.core.ranking import (
    JUST_RAN,
    MOST_STALE,
    NEVER_RUN,
    RANKERS,
    RERANK_SPACING,
    RankFacts,
    by_created_at,
    by_ended_at,
    ranker_named,
    rerank_due_at,
    staleness,
    staleness_changes_at,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def ran_ago(age: timedelta) -> int:
    return staleness(RankFacts(last_run_at=NOW - age), NOW)


def test_the_configuration_names_select_the_rankers() -> None:
    assert set(RANKERS) == {"staleness", "ended_at", "created_at"}
    assert RANKERS["staleness"] is staleness
    assert RANKERS["created_at"] is by_created_at
    assert ranker_named("ended_at") is by_ended_at


def test_an_unknown_ranker_name_lists_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match="unknown ranker 'oldest'; known rankers: created_at, ended_at, staleness"
    ):
        ranker_named("oldest")


def test_a_boefje_that_never_ran_ranks_two() -> None:
    assert staleness(RankFacts(), NOW) == NEVER_RUN == 2


@pytest.mark.parametrize(
    ("age", "priority"),
    [
        (timedelta(0), 1000),
        (timedelta(days=3, hours=12), 501),  # halfway: 3 + 997 / 2
        (timedelta(days=7) - timedelta(seconds=1), 3),
        (timedelta(days=7), 3),
        (timedelta(days=30), 3),
        (timedelta(days=-1), 1000),  # a last run "in the future" (clock skew) counts as just ran
    ],
)
def test_staleness_runs_from_1000_just_after_a_run_down_to_3_after_a_week(
    age: timedelta, priority: int
) -> None:
    assert ran_ago(age) == priority


def test_staleness_counts_whole_days_not_seconds_of_the_day() -> None:
    # timedelta.seconds of 2 days 1 hour is 3600: the original ranked this run as if it were an hour old
    two_days = ran_ago(timedelta(days=2))
    two_days_one_hour = ran_ago(timedelta(days=2, hours=1))
    one_hour = ran_ago(timedelta(hours=1))
    assert one_hour > two_days > two_days_one_hour
    assert two_days_one_hour == int(3 + 997 * (1 - (49 * 3600) / (7 * 86400)))


def test_staler_runs_are_served_first() -> None:
    ages = [timedelta(hours=h) for h in (0, 1, 6, 24, 48, 100, 167, 168, 500)]
    priorities = [ran_ago(age) for age in ages]
    assert priorities == sorted(priorities, reverse=True)
    assert all(MOST_STALE <= p <= JUST_RAN for p in priorities)


def test_ended_at_ranks_by_the_epoch_seconds_of_the_boefjes_end() -> None:
    ended = datetime(2026, 11, 28, 11, 0, 30, 999_000, tzinfo=UTC)
    assert by_ended_at(RankFacts(ended_at=ended), NOW) == 1_795_863_630


def test_ended_at_is_read_in_utc_whatever_the_zone() -> None:
    amsterdam = timezone(timedelta(hours=1))
    ended = datetime(2026, 11, 28, 12, 0, 30, tzinfo=amsterdam)
    assert by_ended_at(RankFacts(ended_at=ended), NOW) == 1_795_863_630


def test_a_missing_end_ranks_as_now() -> None:
    assert by_ended_at(RankFacts(), NOW) == int(NOW.timestamp())


def test_created_at_ranks_by_the_epoch_seconds_of_creation() -> None:
    created = datetime(2026, 11, 28, 11, 59, tzinfo=UTC)
    assert by_created_at(RankFacts(created_at=created), NOW) == int(NOW.timestamp()) - 60
    assert by_created_at(RankFacts(), NOW) == int(NOW.timestamp())


def test_epoch_priorities_beyond_2038_are_exact() -> None:
    later = datetime(2100, 1, 1, tzinfo=UTC)
    assert by_created_at(RankFacts(created_at=later), NOW) == 4_102_444_800


def test_a_naive_time_is_taken_as_utc() -> None:
    naive = datetime(2026, 11, 28, 11, 0, 30)
    assert by_ended_at(RankFacts(ended_at=naive), NOW) == 1_795_863_630


@pytest.mark.parametrize("moment", [datetime(1970, 1, 1, tzinfo=UTC), datetime(1960, 1, 1, tzinfo=UTC)])
def test_an_epoch_ranker_never_gives_zero_or_a_manual_priority(moment: datetime) -> None:
    facts = RankFacts(ended_at=moment, created_at=moment)
    assert by_ended_at(facts, NOW) == 2
    assert by_created_at(facts, NOW) == 2


@pytest.mark.parametrize("name", sorted(RANKERS))
@pytest.mark.parametrize(
    "facts",
    [
        RankFacts(),
        RankFacts(last_run_at=NOW, ended_at=NOW, created_at=NOW),
        RankFacts(last_run_at=NOW - timedelta(days=400)),
    ],
)
def test_no_ranker_returns_less_than_two(name: str, facts: RankFacts) -> None:
    assert RANKERS[name](facts, NOW) >= 2


@pytest.mark.parametrize("seconds", [0, 1, 607, 86_399, 86_400, 302_400, 604_000, 603_791, 604_799, -50])
def test_staleness_changes_at_is_the_first_second_with_another_rank(seconds: int) -> None:
    last_run_at = NOW - timedelta(seconds=seconds, microseconds=250_000)
    facts = RankFacts(last_run_at=last_run_at)
    rank, changes_at = staleness(facts, NOW), staleness_changes_at(facts, NOW)
    if rank == MOST_STALE:
        assert changes_at is None
        return
    assert changes_at is not None and changes_at > NOW - timedelta(seconds=1)
    assert staleness(facts, changes_at) == rank - 1
    assert staleness(facts, changes_at - timedelta(microseconds=1)) == rank
    assert staleness(facts, max(NOW, changes_at - timedelta(seconds=1))) == rank


def test_only_staleness_moves_with_time() -> None:
    never, stale = RankFacts(), RankFacts(last_run_at=NOW - timedelta(days=8))
    assert staleness_changes_at(never, NOW) is None and staleness_changes_at(stale, NOW) is None
    recent = RankFacts(last_run_at=NOW - timedelta(hours=1), created_at=NOW)
    assert rerank_due_at("staleness", recent, NOW) is not None
    assert rerank_due_at("staleness", never, NOW) is None and rerank_due_at("staleness", stale, NOW) is None
    assert rerank_due_at("created_at", recent, NOW) is None
    assert rerank_due_at("ended_at", recent, NOW) is None


@pytest.mark.parametrize("hours", [0, 1, 24, 100, 167])
def test_a_moving_rank_is_rewritten_once_it_changed_but_at_most_once_per_spacing(hours: int) -> None:
    facts = RankFacts(last_run_at=NOW - timedelta(hours=hours, minutes=7))
    changes_at, due_at = staleness_changes_at(facts, NOW), rerank_due_at("staleness", facts, NOW)
    assert changes_at is not None and due_at is not None
    assert due_at == max(changes_at, NOW + RERANK_SPACING)
    assert due_at >= NOW + RERANK_SPACING and due_at >= changes_at
    assert staleness(facts, due_at) < staleness(facts, NOW)  # by then the rank has moved
    # Until the rewrite, the rank written at NOW lags the exact one by at most an hour's steps: 6 of 997.
    assert staleness(facts, NOW) - staleness(facts, due_at - timedelta(microseconds=1)) <= 6
