"""Why an event planned nothing: one INFO line per organisation and reason per interval; counts by reason.

An event from RabbitMQ that produces no task is not an error (the object's type has no boefje, its last scan
is recent), but an operator whose scans never start needs to see why. A busy organisation sends thousands of
such events, so each (organisation, reason) logs at most once per `interval` (time from the injected clock),
saying how many it left out meanwhile. The counts by reason reach `katsched status` through the heartbeat.
"""

import logging
import threading
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from katsched.clock import Clock

logger = logging.getLogger("katsched.intake")

NO_BOEFJE = "no_boefje_for_type"  # no enabled boefje of the organisation consumes the object's type
NO_NORMALIZER = "no_normalizer_for_mime"  # no enabled normalizer of the organisation takes the file
UNKNOWN_ORGANISATION = "organisation_unknown"  # the catalogue does not know the organisation at all
MAX_TRACKED = 1000  # (organisation, reason) pairs remembered for the rate limit; older ones are forgotten


@dataclass
class _Seen:
    logged_at: datetime
    left_out: int = 0


class UnplannedEvents:
    def __init__(
        self,
        clock: Clock,
        *,
        interval: timedelta = timedelta(minutes=1),
        known_organisations: Callable[[], Collection[str]] = frozenset,
    ) -> None:
        self._clock = clock
        self._interval = interval
        self._known = known_organisations
        self._lock = threading.Lock()  # consumers report from several threads
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._counts: Counter[str] = Counter()

    def report(self, organisation: str, reason: str, event: str) -> None:
        """`event` (e.g. `mutation`, `raw_file`) of `organisation` planned nothing, because of `reason`."""
        if reason in (NO_BOEFJE, NO_NORMALIZER) and self._unknown(organisation):
            reason = UNKNOWN_ORGANISATION
        now = self._clock.now()
        with self._lock:
            self._counts[reason] += 1
            seen = self._seen.get((organisation, reason))
            if seen is not None and now - seen.logged_at < self._interval:
                seen.left_out += 1
                return
            left_out = seen.left_out if seen is not None else 0
            self._seen[(organisation, reason)] = _Seen(now)
            self._forget_old(now)
        logger.info(
            "event_planned_nothing event=%s org=%s reason=%s not_logged_since=%d",
            event, organisation, reason, left_out,
        )  # fmt: skip

    def _unknown(self, organisation: str) -> bool:
        known = self._known()
        return bool(known) and organisation not in known  # an empty list means "not asked yet"

    def _forget_old(self, now: datetime) -> None:
        if len(self._seen) <= MAX_TRACKED:
            return
        recent = {key: seen for key, seen in self._seen.items() if now - seen.logged_at < self._interval}
        self._seen = (
            recent if len(recent) <= MAX_TRACKED else {}
        )  # bounded, at the price of a few extra lines

    def counts(self) -> dict[str, int]:
        """Events that planned nothing since the start, by reason."""
        with self._lock:
            return dict(self._counts)
