"""`/`, `/health` and `/metrics`."""

import logging
from typing import Annotated

from fastapi import APIRouter, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST

from katsched.api.context import ApiContext, HealthCheck, model_response
from katsched.api.schemas import ServiceHealth, error_responses
from katsched.errors import StorageError

logger = logging.getLogger("katsched.api")

SERVICE_STATES = {True: "ok", False: "down", None: "unknown"}
BROKEN_INTAKE = frozenset({"misconfigured", "disconnected"})  # a consumer that cannot take messages


class ServiceRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def register(self, router: APIRouter) -> None:
        router.add_api_route(
            "/", self.root, methods=["GET"], response_model=None, responses=error_responses(), summary="null"
        )
        router.add_api_route(
            "/health",
            self.health,
            methods=["GET"],
            response_model=ServiceHealth,
            summary="The database, each service and each consumer; healthy: database up, no broken consumer",
        )
        router.add_api_route(
            "/metrics",
            self.metrics,
            methods=["GET"],
            response_class=Response,
            summary="Prometheus metrics",
            responses={
                200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}},
                **error_responses(),
            },
        )

    async def root(self) -> None:
        return None

    def health(
        self,
        externals: Annotated[bool, Query(description="Also list each service in `externals`.")] = False,
    ) -> Response:
        database = self._database_up()
        services = {name: _probe(name, check) for name, check in self.ctx.health_checks.items()}
        intake = dict(self.ctx.intake_states()) if self.ctx.intake_states is not None else {}
        results = [ServiceHealth(service="database", healthy=database)]
        # Not known to be down is not "down": a service not probed yet says so in its state.
        results += [
            ServiceHealth(service=name, healthy=up is not False, additional={"state": SERVICE_STATES[up]})
            for name, up in services.items()
        ]
        results += [
            ServiceHealth(
                service=f"intake:{queue}", healthy=state not in BROKEN_INTAKE, additional={"state": state}
            )
            for queue, state in intake.items()
        ]
        health = ServiceHealth(
            service="scheduler",
            healthy=database and not BROKEN_INTAKE & set(intake.values()),
            version=self.ctx.version,
            results=results,
            externals={name: up is not False for name, up in services.items()} if externals else {},
        )
        return model_response(health)

    def _database_up(self) -> bool:
        try:
            self.ctx.queue.ping()
        except StorageError as exc:
            logger.warning("health_database_down error=%r", str(exc))
            return False
        return True

    def metrics(self) -> Response:
        return Response(self.ctx.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _probe(name: str, check: HealthCheck) -> bool | None:
    """A check that raises counts as down: /health itself must always answer."""
    try:
        answer = check()
        return None if answer is None else bool(answer)
    except Exception as exc:
        logger.warning("health_check_failed service=%s error=%r", name, str(exc))
        return False
