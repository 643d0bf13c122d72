"""The runner/UI HTTP API, wire-compatible with OpenKAT's scheduler (SPEC §4), built from its arguments."""

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from katsched import __version__
from katsched.api.body import JsonBodyRoute
from katsched.api.context import ApiContext, HealthCheck, IntakeStates, Peers
from katsched.api.errors import install_error_handlers
from katsched.api.filter_schema import filter_components
from katsched.api.hot import HotRoutes
from katsched.api.metrics import ApiMetrics
from katsched.api.middleware import ApiMiddleware
from katsched.api.routes.explain import ExplainRoutes
from katsched.api.routes.schedulers import SchedulerRoutes
from katsched.api.routes.schedules import ScheduleRoutes
from katsched.api.routes.service import ServiceRoutes
from katsched.api.routes.tasks import TaskRoutes
from katsched.clock import Clock
from katsched.core.ports import ScheduleRegistry, TaskQueue
from katsched.schedulers.explain import Explainer
from katsched.schedulers.manual import ManualPushes

DEFAULT_MAX_BODY_BYTES = 1_048_576
DESCRIPTION = (
    "Queues, tasks and schedules of katsched, wire-compatible with OpenKAT's scheduler (mula): the boefje "
    "and normalizer workers, the report runner and Rocky use it unchanged."
)


class KatschedApi(FastAPI):
    """FastAPI with a document that also holds the filter schemas and, when a token is set, bearer auth.

    Every request goes through `front` first: katsched's middleware and the hot path for push and pop, in
    front of FastAPI's own middleware stack, which only the requests the hot path leaves reach."""

    requires_token: bool = False
    front: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await (self.front or self.framework)(scope, receive, send)

    async def framework(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI itself: its middleware stack, routing and request handling."""
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            document = get_openapi(
                title=self.title, version=self.version, description=self.description, routes=self.routes
            )
            components = document.setdefault("components", {})
            components.setdefault("schemas", {}).update(filter_components())
            if self.requires_token:
                components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
                document["security"] = [{"bearer": []}]
                document["paths"]["/health"]["get"]["security"] = []
            self.openapi_schema = document
        return self.openapi_schema


def create_app(
    queue: TaskQueue,
    schedules: ScheduleRegistry,
    clock: Clock,
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    health_checks: Mapping[str, HealthCheck] | None = None,
    version: str = __version__,
    explainer: Explainer | None = None,
    manual_pushes: ManualPushes | None = None,
    intake_states: IntakeStates | None = None,
    peers: Peers | None = None,
) -> FastAPI:
    """The API over `queue` and `schedules`. `token`: every route but /health needs `Authorization: Bearer
    <token>`. `health_checks`: one fast, non-raising probe per configured service, reported by /health.
    `explainer`: answers `/explain` (the daemon passes its planners'); without one, `/explain` is 503.
    `manual_pushes`: the schedule each pushed boefje or report task joins (reference §4.4).
    `intake_states`: the RabbitMQ consumers' states, part of /health. `peers`: the daemons on the database,
    listed by /health."""
    metrics = ApiMetrics(queue, version)
    checks = dict(health_checks or {})
    ctx = ApiContext(
        queue, schedules, clock, metrics, checks, version, explainer, manual_pushes, intake_states, peers
    )
    app = KatschedApi(title="katsched", version=version, description=DESCRIPTION)
    app.requires_token = bool(token)
    install_error_handlers(app)
    app.router.route_class = JsonBodyRoute  # every body is JSON, whatever its Content-Type
    schedulers = SchedulerRoutes(ctx)
    every = (
        ServiceRoutes(ctx),
        schedulers,
        TaskRoutes(ctx),
        ScheduleRoutes(ctx),
        ExplainRoutes(ctx),
    )
    for routes in every:
        routes.register(app.router)
    hot = {
        action: route
        for route in app.router.routes
        if isinstance(route, APIRoute)
        for action in ("push", "pop")
        if route.path == f"/schedulers/{{scheduler_id}}/{action}"
    }
    app.front = ApiMiddleware(
        HotRoutes(app.framework, schedulers=schedulers, routes=hot),
        token=token or None,
        max_body_bytes=max_body_bytes,
        latency=metrics.latency,
        monotonic=clock.monotonic,
    )
    return app
