"""Events that plan nothing say why: an INFO line per organisation and reason per minute (time from the
clock), and counts by reason for the dashboard."""

import logging
from datetime import timedelta

import pytest

from katsched.schedulers.unplanned import MAX_TRACKED, NO_BOEFJE, UNKNOWN_ORGANISATION, UnplannedEvents
from katsched.testing import FakeClock
from tests.unit.test_planner_normalizer import normalizer
from tests.world import ORG, OTHER, World, boefje, hostname, mutation, raw_event


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("event_planned_nothing")]


def test_one_line_per_organisation_and_reason_per_interval(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "katsched.intake")
    unplanned = UnplannedEvents(clock, interval=timedelta(minutes=1))
    for _ in range(3):
        unplanned.report("acme", NO_BOEFJE, "mutation")
    unplanned.report("globex", NO_BOEFJE, "mutation")
    clock.advance(seconds=59)
    unplanned.report("acme", NO_BOEFJE, "mutation")
    assert lines(caplog) == [
        "event_planned_nothing event=mutation org=acme reason=no_boefje_for_type not_logged_since=0",
        "event_planned_nothing event=mutation org=globex reason=no_boefje_for_type not_logged_since=0",
    ]
    clock.advance(seconds=1)
    unplanned.report("acme", NO_BOEFJE, "mutation")
    assert lines(caplog)[-1].endswith("org=acme reason=no_boefje_for_type not_logged_since=3")
    assert unplanned.counts() == {NO_BOEFJE: 6}


def test_an_organisation_the_catalogue_does_not_know_is_named_so(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "katsched.intake")
    known: set[str] = set()
    unplanned = UnplannedEvents(clock, known_organisations=lambda: known)
    unplanned.report("ghost", NO_BOEFJE, "mutation")  # nothing known yet: no claim either way
    known.add("acme")
    unplanned.report("ghost", NO_BOEFJE, "mutation")
    unplanned.report("acme", NO_BOEFJE, "mutation")
    assert unplanned.counts() == {NO_BOEFJE: 2, UNKNOWN_ORGANISATION: 1}
    assert "org=ghost reason=organisation_unknown" in lines(caplog)[1]


def test_the_rate_limit_remembers_a_bounded_number_of_pairs(clock: FakeClock) -> None:
    unplanned = UnplannedEvents(clock)
    for index in range(MAX_TRACKED * 3):
        unplanned.report(f"org{index}", NO_BOEFJE, "mutation")
    assert len(unplanned._seen) <= MAX_TRACKED + 1
    assert unplanned.counts() == {NO_BOEFJE: MAX_TRACKED * 3}


def test_a_mutation_batch_reports_each_event_that_planned_nothing(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "katsched.intake")
    world.add_plugin(boefje())
    unplanned = UnplannedEvents(world.clock)
    planner = world.boefjes(unplanned=unplanned)
    ooi = hostname()
    planner.plan_for_mutations([mutation(ooi), mutation(ooi)])  # the second finds its task queued
    planner.plan_for_mutations([mutation(ooi, org=OTHER)])  # no boefje for the other organisation
    found = lines(caplog)
    assert len(found) == 2
    assert f"org={ORG} reason=already_queued" in found[0]
    assert f"org={OTHER} reason=no_boefje_for_type" in found[1]
    assert sum(unplanned.counts().values()) == 2


def test_a_raw_file_without_a_normalizer_is_reported(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "katsched.intake")
    world.add_plugin(normalizer("kat_other", "text/html"))
    unplanned = UnplannedEvents(world.clock)
    planner = world.normalizers(unplanned=unplanned)
    planner.plan_for_raw_file(raw_event())
    assert unplanned.counts() == {"no_normalizer_for_mime": 1}
    assert lines(caplog) == [
        f"event_planned_nothing event=raw_file org={ORG} reason=no_normalizer_for_mime not_logged_since=0"
    ]
