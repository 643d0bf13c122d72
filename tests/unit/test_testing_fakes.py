"""The parts of `katsched.testing` that the KAT contract suite does not reach."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from katsched.core.models import Plugin
from katsched.testing import FakeClock, InMemoryCatalog

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_fake_clock_stands_still_until_moved() -> None:
    clock = FakeClock(START)
    assert clock.now() == clock.now() == START
    assert clock.advance(seconds=31) == START + timedelta(seconds=31)
    assert clock.advance(timedelta(days=1), minutes=1) == START + timedelta(days=1, minutes=1, seconds=31)
    clock.set(START)
    assert clock.now() == START


def test_fake_clock_is_aware_utc() -> None:
    clock = FakeClock(datetime(2026, 11, 28, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == START
    assert clock.now().tzinfo is UTC
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2026, 11, 28, 12, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2026, 11, 28, 12, 0))


def test_fake_clock_default_start_is_aware() -> None:
    assert FakeClock().now().tzinfo is UTC


def test_fake_clock_monotonic_time_follows_advance_but_not_set() -> None:
    clock = FakeClock(START)
    assert clock.monotonic() == 0.0
    clock.advance(seconds=1.5)
    clock.set(START - timedelta(days=1))  # the wall clock put back, as an NTP step does
    assert clock.monotonic() == 1.5
    clock.advance(minutes=1)
    assert clock.monotonic() == 61.5
    assert clock.now() == START - timedelta(days=1) + timedelta(minutes=1)
    with pytest.raises(ValueError, match="forward only"):
        clock.advance(seconds=-1)


def test_in_memory_catalog_needs_the_organisation_first() -> None:
    catalog = InMemoryCatalog()
    plugin = Plugin(id="dns", type="boefje", enabled=True, scan_level=1, consumes=["Hostname"], produces=[])
    with pytest.raises(KeyError, match="org1"):
        catalog.add_plugin("org1", plugin)
