"""Stand-ins for the KAT services a deployment does not configure (an empty URL): no Octopoes, no Bytes."""

from collections.abc import Collection, Iterator
from datetime import datetime

from katsched.core.models import OOI, BoefjeMeta
from katsched.errors import ServiceUnavailable


class NoObjectGraph:
    """Where no Octopoes is configured: every question is deferred, never answered with "absent" (which
    would disable the schedules of objects that may well exist)."""

    def _unavailable(self) -> ServiceUnavailable:
        return ServiceUnavailable("octopoes is not configured ([octopoes] url is empty)")

    def objects(
        self,
        organisation_id: str,
        object_types: Collection[str],
        scan_levels: Collection[int] | None = None,
        *,
        valid_time: datetime,
    ) -> Iterator[OOI]:
        raise self._unavailable()

    def get_object(self, organisation_id: str, reference: str, *, valid_time: datetime) -> OOI | None:
        raise self._unavailable()

    def object_clients(
        self, reference: str, organisation_ids: Collection[str], *, valid_time: datetime
    ) -> dict[str, OOI]:
        raise self._unavailable()


class NoRawData:
    """Where no Bytes is configured: last runs are known from our own history only."""

    def last_run(self, boefje_id: str, input_ooi: str | None, organization: str) -> BoefjeMeta | None:
        return None

    def last_runs(
        self, input_ooi: str | None, organization: str, boefje_ids: Collection[str]
    ) -> dict[str, BoefjeMeta]:
        return {}
