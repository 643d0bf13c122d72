import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from katsched.core.deadlines import next_cron_fire, next_deadline, validate_cron

MONDAY = datetime(2024, 1, 1, 10, 30, tzinfo=UTC)  # Monday 1 January 2024, 10:30 UTC
DAY = timedelta(days=1)
NO_JITTER = timedelta(0)


def at(day: int, hour: int = 0, minute: int = 0, month: int = 1, year: int = 2024) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "fire"),
    [
        ("0 0 * * *", at(2)),  # the next UTC midnight (the original's test_post_push_boefje_cron)
        ("*/5 * * * *", at(1, 10, 35)),
        ("30 10 * * *", at(2, 10, 30)),  # a fire at exactly `now` is not "after now"
        ("0 * * * *", at(1, 11)),
        ("0 0 1 * *", at(1, month=2)),
        ("0 0 L * *", at(31)),  # last day of the month
        ("0 0 1 jan *", at(1, year=2025)),
        ("@daily", at(2)),
        ("@hourly", at(1, 11)),
        ("@weekly", at(7)),  # Sunday
        ("@monthly", at(1, month=2)),
        ("@yearly", at(1, year=2025)),
    ],
)
def test_cron_fires_next_strictly_after_now_in_utc(expr: str, fire: datetime) -> None:
    assert next_cron_fire(expr, MONDAY) == fire


@pytest.mark.parametrize(
    ("day_of_week", "fire"),
    [
        ("0", at(7)),  # cron's 0 is Sunday (APScheduler 3 would read Monday)
        ("7", at(7)),  # and so is 7
        ("sun", at(7)),
        ("1", at(8)),  # Monday, but today's midnight has passed
        ("2", at(2)),
        ("6", at(6)),
        ("1-5", at(2)),
        ("5-7", at(5)),  # Friday to Sunday
        ("0,6", at(6)),
        ("*/2", at(2)),  # 0,2,4,6: Sunday, Tuesday, Thursday, Saturday
        ("3/2", at(3)),  # 3,5: Wednesday, Friday
        ("SAT", at(6)),
    ],
)
def test_day_of_week_counts_as_cron_does(day_of_week: str, fire: datetime) -> None:
    assert next_cron_fire(f"0 0 * * {day_of_week}", MONDAY) == fire


def test_day_of_week_steps_follow_sunday_first_numbering() -> None:
    fires = [at(1)]
    for _ in range(6):
        fires.append(next_cron_fire("0 0 * * */2", fires[-1]))
    assert [fire.strftime("%a") for fire in fires[1:]] == ["Tue", "Thu", "Sat", "Sun", "Tue", "Thu"]


def test_a_restricted_day_of_month_and_day_of_week_fire_on_either() -> None:
    # cron: the 13th OR any Friday; an AND would wait until Friday 13 September 2024
    assert next_cron_fire("0 0 13 * 5", MONDAY) == at(5)
    assert next_cron_fire("0 0 13 * 5", at(5)) == at(12)
    assert next_cron_fire("0 0 13 * 5", at(12)) == at(13)


def test_cron_accepts_a_time_in_another_zone_and_answers_in_utc() -> None:
    amsterdam = MONDAY.astimezone(timezone(timedelta(hours=1)))
    fire = next_cron_fire("0 0 * * *", amsterdam)
    assert fire == at(2)
    assert fire.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "expr",
    [
        "invalid",
        "",
        "* * * *",
        "* * * * * *",
        "61 * * * *",
        "* 24 * * *",
        "* * 32 * *",
        "* * * 13 *",
        "* * * * 8",
        "* * * * 5-1",
        "* * * * */0",
        "* * * * 1#2",
        "* * * * funday",
        "0 0 30 2 *",  # never fires
    ],
)
def test_invalid_cron_expressions_are_refused_with_the_originals_message(expr: str) -> None:
    with pytest.raises(ValueError) as refused:
        validate_cron(expr)
    assert str(refused.value) == f"Invalid cron expression: {expr}"
    with pytest.raises(ValueError, match=r"^Invalid cron expression"):
        next_cron_fire(expr, MONDAY)


@pytest.mark.parametrize("expr", ["* * * * *", "0 0 * * 0", "0 0 29 2 *", "*/15 9-17 * * 1-5", "@daily"])
def test_valid_cron_expressions_are_returned_unchanged(expr: str) -> None:
    assert validate_cron(expr) == expr


def test_cron_wins_over_interval_and_grace_period() -> None:
    deadline = next_deadline(MONDAY, cron="0 0 * * *", interval_minutes=60, grace_period=DAY)
    assert deadline == at(2)


@pytest.mark.parametrize("minutes", [1, 60, 1500])
def test_the_plugins_interval_sets_the_deadline(minutes: int) -> None:
    # the original overwrote it with grace period + jitter, so a 60-minute interval gave about 27.5 hours
    deadline = next_deadline(MONDAY, interval_minutes=minutes, grace_period=DAY, jitter=timedelta(hours=5))
    assert deadline == MONDAY + timedelta(minutes=minutes)


@pytest.mark.parametrize("minutes", [None, 0, -5])
def test_without_cron_or_interval_the_grace_period_applies(minutes: int | None) -> None:
    deadline = next_deadline(MONDAY, interval_minutes=minutes, grace_period=DAY, jitter=NO_JITTER)
    assert deadline == MONDAY + DAY


def test_an_empty_cron_counts_as_none() -> None:
    assert next_deadline(MONDAY, cron="", grace_period=DAY) == MONDAY + DAY


def test_jitter_is_drawn_from_the_injected_source_within_its_bounds() -> None:
    calls: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        calls.append((low, high))
        return 1234.5

    deadline = next_deadline(MONDAY, grace_period=DAY, jitter=timedelta(hours=5), uniform=uniform)
    assert calls == [(0.0, 18000.0)]
    assert deadline == MONDAY + DAY + timedelta(seconds=1234.5)


def test_a_seeded_random_gives_repeatable_deadlines_inside_the_window() -> None:
    jitter = timedelta(hours=5)
    first = [next_deadline(MONDAY, grace_period=DAY, jitter=jitter, uniform=random.Random(7).uniform)]
    again = [next_deadline(MONDAY, grace_period=DAY, jitter=jitter, uniform=random.Random(7).uniform)]
    assert first == again
    spread = random.Random(1)
    deadlines = [
        next_deadline(MONDAY, grace_period=DAY, jitter=jitter, uniform=spread.uniform) for _ in range(200)
    ]
    assert all(MONDAY + DAY <= d <= MONDAY + DAY + jitter for d in deadlines)
    assert len(set(deadlines)) > 1


def test_missed_runs_collapse_into_one_deadline_counted_from_now() -> None:
    # the daemon was down for three days: the next deadline is one interval after now, not a backlog
    now = MONDAY + timedelta(days=3)
    assert next_deadline(now, interval_minutes=60, grace_period=DAY) == now + timedelta(hours=1)
    assert next_deadline(now, cron="0 * * * *", grace_period=DAY) == at(4, 11)


def test_a_naive_now_is_taken_as_utc() -> None:
    naive = datetime(2024, 1, 1, 10, 30)
    assert next_deadline(naive, interval_minutes=30, grace_period=DAY) == at(1, 11)
    assert next_cron_fire("0 0 * * *", naive) == at(2)
