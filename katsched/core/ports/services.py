"""Ports of the KAT services: Katalogus (plugins), Octopoes (objects), Bytes (raw data).

Shared rules: "absent" is an answer, not an error (an unknown organisation, plugin or object gives None or
an empty result); a service that fails raises `katsched.errors.ServiceError`, and `ServiceUnavailable` when
the failure is transient and the work should be deferred.
"""

from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Literal, Protocol

from katsched.core.models import (
    OOI,
    BoefjeConfig,
    BoefjeMeta,
    Organisation,
    Plugin,
)

PluginType = Literal["boefje", "normalizer", "bit"]


class PluginCatalog(Protocol):
    """The Katalogus: organisations, and the plugins each of them has (enabled or not)."""

    def organisations(self) -> list[Organisation]: ...

    def plugins(
        self, organisation_id: str, plugin_type: PluginType | None = None, consumes: str | None = None
    ) -> list[Plugin]:
        """The organisation's plugins, optionally only one type and only those that consume `consumes`
        (an object type for boefjes, a mime type for normalizers). Boefjes with a negative scan level are
        never listed, as the Katalogus hides them."""
        ...

    def plugin(self, organisation_id: str, plugin_id: str, *, wait: bool = True) -> Plugin | None:
        """The organisation's plugin of that id, if listed. `wait=False`: raise `WouldWait` rather than ask
        the Katalogus, when the answer is not at hand (a catalogue that never asks answers at once)."""
        ...

    def fresh_plugins(self, organisation_id: str) -> list[Plugin]:
        """`plugins(organisation_id)` as the Katalogus has them now: asked afresh, never from a cache (a
        cache is refreshed with the answer). For decisions that must see a plugin disabled a moment ago."""
        ...

    def boefjes_consuming(self, organisation_id: str, ooi_type: str) -> list[Plugin]:
        """Boefjes, enabled or not, that take objects of `ooi_type`: the permission rule decides."""
        ...

    def normalizers_for_mime(self, organisation_id: str, mime_type: str) -> list[Plugin]:
        """Normalizers, enabled or not, that take raw files of `mime_type`."""
        ...

    def enabled_boefjes(self, organisation_id: str) -> list[Plugin]: ...

    def configs(
        self,
        boefje_id: str,
        organisation_id: str | None = None,
        enabled: bool | None = None,
        with_duplicates: bool = False,
    ) -> list[BoefjeConfig]:
        """Per-organisation settings of a boefje. With `organisation_id` and `with_duplicates`, each config
        lists the other organisations' enabled configs with identical settings (cross-organisation dedup)."""
        ...


class ObjectGraph(Protocol):
    """Octopoes: the objects (OOIs) of each organisation, as they were at `valid_time`."""

    def objects(
        self,
        organisation_id: str,
        object_types: Collection[str],
        scan_levels: Collection[int] | None = None,
        *,
        valid_time: datetime,
    ) -> Iterator[OOI]:
        """Objects of the given types (an empty collection matches nothing) and, when given, scan levels.
        Lazy: pages are fetched while iterating, so a `ServiceError` can surface during iteration."""
        ...

    def get_object(self, organisation_id: str, reference: str, *, valid_time: datetime) -> OOI | None: ...

    def object_clients(
        self, reference: str, organisation_ids: Collection[str], *, valid_time: datetime
    ) -> dict[str, OOI]:
        """Of `organisation_ids`, those in which the object exists, each with its own copy of it."""
        ...


class RawDataIndex(Protocol):
    """Bytes: what the boefjes have run."""

    def last_run(self, boefje_id: str, input_ooi: str | None, organization: str) -> BoefjeMeta | None:
        """The newest run of the boefje on the object in the organisation; `input_ooi=None` matches any."""
        ...

    def last_runs(
        self, input_ooi: str | None, organization: str, boefje_ids: Collection[str]
    ) -> dict[str, BoefjeMeta]:
        """`last_run` of each of `boefje_ids` on one object, keyed by boefje id; those that never ran on it
        are left out. One request to Bytes for the object rather than one per boefje."""
        ...
