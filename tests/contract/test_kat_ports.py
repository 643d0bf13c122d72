"""One contract for the KAT-service ports, run on the in-memory fakes and on the real HTTP clients.

The real clients talk to our loopback server (`kat_fake_server`), once with the Katalogus cache on and once
with it off, so the cached answers, the uncached ones and the fakes' must all agree.
"""

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import pytest

from katsched.core.models import OOI, Boefje, BoefjeConfig, BoefjeMeta, Organisation, Plugin, ScanProfile
from katsched.core.ports import ObjectGraph, PluginCatalog, RawDataIndex
from katsched.kat.katalogus import StaticCatalogue
from katsched.testing import FakeClock, InMemoryCatalog, InMemoryObjectGraph, InMemoryRawDataIndex

from .kat_fake_server import KatFakeServer, connect


class World(Protocol):
    """How a test sets up what the services hold, whichever implementation is under test."""

    def add_organisation(self, organisation: Organisation) -> None: ...
    def add_plugin(self, organisation_id: str, plugin: Plugin) -> None: ...
    def add_config(self, config: BoefjeConfig) -> None: ...
    def add_object(self, organisation_id: str, ooi: OOI) -> None: ...
    def add_boefje_meta(self, meta: BoefjeMeta) -> None: ...


class MemoryWorld:
    def __init__(self) -> None:
        self.catalog = InMemoryCatalog()
        self.graph = InMemoryObjectGraph()
        self.raw = InMemoryRawDataIndex()

    def add_organisation(self, organisation: Organisation) -> None:
        self.catalog.add_organisation(organisation)

    def add_plugin(self, organisation_id: str, plugin: Plugin) -> None:
        self.catalog.add_plugin(organisation_id, plugin)

    def add_config(self, config: BoefjeConfig) -> None:
        self.catalog.add_config(config)

    def add_object(self, organisation_id: str, ooi: OOI) -> None:
        self.graph.add(organisation_id, ooi)

    def add_boefje_meta(self, meta: BoefjeMeta) -> None:
        self.raw.add(meta)


class StaticWorld(MemoryWorld):
    """Records the catalogue a test sets up and answers from a `StaticCatalogue` built from it, translated
    into the config's terms: each plugin once, plus the organisations it is enabled for."""

    def __init__(self) -> None:
        super().__init__()
        self._organisations: list[Organisation] = []
        self._plugins: dict[str, dict[str, Plugin]] = {}
        self._configs: list[BoefjeConfig] = []

    def add_organisation(self, organisation: Organisation) -> None:
        self._organisations.append(organisation)

    def add_plugin(self, organisation_id: str, plugin: Plugin) -> None:
        self._plugins.setdefault(organisation_id, {})[plugin.id] = plugin

    def add_config(self, config: BoefjeConfig) -> None:
        self._configs.append(config)

    def build(self) -> StaticCatalogue:
        plugins: dict[str, Plugin] = {}
        enabled_in: dict[str, set[str]] = {}
        for org_id, org_plugins in self._plugins.items():
            for plugin in org_plugins.values():
                plugins.setdefault(plugin.id, plugin)
                enabled_in.setdefault(plugin.id, set())
                if plugin.enabled:
                    enabled_in[plugin.id].add(org_id)
        every = {org.id for org in self._organisations}
        declared = [
            plugin.model_copy(update={"enabled": bool(enabled_in[plugin.id])}) for plugin in plugins.values()
        ]
        limits = {plugin_id: orgs for plugin_id, orgs in enabled_in.items() if orgs and orgs != every}
        return StaticCatalogue(self._organisations, declared, limits, self._configs)


class LazyStaticCatalogue:
    """Builds the static catalogue at the first question, once the test has set everything up."""

    def __init__(self, world: StaticWorld) -> None:
        self._world = world

    def __getattr__(self, name: str) -> Any:
        return getattr(self._world.build(), name)


@dataclass
class Kat:
    world: World
    catalog: PluginCatalog
    graph: ObjectGraph
    raw: RawDataIndex


@pytest.fixture(scope="module")
def server() -> Iterator[KatFakeServer]:
    with KatFakeServer() as server:
        yield server


@pytest.fixture(params=["memory", "static", "http", "http-uncached"])
def kat(request: pytest.FixtureRequest, server: KatFakeServer, clock: FakeClock) -> Iterator[Kat]:
    if request.param == "memory":
        world = MemoryWorld()
        yield Kat(world, world.catalog, world.graph, world.raw)
        return
    if request.param == "static":
        static = StaticWorld()
        yield Kat(static, LazyStaticCatalogue(static), static.graph, static.raw)  # type: ignore[arg-type]
        return
    server.reset()
    # A small page size, so that listing objects walks several pages.
    clients = connect(server, clock, cache_ttl=30 if request.param == "http" else 0, page_size=2)
    yield Kat(server, clients.katalogus, clients.octopoes, clients.bytes)
    clients.close()


NOW = datetime.fromisoformat("2026-11-28T12:00:00+00:00")


def boefje(plugin_id: str, consumes: list[str], scan_level: int = 1, enabled: bool = True) -> Plugin:
    return Plugin(
        id=plugin_id,
        type="boefje",
        enabled=enabled,
        scan_level=scan_level,
        consumes=consumes,
        produces=["x/y"],
    )


def normalizer(plugin_id: str, consumes: list[str], enabled: bool = True) -> Plugin:
    return Plugin(id=plugin_id, type="normalizer", enabled=enabled, consumes=consumes, produces=["Hostname"])


def ooi(primary_key: str, level: int | None = 1) -> OOI:
    object_type = primary_key.split("|")[0]
    profile = (
        None
        if level is None
        else ScanProfile(level=level, reference=primary_key, scan_profile_type="declared")
    )
    return OOI(primary_key=primary_key, object_type=object_type, scan_profile=profile)


def meta(boefje_id: str, input_ooi: str | None, org: str, started_hours_ago: float | None) -> BoefjeMeta:
    started = None if started_hours_ago is None else NOW - timedelta(hours=started_hours_ago)
    return BoefjeMeta(
        id=uuid.uuid4(),
        boefje=Boefje(id=boefje_id),
        input_ooi=input_ooi,
        organization=org,
        started_at=started,
        ended_at=None if started is None else started + timedelta(minutes=1),
    )


def ids(plugins: list[Plugin]) -> list[str]:
    return sorted(plugin.id for plugin in plugins)


@pytest.fixture
def catalogue(kat: Kat) -> Kat:
    """Two organisations: dns-records is enabled in org1 only; a negative-level boefje hides everywhere."""
    for org_id in ("org1", "org2"):
        kat.world.add_organisation(Organisation(id=org_id, name=org_id.upper()))
        kat.world.add_plugin(org_id, boefje("dns-records", ["Hostname"], enabled=org_id == "org1"))
        kat.world.add_plugin(org_id, boefje("nmap", ["IPAddressV4", "IPAddressV6"], scan_level=2))
        kat.world.add_plugin(org_id, boefje("hidden", ["Hostname"], scan_level=-1))
        kat.world.add_plugin(org_id, normalizer("kat_dns_normalize", ["boefje/dns-records", "text/plain"]))
        kat.world.add_plugin(org_id, normalizer("kat_off", ["text/plain"], enabled=False))
    return kat


# -- PluginCatalog -------------------------------------------------------------------------------------------


def test_no_organisations(kat: Kat) -> None:
    assert kat.catalog.organisations() == []


def test_organisations(catalogue: Kat) -> None:
    found = sorted(catalogue.catalog.organisations(), key=lambda org: org.id)
    assert found == [Organisation(id="org1", name="ORG1"), Organisation(id="org2", name="ORG2")]


def test_plugins_of_unknown_organisation_are_none(catalogue: Kat) -> None:
    assert catalogue.catalog.plugins("nope") == []
    assert catalogue.catalog.plugin("nope", "nmap") is None
    assert catalogue.catalog.boefjes_consuming("nope", "Hostname") == []


def test_plugins_lists_every_type_but_hides_negative_scan_levels(catalogue: Kat) -> None:
    assert ids(catalogue.catalog.plugins("org1")) == ["dns-records", "kat_dns_normalize", "kat_off", "nmap"]


def test_plugins_filter_by_type_and_consumes(catalogue: Kat) -> None:
    catalog = catalogue.catalog
    assert ids(catalog.plugins("org1", plugin_type="boefje")) == ["dns-records", "nmap"]
    assert ids(catalog.plugins("org1", plugin_type="normalizer", consumes="text/plain")) == [
        "kat_dns_normalize",
        "kat_off",
    ]
    assert ids(catalog.plugins("org1", consumes="IPAddressV6")) == ["nmap"]
    assert catalog.plugins("org1", plugin_type="bit") == []


def test_plugin_by_id(catalogue: Kat) -> None:
    found = catalogue.catalog.plugin("org1", "nmap")
    assert found == boefje("nmap", ["IPAddressV4", "IPAddressV6"], scan_level=2)
    assert catalogue.catalog.plugin("org1", "missing") is None
    assert catalogue.catalog.plugin("org1", "hidden") is None


def test_fresh_plugins_are_the_plugins_list(catalogue: Kat) -> None:
    assert catalogue.catalog.fresh_plugins("org1") == catalogue.catalog.plugins("org1")
    assert catalogue.catalog.fresh_plugins("nope") == []


def test_enabled_state_is_per_organisation(catalogue: Kat) -> None:
    assert ids(catalogue.catalog.enabled_boefjes("org1")) == ["dns-records", "nmap"]
    assert ids(catalogue.catalog.enabled_boefjes("org2")) == ["nmap"]
    org2_dns = catalogue.catalog.plugin("org2", "dns-records")
    assert org2_dns is not None and org2_dns.enabled is False


def test_planner_lookups_include_disabled_plugins(catalogue: Kat) -> None:
    assert ids(catalogue.catalog.boefjes_consuming("org2", "Hostname")) == ["dns-records"]
    assert ids(catalogue.catalog.boefjes_consuming("org1", "IPAddressV4")) == ["nmap"]
    assert catalogue.catalog.boefjes_consuming("org1", "Network") == []
    assert ids(catalogue.catalog.normalizers_for_mime("org1", "text/plain")) == [
        "kat_dns_normalize",
        "kat_off",
    ]
    assert ids(catalogue.catalog.normalizers_for_mime("org1", "boefje/dns-records")) == ["kat_dns_normalize"]


def _config(
    config_id: int, org: str, enabled: bool = True, settings: dict[str, str] | None = None
) -> BoefjeConfig:
    return BoefjeConfig(
        id=config_id, boefje_id="dns-records", enabled=enabled, organisation_id=org, settings=settings or {}
    )


def test_configs_filter_and_duplicates(kat: Kat) -> None:
    for config in [
        _config(1, "org1", settings={"k": "v"}),
        _config(2, "org2", settings={"k": "v"}),
        _config(3, "org3", settings={"k": "other"}),
        _config(4, "org4", enabled=False, settings={"k": "v"}),
        BoefjeConfig(id=5, boefje_id="nmap", enabled=True, organisation_id="org1"),
    ]:
        kat.world.add_config(config)
    catalog = kat.catalog
    assert [c.id for c in catalog.configs("dns-records")] == [1, 2, 3, 4]
    assert [c.id for c in catalog.configs("dns-records", enabled=False)] == [4]
    assert all(c.duplicates == [] for c in catalog.configs("dns-records", with_duplicates=True))
    [mine] = catalog.configs("dns-records", organisation_id="org1", enabled=True, with_duplicates=True)
    assert mine.id == 1
    assert [(d.id, d.organisation_id) for d in mine.duplicates] == [(2, "org2")]
    [plain] = catalog.configs("dns-records", organisation_id="org1")
    assert plain.duplicates == []
    assert catalog.configs("unknown") == []


# -- ObjectGraph ---------------------------------------------------------------------------------------------


@pytest.fixture
def graph(kat: Kat) -> Kat:
    kat.world.add_organisation(Organisation(id="org1"))
    for key, level in [
        ("Hostname|internet|a.example", 1),
        ("Hostname|internet|b.example", 2),
        ("Hostname|internet|c.example", 0),
        ("Hostname|internet|d.example", 3),
        ("Hostname|internet|e.example", 2),
        ("IPAddressV4|internet|192.0.2.1", 2),
        ("Network|internet", None),
    ]:
        kat.world.add_object("org1", ooi(key, level))
    kat.world.add_object("org2", ooi("Hostname|internet|a.example", 4))
    return kat


def keys(oois: Iterator[OOI]) -> list[str]:
    return sorted(found.primary_key for found in oois)


def test_objects_by_type_across_pages(graph: Kat) -> None:
    found = keys(graph.graph.objects("org1", ["Hostname"], valid_time=NOW))
    assert found == [f"Hostname|internet|{name}.example" for name in "abcde"]


def test_objects_by_type_and_scan_level(graph: Kat) -> None:
    found = keys(graph.graph.objects("org1", ["Hostname", "IPAddressV4"], [2, 3, 4], valid_time=NOW))
    assert found == [
        "Hostname|internet|b.example",
        "Hostname|internet|d.example",
        "Hostname|internet|e.example",
        "IPAddressV4|internet|192.0.2.1",
    ]


def test_objects_without_types_or_organisation_are_none(graph: Kat) -> None:
    assert keys(graph.graph.objects("org1", [], valid_time=NOW)) == []
    assert keys(graph.graph.objects("nope", ["Hostname"], valid_time=NOW)) == []


def test_get_object(graph: Kat) -> None:
    found = graph.graph.get_object("org1", "Hostname|internet|b.example", valid_time=NOW)
    assert found == ooi("Hostname|internet|b.example", 2)
    assert graph.graph.get_object("org1", "Network|internet", valid_time=NOW) == ooi("Network|internet", None)
    assert graph.graph.get_object("org1", "Hostname|internet|zzz", valid_time=NOW) is None
    assert graph.graph.get_object("nope", "Hostname|internet|b.example", valid_time=NOW) is None


def test_object_clients(graph: Kat) -> None:
    found = graph.graph.object_clients(
        "Hostname|internet|a.example", ["org1", "org2", "org3"], valid_time=NOW
    )
    assert found == {
        "org1": ooi("Hostname|internet|a.example", 1),
        "org2": ooi("Hostname|internet|a.example", 4),
    }
    assert graph.graph.object_clients("Hostname|internet|b.example", ["org2"], valid_time=NOW) == {}
    assert graph.graph.object_clients("Hostname|internet|a.example", [], valid_time=NOW) == {}


# -- RawDataIndex --------------------------------------------------------------------------------------------


def test_last_run_none_without_runs(kat: Kat) -> None:
    assert kat.raw.last_run("dns-records", "Hostname|internet|a.example", "org1") is None


def test_last_run_is_the_newest_matching_run(kat: Kat) -> None:
    newest = meta("dns-records", "Hostname|internet|a.example", "org1", started_hours_ago=1)
    for run in [
        meta("dns-records", "Hostname|internet|a.example", "org1", started_hours_ago=5),
        newest,
        meta("dns-records", "Hostname|internet|a.example", "org1", started_hours_ago=None),
        meta("dns-records", "Hostname|internet|a.example", "org2", started_hours_ago=0.5),
        meta("dns-records", "Hostname|internet|b.example", "org1", started_hours_ago=0.5),
        meta("nmap", "Hostname|internet|a.example", "org1", started_hours_ago=0.5),
    ]:
        kat.world.add_boefje_meta(run)
    assert kat.raw.last_run("dns-records", "Hostname|internet|a.example", "org1") == newest
    assert kat.raw.last_run("dns-records", "Hostname|internet|zzz", "org1") is None


def test_last_run_without_object_matches_any(kat: Kat) -> None:
    oldest = meta("report-boefje", None, "org1", started_hours_ago=3)
    newest = meta("report-boefje", None, "org1", started_hours_ago=2)
    kat.world.add_boefje_meta(oldest)
    kat.world.add_boefje_meta(newest)
    assert kat.raw.last_run("report-boefje", None, "org1") == newest


HOST_A, HOST_B = "Hostname|internet|a.example", "Hostname|internet|b.example"


def test_last_runs_none_without_runs(kat: Kat) -> None:
    assert kat.raw.last_runs(HOST_A, "org1", ["dns-records", "nmap"]) == {}
    assert kat.raw.last_runs(HOST_A, "org1", []) == {}


def test_last_runs_is_last_run_of_each_boefje(kat: Kat) -> None:
    for run in [
        meta("dns-records", HOST_A, "org1", started_hours_ago=5),
        meta("dns-records", HOST_A, "org1", started_hours_ago=1),
        meta("dns-records", HOST_A, "org1", started_hours_ago=None),
        meta("dns-records", HOST_A, "org2", started_hours_ago=0.5),
        meta("dns-records", HOST_B, "org1", started_hours_ago=0.5),
        meta("nmap", HOST_A, "org1", started_hours_ago=3),
        meta("whois", HOST_A, "org1", started_hours_ago=0.1),  # not asked for
    ]:
        kat.world.add_boefje_meta(run)
    asked = ["dns-records", "nmap", "never-ran"]
    expected = {
        boefje_id: kat.raw.last_run(boefje_id, HOST_A, "org1") for boefje_id in ("dns-records", "nmap")
    }
    assert kat.raw.last_runs(HOST_A, "org1", asked) == expected
    newest_dns = expected["dns-records"]
    assert newest_dns is not None and newest_dns.started_at == NOW - timedelta(hours=1)
    assert kat.raw.last_runs(HOST_A, "org1", ["nmap"]) == {"nmap": expected["nmap"]}


def test_last_runs_finds_a_boefje_behind_many_runs_of_another(kat: Kat) -> None:
    """One boefje that ran often must not hide another's older run (a page of newest runs would)."""
    for hours in range(200):
        kat.world.add_boefje_meta(meta("nmap", HOST_A, "org1", started_hours_ago=hours))
    old = meta("dns-records", HOST_A, "org1", started_hours_ago=1000)
    kat.world.add_boefje_meta(old)
    runs = kat.raw.last_runs(HOST_A, "org1", ["dns-records", "nmap", "whois"])
    assert runs == {"dns-records": old, "nmap": kat.raw.last_run("nmap", HOST_A, "org1")}
    assert runs["nmap"].started_at == NOW


def test_last_runs_without_object_matches_any(kat: Kat) -> None:
    newest = meta("report-boefje", None, "org1", started_hours_ago=2)
    kat.world.add_boefje_meta(meta("report-boefje", None, "org1", started_hours_ago=3))
    kat.world.add_boefje_meta(newest)
    assert kat.raw.last_runs(None, "org1", ["report-boefje", "other"]) == {"report-boefje": newest}


def test_static_catalogue_enables_a_plugin_for_the_listed_organisations() -> None:
    organisations = [Organisation(id="org1"), Organisation(id="org2"), Organisation(id="org3")]
    catalogue = StaticCatalogue(
        organisations,
        [
            boefje("dns-records", ["Hostname"]),
            boefje("nmap", ["IPAddressV4"]),
            boefje("off", ["X"], enabled=False),
        ],
        {"dns-records": ["org1", "org3"], "nmap": [], "off": ["org1"]},
    )
    assert [ids(catalogue.enabled_boefjes(org.id)) for org in organisations] == [
        ["dns-records", "nmap"],
        ["nmap"],
        ["dns-records", "nmap"],
    ]
    assert ids(catalogue.plugins("org2")) == ["dns-records", "nmap", "off"]
    assert catalogue.plugins("org4") == []
    assert catalogue.configs("dns-records") == []
