"""What every route needs, built once by `create_app` from its arguments: no globals, no settings."""

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from fastapi import Response
from pydantic import BaseModel, TypeAdapter

from katsched.api.metrics import ApiMetrics
from katsched.clock import Clock
from katsched.core.ports import ScheduleRegistry, TaskQueue
from katsched.schedulers.explain import Explainer
from katsched.schedulers.manual import ManualPushes

T = TypeVar("T")

HealthCheck = Callable[
    [], bool | None
]  # a service: up, down, or None while not known (before its first probe)
IntakeStates = Callable[[], Mapping[str, str]]  # each RabbitMQ consumer's queue → its state


class Peer(Protocol):
    """A daemon registered in the database, as /health lists it."""

    @property
    def id(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def pid(self) -> int: ...
    @property
    def version(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def heartbeat_at(self) -> datetime: ...
    @property
    def leases(self) -> list[str]: ...


@dataclass(frozen=True)
class Peers:
    """The daemons sharing this database: `read()` the ones not stopped (one small query per /health);
    silent for `stale_after` seconds: flagged stale. `instance`: the daemon this API runs in (None for
    `katsched api` on its own)."""

    read: Callable[[], Sequence[Peer]]
    stale_after: float
    instance: str | None = None


@dataclass
class ApiContext:
    queue: TaskQueue
    schedules: ScheduleRegistry
    clock: Clock
    metrics: ApiMetrics
    health_checks: Mapping[str, HealthCheck]
    version: str
    explainer: Explainer | None = None  # None: this API was built without the planners (`/explain` is 503)
    manual_pushes: ManualPushes | None = None  # the schedules manual pushes create (None: no schedules)
    intake_states: IntakeStates | None = None
    peers: Peers | None = None  # None: /health lists no daemons
    _activity: dict[str, datetime] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def touch(self, scheduler_id: str) -> None:
        """Record a push or pop: the scheduler's `last_activity` (kept in memory, as the original did)."""
        now = self.clock.now()
        with self._lock:
            self._activity[scheduler_id] = now

    def last_activity(self, scheduler_id: str) -> datetime | None:
        with self._lock:
            return self._activity.get(scheduler_id)


# Routes answer with ready-made JSON responses: FastAPI would otherwise validate each result again against
# the response model, in a second trip through the thread pool. The response models still document them.


def model_response(model: BaseModel, status_code: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code, media_type="application/json")


def json_response(adapter: TypeAdapter[T], value: T, status_code: int = 200) -> Response:
    return Response(adapter.dump_json(value), status_code, media_type="application/json")
