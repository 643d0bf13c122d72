"""In-memory ports and a settable clock, for our tests and for plugin authors' tests.

Each fake answers as its real adapter does against the real service (the contract suites in
`tests/contract/test_kat_ports.py` and `tests/contract/test_store_contract.py` run the same cases on both),
and is safe to share between threads. The planners' store ports live in private modules, re-exported here:
`MemoryTaskStore` and `MemoryScheduleStore` (sharing one `MemoryTables`), `MemoryTaskQueue` (the
`TaskQueue` port: a `MemoryTaskStore` with the queue's single push, updates, listing and counts; the
`ScheduleRegistry` port is `MemoryScheduleStore`), `MemorySeenPlugins`, `MemoryDecisionLog`, and
`MemoryJobLeases` (the `JobLeases` port).
"""

import threading
from collections.abc import Collection, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from katsched._memory_housekeeping import MemoryHousekeeping as MemoryHousekeeping
from katsched._memory_leases import MemoryJobLeases as MemoryJobLeases
from katsched._memory_queue import MemoryTaskQueue as MemoryTaskQueue
from katsched._memory_schedules import MemoryDecisionLog as MemoryDecisionLog
from katsched._memory_schedules import MemoryScheduleStore as MemoryScheduleStore
from katsched._memory_schedules import MemorySeenPlugins as MemorySeenPlugins
from katsched._memory_store import MemoryTaskStore as MemoryTaskStore
from katsched._memory_tables import MemoryTables as MemoryTables
from katsched.clock import Clock
from katsched.core.models import OOI, BoefjeConfig, BoefjeMeta, Organisation, Plugin
from katsched.core.ports import ObjectGraph, PluginCatalog, PluginType, RawDataIndex

_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class FakeClock:
    """A `katsched.clock.Clock` that only moves when told to.

    `advance()` moves both its wall time and its monotonic time; `set()` moves the wall time only, as an
    adjustment of the system clock does, so monotonic time never goes back."""

    def __init__(self, start: datetime = _EPOCH) -> None:
        self._lock = threading.Lock()
        self._now = _aware(start)
        self._monotonic = 0.0

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._monotonic

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = _aware(when)

    def advance(self, delta: timedelta | None = None, **units: float) -> datetime:
        """Move forward by `delta` and/or `timedelta(**units)` (e.g. `advance(seconds=31)`); the new now."""
        step = (delta or timedelta(0)) + timedelta(**units)
        if step < timedelta(0):
            raise ValueError("FakeClock.advance moves forward only; use set() to move the wall time back")
        with self._lock:
            self._now += step
            self._monotonic += step.total_seconds()
            return self._now


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("FakeClock needs a timezone-aware datetime")
    return when.astimezone(UTC)


class InMemoryCatalog:
    """A `PluginCatalog` whose organisations, plugins and configs a test sets up and changes at will.

    Its selection code is its own, written from the port's documentation rather than shared with the
    Katalogus adapter, so that the contract suite compares two independent implementations."""

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
            held = list(self._plugins.get(organisation_id, {}).values())
        found = []
        for plugin in held:
            if _hidden(plugin) or (plugin_type is not None and plugin.type != plugin_type):
                continue
            if consumes is not None and consumes not in _takes(plugin):
                continue
            found.append(plugin)
        return found

    def plugin(self, organisation_id: str, plugin_id: str, *, wait: bool = True) -> Plugin | None:
        with self._lock:  # nothing to ask: `wait` changes nothing
            found = self._plugins.get(organisation_id, {}).get(plugin_id)
        return None if found is None or _hidden(found) else found

    def fresh_plugins(self, organisation_id: str) -> list[Plugin]:
        return self.plugins(organisation_id)  # nothing is cached here

    def boefjes_consuming(self, organisation_id: str, ooi_type: str) -> list[Plugin]:
        return self.plugins(organisation_id, "boefje", ooi_type)

    def normalizers_for_mime(self, organisation_id: str, mime_type: str) -> list[Plugin]:
        return self.plugins(organisation_id, "normalizer", mime_type)

    def enabled_boefjes(self, organisation_id: str) -> list[Plugin]:
        return [boefje for boefje in self.plugins(organisation_id, "boefje") if boefje.enabled]

    def configs(
        self,
        boefje_id: str,
        organisation_id: str | None = None,
        enabled: bool | None = None,
        with_duplicates: bool = False,
    ) -> list[BoefjeConfig]:
        with self._lock:
            held = list(self._configs)
        answer = []
        for config in held:
            if config.boefje_id != boefje_id:
                continue
            if organisation_id is not None and config.organisation_id != organisation_id:
                continue
            if enabled is not None and config.enabled != enabled:
                continue
            # The Katalogus lists duplicates only for one organisation's config, and only when asked.
            twins = _twins(config, held) if with_duplicates and organisation_id is not None else []
            answer.append(config.model_copy(update={"duplicates": twins}))
        return answer


def _hidden(plugin: Plugin) -> bool:
    """The Katalogus never shows a boefje whose scan level is negative."""
    return plugin.type == "boefje" and plugin.scan_level is not None and plugin.scan_level < 0


def _takes(plugin: Plugin) -> list[str]:
    consumes = plugin.consumes
    return [consumes] if isinstance(consumes, str) else list(consumes)


def _twins(config: BoefjeConfig, configs: list[BoefjeConfig]) -> list[BoefjeConfig]:
    """The enabled configs of the same boefje in other organisations with equal settings."""
    twins = []
    for other in configs:
        same_boefje = other.boefje_id == config.boefje_id and other.organisation_id != config.organisation_id
        if same_boefje and other.enabled and other.settings == config.settings:
            twins.append(other.model_copy(update={"duplicates": []}))
    return twins


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
    from katsched.core.ports import ScheduleRegistry, TaskQueue

    def _implement_ports(
        catalog: InMemoryCatalog, graph: InMemoryObjectGraph, raw: InMemoryRawDataIndex, clock: FakeClock
    ) -> tuple[PluginCatalog, ObjectGraph, RawDataIndex, Clock]:
        return catalog, graph, raw, clock

    def _implement_store_ports(
        queue: MemoryTaskQueue, schedules: MemoryScheduleStore
    ) -> tuple[TaskQueue, ScheduleRegistry]:
        return queue, schedules
