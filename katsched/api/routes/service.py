"""`/`, `/health` and `/metrics`."""

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST

from katsched.api.context import ApiContext, HealthCheck, Peers, model_response
from katsched.api.schemas import PeerHealth, ServiceHealth, error_responses
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
            summary="The database, each service and each consumer; healthy: database up, no broken consumer. "
            "`additional`: the daemon answering (`instance`, null for `katsched api` alone) and every daemon "
            "on the database (`peers`), a silent one flagged `stale`",
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
        database, peers = self._database()
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
            additional=peers,
        )
        return model_response(health)

    def _database(self) -> tuple[bool, dict[str, Any] | None]:
        """Whether the database answers, and the daemons on it (reading them is the database's probe, so
        /health costs one small query either way)."""
        try:
            if self.ctx.peers is None:
                self.ctx.queue.ping()
                return True, None
            return True, _peers(self.ctx.peers, self.ctx.clock.now())
        except StorageError as exc:
            logger.warning("health_database_down error=%r", str(exc))
            return False, None

    def metrics(self) -> Response:
        return Response(self.ctx.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _peers(peers: Peers, now: datetime) -> dict[str, Any]:
    """`instance`: the daemon answering (null: `katsched api` alone); `peers`: every daemon not stopped."""
    listed = [
        PeerHealth(
            id=peer.id,
            hostname=peer.hostname,
            pid=peer.pid,
            version=peer.version,
            started_at=peer.started_at,
            heartbeat_at=peer.heartbeat_at,
            stale=(now - peer.heartbeat_at).total_seconds() > peers.stale_after,
            leases=peer.leases,
        ).model_dump(mode="json")
        for peer in peers.read()
    ]
    return {"instance": peers.instance, "peers": listed}


def _probe(name: str, check: HealthCheck) -> bool | None:
    """A check that raises counts as down: /health itself must always answer."""
    try:
        answer = check()
        return None if answer is None else bool(answer)
    except Exception as exc:
        logger.warning("health_check_failed service=%s error=%r", name, str(exc))
        return False
