"""The plugin catalogue: the Katalogus over HTTP (cached per organisation), or a static one from the config.

Both implement `katsched.core.ports.PluginCatalog`, as does the mutable `katsched.testing.InMemoryCatalog`.
"""

import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from pydantic import TypeAdapter

from katsched.clock import Clock
from katsched.core.models import BoefjeConfig, Organisation, Plugin
from katsched.core.ports import PluginCatalog, PluginType
from katsched.errors import WouldWait
from katsched.kat.http import ServiceHttp

_ORGANISATIONS = TypeAdapter(dict[str, Organisation])
_PLUGINS = TypeAdapter(list[Plugin])
_PLUGIN = TypeAdapter(Plugin)
_CONFIGS = TypeAdapter(list[BoefjeConfig])


def _consumed(plugin: Plugin) -> list[str]:
    # Bits consume a single type, given as a plain string.
    return [plugin.consumes] if isinstance(plugin.consumes, str) else plugin.consumes


def is_listed(plugin: Plugin) -> bool:
    """The Katalogus leaves boefjes with a negative scan level out of every plugin list; so do we, everywhere,
    so that a lookup answers the same whether it is served from a list or by id."""
    return plugin.type != "boefje" or plugin.scan_level is None or plugin.scan_level >= 0


def select_plugins(
    plugins: Iterable[Plugin], plugin_type: PluginType | None = None, consumes: str | None = None
) -> list[Plugin]:
    """The Katalogus's list filter, applied locally: by type, and by one consumed object or mime type."""
    return [
        plugin
        for plugin in plugins
        if is_listed(plugin)
        and (plugin_type is None or plugin.type == plugin_type)
        and (consumes is None or consumes in _consumed(plugin))
    ]


def select_configs(
    configs: Sequence[BoefjeConfig],
    boefje_id: str,
    organisation_id: str | None = None,
    enabled: bool | None = None,
    with_duplicates: bool = False,
) -> list[BoefjeConfig]:
    """The Katalogus's `/v1/configs` query, applied locally to a list of configs."""
    matching = [
        config
        for config in configs
        if config.boefje_id == boefje_id
        and (organisation_id is None or config.organisation_id == organisation_id)
        and (enabled is None or config.enabled is enabled)
    ]
    # The Katalogus fills duplicates only when asked for one organisation's config of one boefje.
    fill = with_duplicates and organisation_id is not None
    return [
        config.model_copy(update={"duplicates": _duplicates(config, configs) if fill else []})
        for config in matching
    ]


def _duplicates(config: BoefjeConfig, configs: Iterable[BoefjeConfig]) -> list[BoefjeConfig]:
    """Other organisations' enabled configs of the same boefje with the same settings: their tasks would
    produce the same results, so one scan can serve them all."""
    return [
        other.model_copy(update={"duplicates": []})
        for other in configs
        if other.boefje_id == config.boefje_id
        and other.organisation_id != config.organisation_id
        and other.enabled
        and other.settings == config.settings
    ]


class CatalogLookups(ABC):
    """The planners' lookups, answered from `plugins()`, shared by every catalogue."""

    @abstractmethod
    def plugins(
        self, organisation_id: str, plugin_type: PluginType | None = None, consumes: str | None = None
    ) -> list[Plugin]: ...

    def fresh_plugins(self, organisation_id: str) -> list[Plugin]:
        return self.plugins(organisation_id)

    def boefjes_consuming(self, organisation_id: str, ooi_type: str) -> list[Plugin]:
        return self.plugins(organisation_id, "boefje", ooi_type)

    def normalizers_for_mime(self, organisation_id: str, mime_type: str) -> list[Plugin]:
        return self.plugins(organisation_id, "normalizer", mime_type)

    def enabled_boefjes(self, organisation_id: str) -> list[Plugin]:
        return [plugin for plugin in self.plugins(organisation_id, "boefje") if plugin.enabled]


@dataclass(frozen=True)
class _CachedPlugins:
    fetched_at: datetime
    plugins: tuple[Plugin, ...]


class KatalogusClient(CatalogLookups):
    """The Katalogus over HTTP (SPEC §6).

    With `cache_ttl` > 0 an organisation's whole plugin list is fetched once per TTL and every plugin lookup
    is answered from it, so a burst of lookups costs one request. With `cache_ttl` <= 0 each lookup asks the
    Katalogus (`?plugin_type=&consumes=`, `/plugins/{id}`). Safe to share between threads.
    """

    def __init__(self, http: ServiceHttp, *, clock: Clock, cache_ttl: float = 30.0) -> None:
        self._http = http
        self._clock = clock
        self._ttl = timedelta(seconds=cache_ttl)
        self._guard = threading.Lock()  # guards the two dicts below, never held during a request
        self._cache: dict[str, _CachedPlugins] = {}
        # One lock per organisation: concurrent lookups for one organisation wait for a single fetch rather
        # than each fetching, while other organisations are not held up.
        self._fetching: dict[str, threading.Lock] = {}

    def close(self) -> None:
        self._http.close()

    def clear_cache(self) -> None:
        """Forget every cached plugin list, e.g. after a plugin was enabled through the API."""
        with self._guard:
            self._cache.clear()

    def healthy(self) -> bool:
        return self._http.healthy("/health")

    def organisations(self) -> list[Organisation]:
        by_id = self._http.get_as("/v1/organisations", _ORGANISATIONS)
        return list((by_id or {}).values())

    def plugins(
        self, organisation_id: str, plugin_type: PluginType | None = None, consumes: str | None = None
    ) -> list[Plugin]:
        if self._caching:
            return select_plugins(self._organisation_plugins(organisation_id), plugin_type, consumes)
        params = {"plugin_type": plugin_type, "consumes": consumes}
        found = self._http.get_as(_plugins_path(organisation_id), _PLUGINS, params)
        # The Katalogus filters already; filtering again keeps the answer identical to the cached one.
        return select_plugins(found or [], plugin_type, consumes)

    def plugin(self, organisation_id: str, plugin_id: str, *, wait: bool = True) -> Plugin | None:
        if self._caching:
            listed = self._organisation_plugins(organisation_id) if wait else self._cached(organisation_id)
            return next((plugin for plugin in listed if plugin.id == plugin_id), None)
        if not wait:
            raise WouldWait("katalogus: every plugin lookup is a request (no cache_ttl)")
        found = self._http.get_as(f"{_plugins_path(organisation_id)}/{quote(plugin_id, safe='')}", _PLUGIN)
        return found if found is not None and is_listed(found) else None

    def fresh_plugins(self, organisation_id: str) -> list[Plugin]:
        return select_plugins(self._organisation_plugins(organisation_id, fresh=True))

    def configs(
        self,
        boefje_id: str,
        organisation_id: str | None = None,
        enabled: bool | None = None,
        with_duplicates: bool = False,
    ) -> list[BoefjeConfig]:
        # No offset/limit: the Katalogus then returns every match (mula's limit=0 only worked by accident).
        params = {
            "organisation_id": organisation_id,
            "boefje_id": boefje_id,
            "enabled": enabled,
            "with_duplicates": with_duplicates,
        }
        return self._http.get_as("/v1/configs", _CONFIGS, params) or []

    @property
    def _caching(self) -> bool:
        return self._ttl > timedelta(0)

    def _cached(self, organisation_id: str) -> tuple[Plugin, ...]:
        """The organisation's plugins as cached, if the cache is fresh; WouldWait if a request is needed."""
        with self._guard:
            cached = self._cache.get(organisation_id)
        if cached is None or self._clock.now() - cached.fetched_at >= self._ttl:
            raise WouldWait(f"katalogus: the plugins of {organisation_id!r} are not cached")
        return cached.plugins

    def _organisation_plugins(self, organisation_id: str, *, fresh: bool = False) -> tuple[Plugin, ...]:
        with self._guard:
            fetching = self._fetching.setdefault(organisation_id, threading.Lock())
        with fetching:
            now = self._clock.now()
            with self._guard:
                cached = self._cache.get(organisation_id)
            if not fresh and cached is not None and now - cached.fetched_at < self._ttl:
                return cached.plugins
            # A failure raises before the cache is touched, so the next lookup asks again.
            fetched = self._http.get_as(_plugins_path(organisation_id), _PLUGINS)
            plugins = tuple(fetched or ())
            with self._guard:
                self._cache[organisation_id] = _CachedPlugins(now, plugins)
            return plugins


def _plugins_path(organisation_id: str) -> str:
    return f"/v1/organisations/{quote(organisation_id, safe='')}/plugins"


class StaticCatalogue(CatalogLookups):
    """A fixed catalogue, declared in the config file where no Katalogus is configured.

    As in the Katalogus, every organisation has every plugin; `plugin_organisations` maps a plugin id to the
    organisations it is enabled for (a plugin not in the mapping, or mapped to nothing, is enabled for all,
    as far as its own `enabled` allows) and it is listed as disabled elsewhere. Immutable, so thread-safe.
    """

    def __init__(
        self,
        organisations: Sequence[Organisation],
        plugins: Sequence[Plugin],
        plugin_organisations: Mapping[str, Collection[str]] | None = None,
        configs: Sequence[BoefjeConfig] = (),
    ) -> None:
        self._organisations = {org.id: org for org in organisations}
        self._plugins: dict[str, dict[str, Plugin]] = {org.id: {} for org in organisations}
        self._configs = list(configs)
        enabled_for = plugin_organisations or {}
        for plugin in plugins:
            for org_id, org_plugins in self._plugins.items():
                allowed = enabled_for.get(plugin.id)
                enabled = plugin.enabled and (not allowed or org_id in allowed)
                org_plugins[plugin.id] = plugin.model_copy(update={"enabled": enabled})

    def organisations(self) -> list[Organisation]:
        return list(self._organisations.values())

    def plugins(
        self, organisation_id: str, plugin_type: PluginType | None = None, consumes: str | None = None
    ) -> list[Plugin]:
        return select_plugins(self._plugins.get(organisation_id, {}).values(), plugin_type, consumes)

    def plugin(self, organisation_id: str, plugin_id: str, *, wait: bool = True) -> Plugin | None:
        # Nothing to ask: `wait` changes nothing.
        found = self._plugins.get(organisation_id, {}).get(plugin_id)
        return found if found is not None and is_listed(found) else None

    def configs(
        self,
        boefje_id: str,
        organisation_id: str | None = None,
        enabled: bool | None = None,
        with_duplicates: bool = False,
    ) -> list[BoefjeConfig]:
        return select_configs(self._configs, boefje_id, organisation_id, enabled, with_duplicates)


if TYPE_CHECKING:  # mypy proves that both catalogues implement the port

    def _are_catalogs(client: KatalogusClient, static: StaticCatalogue) -> list[PluginCatalog]:
        return [client, static]
