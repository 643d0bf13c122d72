"""In-memory ports and a settable clock, for our tests and for plugin authors' tests.

Each fake answers as its real adapter does against the real service (the contract suite in
`tests/contract/test_kat_ports.py` runs the same cases on both), and is safe to share between threads.
"""

import threading
from collections.abc import Collection, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from katsched.clock import Clock
from katsched.core.models import OOI, BoefjeConfig, BoefjeMeta, Organisation, Plugin
from katsched.core.ports import ObjectGraph, PluginCatalog, PluginType, RawDataIndex
from katsched.kat.katalogus import CatalogLookups, is_listed, select_configs, select_plugins

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A `katsched.clock.Clock` that only moves when told to."""

    def __init__(self, start: datetime = _EPOCH) -> None:
        self._lock = threading.Lock()
        self._now = _aware(start)

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = _aware(when)

    def advance(self, delta: timedelta | None = None, **units: float) -> datetime:
        """Move forward by `delta` and/or `timedelta(**units)` (e.g. `advance(seconds=31)`); the new now."""
        step = (delta or timedelta(0)) + timedelta(**units)
        with self._lock:
            self._now += step
            return self._now


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("FakeClock needs a timezone-aware datetime")
    return when.astimezone(UTC)


class InMemoryCatalog(CatalogLookups):
    """A `PluginCatalog` whose organisations, plugins and configs a test sets up and changes at will."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._organisations: dict[str, Organisation] = {}
        self._plugins: dict[str, dict[str, Plugin]] = {}
        self._configs: list[BoefjeConfig] = []

    def add_organisation(self, organisation: Organisation) -> None:
        with self._lock:
            self._organisations[organisation.id] = organisation
            self._plugins.setdefault(organisation.id, {})

    def add_plugin(self, organisation_id: str, plugin: Plugin) -> None:
        """Add or replace the organisation's plugin of that id (its `enabled` is per organisation)."""
        with self._lock:
            if organisation_id not in self._organisations:
                raise KeyError(f"unknown organisation {organisation_id!r}: add it first")
            self._plugins[organisation_id][plugin.id] = plugin

    def remove_plugin(self, organisation_id: str, plugin_id: str) -> None:
        with self._lock:
            self._plugins.get(organisation_id, {}).pop(plugin_id, None)

    def add_config(self, config: BoefjeConfig) -> None:
        with self._lock:
            self._configs.append(config)

    def organisations(self) -> list[Organisation]:
        with self._lock:
            return list(self._organisations.values())

    def plugins(
        self, organisation_id: str, plugin_type: PluginType | None = None, consumes: str | None = None
    ) -> list[Plugin]:
        with self._lock:
            listed = list(self._plugins.get(organisation_id, {}).values())
        return select_plugins(listed, plugin_type, consumes)

    def plugin(self, organisation_id: str, plugin_id: str) -> Plugin | None:
        with self._lock:
            found = self._plugins.get(organisation_id, {}).get(plugin_id)
        return found if found is not None and is_listed(found) else None

    def configs(
        self,
        boefje_id: str,
        organisation_id: str | None = None,
        enabled: bool | None = None,
        with_duplicates: bool = False,
    ) -> list[BoefjeConfig]:
        with self._lock:
            configs = list(self._configs)
        return select_configs(configs, boefje_id, organisation_id, enabled, with_duplicates)


class InMemoryObjectGraph:
    """An `ObjectGraph` of the objects a test adds; it has no history, so `valid_time` is ignored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, OOI]] = {}

    def add(self, organisation_id: str, ooi: OOI) -> None:
        with self._lock:
            self._objects.setdefault(organisation_id, {})[ooi.primary_key] = ooi

    def remove(self, organisation_id: str, primary_key: str) -> None:
        with self._lock:
            self._objects.get(organisation_id, {}).pop(primary_key, None)

    def objects(
        self,
        organisation_id: str,
        object_types: Collection[str],
        scan_levels: Collection[int] | None = None,
        *,
        valid_time: datetime,
    ) -> Iterator[OOI]:
        with self._lock:
            snapshot = sorted(
                self._objects.get(organisation_id, {}).values(), key=lambda ooi: ooi.primary_key
            )
        return iter([ooi for ooi in snapshot if _matches(ooi, object_types, scan_levels)])

    def get_object(self, organisation_id: str, reference: str, *, valid_time: datetime) -> OOI | None:
        with self._lock:
            return self._objects.get(organisation_id, {}).get(reference)

    def object_clients(
        self, reference: str, organisation_ids: Collection[str], *, valid_time: datetime
    ) -> dict[str, OOI]:
        with self._lock:
            return {
                org: self._objects[org][reference]
                for org in organisation_ids
                if reference in self._objects.get(org, {})
            }


def _matches(ooi: OOI, object_types: Collection[str], scan_levels: Collection[int] | None) -> bool:
    if ooi.object_type not in object_types:
        return False
    if scan_levels is None:
        return True
    return ooi.scan_profile is not None and ooi.scan_profile.level in scan_levels


class InMemoryRawDataIndex:
    """A `RawDataIndex` over the boefje runs a test adds."""

    def __init__(self, metas: Iterable[BoefjeMeta] = ()) -> None:
        self._lock = threading.Lock()
        self._metas = list(metas)

    def add(self, meta: BoefjeMeta) -> None:
        with self._lock:
            self._metas.append(meta)

    def last_run(self, boefje_id: str, input_ooi: str | None, organization: str) -> BoefjeMeta | None:
        with self._lock:
            runs = [
                meta
                for meta in self._metas
                if meta.boefje.id == boefje_id
                and meta.organization == organization
                and (input_ooi is None or meta.input_ooi == input_ooi)
            ]
        # Newest by start; a run without a start time counts as the oldest.
        return max(runs, key=_started, default=None)

    def last_runs(
        self, input_ooi: str | None, organization: str, boefje_ids: Collection[str]
    ) -> dict[str, BoefjeMeta]:
        runs = {boefje_id: self.last_run(boefje_id, input_ooi, organization) for boefje_id in boefje_ids}
        return {boefje_id: meta for boefje_id, meta in runs.items() if meta is not None}


def _started(meta: BoefjeMeta) -> datetime:
    return meta.started_at or datetime.min.replace(tzinfo=UTC)


if TYPE_CHECKING:  # mypy proves that the fakes implement the ports

    def _implement_ports(
        catalog: InMemoryCatalog, graph: InMemoryObjectGraph, raw: InMemoryRawDataIndex, clock: FakeClock
    ) -> tuple[PluginCatalog, ObjectGraph, RawDataIndex, Clock]:
        return catalog, graph, raw, clock
