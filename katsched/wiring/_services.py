"""The KAT clients of `katsched.wiring`, built from Settings: the configured services, or stand-ins."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from katsched.clock import Clock
    from katsched.config import CatalogueSettings, Settings
    from katsched.core.ports import ObjectGraph, PluginCatalog, RawDataIndex
    from katsched.kat.katalogus import StaticCatalogue
    from katsched.kat.octopoes import OctopoesClient

HealthCheck = Callable[[], bool | None]
KAT_SERVICES = ("katalogus", "octopoes", "bytes")


@dataclass
class Services:
    catalog: PluginCatalog
    objects: ObjectGraph
    raw_data: RawDataIndex
    checks: dict[str, HealthCheck] = field(default_factory=dict)  # configured services only
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()


def static_catalogue(catalogue: CatalogueSettings) -> StaticCatalogue:
    from katsched.core.models import Organisation, Plugin
    from katsched.kat.katalogus import StaticCatalogue

    organisations = [Organisation(id=org.id, name=org.name) for org in catalogue.organisations]
    plugins = [Plugin(**plugin.model_dump(exclude={"organisations"})) for plugin in catalogue.plugins]
    enabled_for = {plugin.id: plugin.organisations for plugin in catalogue.plugins if plugin.organisations}
    return StaticCatalogue(organisations, plugins, enabled_for)


def build_services(settings: Settings, clock: Clock) -> Services:
    """The KAT clients; an empty URL means a static catalogue, no object graph, no Bytes. No I/O here."""
    from katsched.kat.absent import NoObjectGraph, NoRawData
    from katsched.kat.bytes import BytesClient
    from katsched.kat.http import ServiceHttp, build_client
    from katsched.kat.katalogus import KatalogusClient
    from katsched.kat.octopoes import OctopoesClient

    services = Services(
        catalog=static_catalogue(settings.catalogue), objects=NoObjectGraph(), raw_data=NoRawData()
    )

    def http(name: str) -> ServiceHttp:
        service = getattr(settings, name)
        return ServiceHttp(name, build_client(service.url, timeout=service.timeout))

    if settings.katalogus.url:
        katalogus = KatalogusClient(http("katalogus"), clock=clock, cache_ttl=settings.katalogus.cache_ttl)
        services.catalog = katalogus
        services.checks["katalogus"] = katalogus.healthy
        services.closers.append(katalogus.close)
    if settings.octopoes.url:
        octopoes = OctopoesClient(http("octopoes"))
        services.objects = octopoes
        services.checks["octopoes"] = _octopoes_check(octopoes, services.catalog)
        services.closers.append(octopoes.close)
    if settings.bytes.url:
        raw = BytesClient(http("bytes"), username=settings.bytes.username, password=settings.bytes.password)
        services.raw_data = raw
        services.checks["bytes"] = raw.healthy
        services.closers.append(raw.close)
    return services


def _octopoes_check(octopoes: OctopoesClient, catalog: PluginCatalog) -> HealthCheck:
    """Octopoes answers health per organisation; ask for the first one (None: no organisation to ask)."""

    def check() -> bool | None:
        organisations = catalog.organisations()
        return octopoes.healthy(organisations[0].id) if organisations else None

    return check
