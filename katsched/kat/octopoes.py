"""Octopoes over HTTP: the objects of each organisation (implements `katsched.core.ports.ObjectGraph`)."""

from collections.abc import Collection, Iterator
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from pydantic import BaseModel, TypeAdapter

from katsched.core.models import OOI
from katsched.core.ports import ObjectGraph
from katsched.kat.http import ServiceHttp


class _ObjectPage(BaseModel):
    count: int
    items: list[OOI]


_PAGE = TypeAdapter(_ObjectPage)
_OBJECT = TypeAdapter(OOI)
_OBJECTS_BY_CLIENT = TypeAdapter(dict[str, OOI])


class OctopoesClient:
    """Octopoes (SPEC §6): `/{org}/objects` (paged), `/{org}/object`, `/object-clients`, `/{org}/health`."""

    def __init__(self, http: ServiceHttp, *, page_size: int = 1000) -> None:
        self._http = http
        self._page_size = page_size

    def close(self) -> None:
        self._http.close()

    def healthy(self, organisation_id: str) -> bool:
        """Health as mula asks it: per organisation (`/{org}/health`), as each has its own graph."""
        return self._http.healthy(f"/{_segment(organisation_id)}/health")

    def objects(
        self,
        organisation_id: str,
        object_types: Collection[str],
        scan_levels: Collection[int] | None = None,
        *,
        valid_time: datetime,
    ) -> Iterator[OOI]:
        # Octopoes reads "no types" as "every type": never let an empty consumes list enumerate the graph.
        if not object_types:
            return
        offset = 0
        while True:
            page = self._http.get_as(
                f"/{_segment(organisation_id)}/objects",
                _PAGE,
                {
                    "types": sorted(object_types),
                    "scan_level": sorted(scan_levels) if scan_levels is not None else None,
                    "offset": offset,
                    "limit": self._page_size,
                    "valid_time": valid_time.isoformat(),
                },
            )
            if page is None:  # an unknown organisation
                return
            yield from page.items
            offset += len(page.items)
            # An empty page ends the walk even if `count` promised more, so a shrinking graph cannot loop.
            if not page.items or offset >= page.count:
                return

    def get_object(self, organisation_id: str, reference: str, *, valid_time: datetime) -> OOI | None:
        return self._http.get_as(
            f"/{_segment(organisation_id)}/object",
            _OBJECT,
            {"reference": reference, "valid_time": valid_time.isoformat()},
        )

    def object_clients(
        self, reference: str, organisation_ids: Collection[str], *, valid_time: datetime
    ) -> dict[str, OOI]:
        if not organisation_ids:
            return {}
        params = {
            "reference": reference,
            "clients": sorted(organisation_ids),
            "valid_time": valid_time.isoformat(),
        }
        return self._http.get_as("/object-clients", _OBJECTS_BY_CLIENT, params) or {}


def _segment(value: str) -> str:
    return quote(value, safe="")


if TYPE_CHECKING:  # mypy proves that the client implements the port

    def _is_a_graph(client: OctopoesClient) -> ObjectGraph:
        return client
