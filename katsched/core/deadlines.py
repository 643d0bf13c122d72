"""When a schedule is next due (SPEC §3): its cron, else its plugin's interval, else grace period + jitter.

Every deadline is counted from `now`, never from the previous deadline, so runs missed while the daemon was
down collapse into one.

Cron expressions mean what they mean to cron (and to croniter, which the original used). APScheduler 3 does
the calendar maths, but its own crontab reading differs in two places, which we translate:
- day of week: cron counts 0 (and 7) as Sunday, APScheduler 3 counts 0 as Monday;
- when both day of month and day of week are restricted, cron fires on either, APScheduler on both.
This is the only core module that may import APScheduler, and only for CronTrigger.
"""

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

Uniform = Callable[[float, float], float]

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DAY_OF_MONTH = {"L": "last", "?": "*"}  # croniter's spellings that APScheduler 3 lacks
_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # index = cron's number, 7 wraps to sun
# A fixed start from which a valid expression must fire at least once (4 years cover 29 February).
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def validate_cron(expr: str) -> str:
    """`expr` unchanged if it is a five-field cron expression that ever fires; ValueError otherwise."""
    try:
        triggers = _triggers(expr)
    except ValueError as exc:
        raise ValueError(f"Invalid cron expression: {expr}") from exc
    if _first_fire(triggers, _EPOCH) is None:
        raise ValueError(f"Invalid cron expression: {expr}") from ValueError("it never fires")
    return expr


def next_cron_fire(expr: str, now: datetime) -> datetime:
    """The first time `expr` fires strictly after `now`, in UTC."""
    try:
        triggers = _triggers(expr)
    except ValueError as exc:
        raise ValueError(f"Invalid cron expression: {expr}") from exc
    fire = _first_fire(triggers, _utc(now) + timedelta(microseconds=1))
    if fire is None:
        raise ValueError(f"Invalid cron expression: {expr}") from ValueError("it never fires again")
    return fire


def next_deadline(
    now: datetime,
    *,
    cron: str | None = None,
    interval_minutes: int | None = None,
    grace_period: timedelta,
    jitter: timedelta = timedelta(0),
    uniform: Uniform = random.uniform,
) -> datetime:
    """The next deadline of a recurring task pushed at `now`.

    `uniform(a, b)` draws the jitter in seconds (`random.Random(seed).uniform` makes it repeatable); the
    jitter spreads the default deadlines of tasks created together. A cron or interval gets no jitter.
    """
    now = _utc(now)
    if cron:
        return next_cron_fire(cron, now)
    if interval_minutes is not None and interval_minutes > 0:
        return now + timedelta(minutes=interval_minutes)
    spread = uniform(0.0, jitter.total_seconds()) if jitter > timedelta(0) else 0.0
    return now + grace_period + timedelta(seconds=spread)


def _triggers(expr: str) -> list[CronTrigger]:
    fields = _ALIASES.get(expr.strip().lower(), expr).split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields, got {len(fields)}")
    minute, hour, day, month, day_of_week = fields
    day = ",".join(_DAY_OF_MONTH.get(part.upper(), part) for part in day.split(","))
    weekdays = _weekdays(day_of_week)
    if day.startswith("*") or weekdays == "*":
        return [_trigger(minute, hour, day, month, weekdays)]
    # cron's rule: when both day fields are restricted, a day matching either of them fires
    return [_trigger(minute, hour, day, month, "*"), _trigger(minute, hour, "*", month, weekdays)]


def _trigger(minute: str, hour: str, day: str, month: str, day_of_week: str) -> CronTrigger:
    return CronTrigger(minute=minute, hour=hour, day=day, month=month, day_of_week=day_of_week, timezone=UTC)


def _weekdays(field: str) -> str:
    """Cron's day-of-week field as APScheduler weekday names, e.g. "1-5" → "mon,tue,wed,thu,fri"."""
    days: set[int] = set()
    for part in field.lower().split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span in ("*", "?"):
            first, last = 0, 6
        else:
            start, dash, end = span.partition("-")
            first = _weekday_number(start)
            last = _weekday_number(end) if dash else (6 if step_text else first)
        if step < 1 or first > last:
            raise ValueError(f"bad day of week {part!r}")
        days.update(day % 7 for day in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(_CRON_DAYS[day] for day in sorted(days))


def _weekday_number(text: str) -> int:
    if text in _CRON_DAYS:
        return _CRON_DAYS.index(text)
    if text.isdigit() and int(text) <= 7:
        return int(text)
    raise ValueError(f"bad day of week {text!r}")


def _first_fire(triggers: list[CronTrigger], start: datetime) -> datetime | None:
    fires: list[datetime] = []
    for trigger in triggers:
        fire: datetime | None = trigger.get_next_fire_time(None, start)
        if fire is not None:
            fires.append(fire.astimezone(UTC))
    return min(fires, default=None)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
