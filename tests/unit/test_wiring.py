"""The composition root: what it builds from Settings, without a daemon around it."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from katsched import wiring
from katsched.config import Settings, settings_from_toml
from katsched.core.models import SchedulerKind
from katsched.kat.absent import NoObjectGraph, NoRawData
from katsched.kat.katalogus import StaticCatalogue
from katsched.testing import FakeClock

CONFIG = """
[database]
url = "sqlite:///{path}"
[schedulers.normalizer]
maxsize = 7
dispatch_timeout = 45
[recurring]
reschedule_interval = 120
rank_interval = 600
[[catalogue.organisations]]
id = "acme"
name = "Acme"
"""


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_from_toml(CONFIG.format(path=tmp_path / "katsched.db"), "test")


@pytest.fixture
def core(settings: Settings) -> Iterator[wiring.Core]:
    built = wiring.build_core(settings, wiring.open_engine(settings), FakeClock())
    yield built
    built.close()


def test_each_scheduler_has_its_policy_and_leases(settings: Settings) -> None:
    policies, leases = wiring.push_policies(settings), wiring.lease_timeouts(settings)
    assert set(policies) == set(leases) == {kind.value for kind in SchedulerKind}
    assert (
        policies["normalizer"].maxsize == 7
        and policies["boefje"].maxsize == settings.schedulers.boefje.maxsize
    )
    assert leases["normalizer"].dispatch_timeout == timedelta(seconds=45)


def test_without_service_urls_the_core_uses_the_static_catalogue_and_stand_ins(core: wiring.Core) -> None:
    assert isinstance(core.services.catalog, StaticCatalogue)
    assert [org.id for org in core.services.catalog.organisations()] == ["acme"]
    assert isinstance(core.services.objects, NoObjectGraph) and isinstance(core.services.raw_data, NoRawData)
    assert core.services.checks == {}
    assert core.queue.policy("normalizer").maxsize == 7


def test_the_app_serves_explain_from_the_core(core: wiring.Core) -> None:
    with TestClient(wiring.build_app(core)) as client:
        response = client.get("/explain", params={"organisation": "acme", "ooi": "Hostname|internet|a.org"})
    # No Octopoes configured: the object cannot be looked up, and the answer names that instead of a 503.
    assert response.status_code == 200, response.text
    assert "octopoes" in response.json()["unavailable"]


def test_recurring_jobs_take_the_intervals_they_are_given(core: wiring.Core, settings: Settings) -> None:
    reloaded = settings.recurring.model_copy(update={"reschedule_interval": 30})
    recurring = wiring.build_recurring(core, reloaded, {"lease_sweep": lambda: None}, holder="host:1")
    recurring.start(paused=True)
    try:
        jobs = {job.id: job for job in recurring._scheduler.get_jobs()}
        assert jobs["boefje.reschedule@acme"].trigger.interval == timedelta(seconds=30)
        assert jobs["boefje.rerank@acme"].trigger.interval == timedelta(seconds=600)
        assert "boefje.new_plugins@acme" not in jobs  # no Octopoes: no objects to enumerate
        assert jobs["lease_sweep"].trigger.interval == timedelta(seconds=settings.recurring.sweep_interval)
    finally:
        recurring.stop(timeout=10)


def test_the_once_only_jobs_share_one_lease_held_in_the_database(
    core: wiring.Core, settings: Settings
) -> None:
    """Sweeps, retention, re-ranking and new-plugin enumeration run on one daemon; rescheduling (claimed row
    by row), the organisations refresh and the health probes run on every daemon."""
    octopoes = settings.model_copy(
        update={"octopoes": settings.octopoes.model_copy(update={"url": "http://o"})}
    )
    with_objects = wiring.Core(octopoes, core.clock, core.queue, core.schedules, core.services, core.planners)
    bodies = {name: lambda: None for name in ("lease_sweep", "retention", "metrics")}
    recurring = wiring.build_recurring(with_objects, settings.recurring, bodies, holder="host:1")
    jobs = {**recurring._global_jobs, **recurring._organisation_jobs}
    assert {name: job.lease for name, job in jobs.items()} == {
        "organisations": None,
        "metrics": None,
        "boefje.reschedule": None,
        "report.reschedule": None,
        "lease_sweep": "once-only",
        "retention": "once-only",
        "boefje.rerank": "once-only",
        "boefje.new_plugins": "once-only",
    }
    recurring.start(paused=True)
    try:
        recurring._leases.renew()  # type: ignore[union-attr]
        assert recurring.leases_held() == ["once-only"]
        assert [(lease.name, lease.holder) for lease in core.job_leases.leases()] == [("once-only", "host:1")]
        expires = core.job_leases.leases()[0].expires_at
        assert expires == core.clock.now() + timedelta(seconds=settings.cluster.lease_duration)
    finally:
        recurring.stop(timeout=10)
    assert core.job_leases.leases() == [], "a clean stop releases the lease"


def test_no_consumers_unless_amqp_is_enabled(core: wiring.Core, settings: Settings) -> None:
    assert wiring.consumers(core) == {}
    enabled = settings.model_copy(update={"amqp": settings.amqp.model_copy(update={"enabled": True})})
    on = wiring.Core(enabled, core.clock, core.queue, core.schedules, core.services, core.planners)
    assert set(wiring.consumers(on)) == {settings.amqp.mutations_queue, settings.amqp.raw_files_queue}
