"""Cross-organisation deduplication of boefje tasks (reference §4.2.5 step 6).

Organisations that run a boefje with identical settings on the same object would get identical results, so one
run can serve them all: the Katalogus lists those organisations as "duplicates" of a config, Octopoes says in
which of them the object exists, and the planner pushes one task per organisation, grouped by a shared
`deduplication_key` that the queue hands out together.
"""

import threading
from collections.abc import Collection
from datetime import datetime, timedelta

from katsched.clock import Clock
from katsched.core.models import OOI
from katsched.core.ports import ObjectGraph, PluginCatalog


class DuplicateOrganisations:
    """The other organisations a boefje run may serve. The Katalogus answer is cached per (organisation,
    boefje) for `ttl`, so a burst of tasks costs one configs request per boefje, not one per task."""

    def __init__(self, catalog: PluginCatalog, objects: ObjectGraph, clock: Clock, ttl: timedelta) -> None:
        self._catalog = catalog
        self._objects = objects
        self._clock = clock
        self._ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[datetime, frozenset[str]]] = {}

    def configured(self, organisation: str, boefje_id: str) -> frozenset[str]:
        """Organisations whose enabled config of the boefje has the same settings as `organisation`'s."""
        key, now = (organisation, boefje_id), self._clock.now()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        configs = self._catalog.configs(boefje_id, organisation, enabled=True, with_duplicates=True)
        others = frozenset(dup.organisation_id for config in configs for dup in config.duplicates)
        others -= {organisation}
        with self._lock:
            self._cache[key] = (now, others)
        return others

    def holding(self, reference: str, organisations: Collection[str], now: datetime) -> dict[str, OOI]:
        """Of `organisations`, those in which the object exists, with their copy of it (its scan level)."""
        if not organisations:
            return {}
        found = self._objects.object_clients(reference, organisations, valid_time=now)
        return {org: ooi for org, ooi in found.items() if org in organisations}
