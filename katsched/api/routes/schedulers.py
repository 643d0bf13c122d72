"""`/schedulers…` (list, get, push, pop) and `/queues`, the original's removed list the web UI still calls."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import TypeAdapter
from starlette.types import Scope

from katsched.api.context import ApiContext, json_response, model_response
from katsched.api.errors import BadRequest
from katsched.api.filter_schema import OptionalFilterBody, parse_body
from katsched.api.schemas import (
    DEFAULT_POP_LIMIT,
    MAX_POP,
    PopResult,
    QueueOut,
    SchedulerOut,
    TaskPush,
    error_responses,
)
from katsched.core.models import PAYLOAD_TYPES, SchedulerKind, Task, TaskStatus
from katsched.core.ports import PoppedBy, TaskDraft
from katsched.core.push import scheduler_kind
from katsched.errors import InvalidItem, NotAllowed, NotFound, QueueError, QueueFull, WouldWait

SchedulerId = Annotated[str, Path(description="boefje, normalizer or report")]
PopLimit = Annotated[
    int | None,
    Query(ge=0, le=MAX_POP, description=f"How many tasks to claim at most (default {DEFAULT_POP_LIMIT})."),
]
SCHEDULERS = TypeAdapter(list[SchedulerOut])
QUEUES = TypeAdapter(list[QueueOut])
REFUSALS: dict[type[QueueError], str] = {NotAllowed: "conflict", QueueFull: "full", InvalidItem: "invalid"}


def popped_by(scope: Scope) -> PoppedBy:
    """Who pops: the client's address and its User-Agent, as Starlette's `Request` reads them."""
    client = scope.get("client")
    agent = next((value for name, value in scope["headers"] if name == b"user-agent"), None)
    return PoppedBy(client[0] if client else None, agent.decode("latin-1") if agent is not None else None)


class SchedulerRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def register(self, router: APIRouter) -> None:
        add = router.add_api_route
        add(
            "/schedulers",
            self.list_schedulers,
            methods=["GET"],
            response_model=list[SchedulerOut],
            responses=error_responses(),
        )
        add(
            "/schedulers/{scheduler_id}",
            self.get_scheduler,
            methods=["GET"],
            response_model=SchedulerOut,
            responses=error_responses(404),
        )
        add(
            "/schedulers/{scheduler_id}/push",
            self.push,
            methods=["POST"],
            status_code=201,
            response_model=Task,
            responses=error_responses(400, 404, 409, 429),
        )
        add(
            "/schedulers/{scheduler_id}/pop",
            self.pop,
            methods=["POST"],
            response_model=PopResult,
            responses=error_responses(400, 404),
            summary="Claim the best queued tasks; they are returned as dispatched",
        )
        add(
            "/queues",
            self.list_queues,
            methods=["GET"],
            response_model=list[QueueOut],
            responses=error_responses(),
        )

    def list_schedulers(self) -> Response:
        return json_response(SCHEDULERS, [self._describe(kind) for kind in SchedulerKind])

    def get_scheduler(self, scheduler_id: SchedulerId) -> Response:
        return model_response(self._describe(scheduler_kind(scheduler_id)))

    def _describe(self, kind: SchedulerKind) -> SchedulerOut:
        return SchedulerOut(
            id=kind.value,
            type=kind.value,
            item_type=PAYLOAD_TYPES[kind].__name__,
            qsize=self.ctx.queue.qsize(kind.value),
            last_activity=self.ctx.last_activity(kind.value),
        )

    def push(self, scheduler_id: SchedulerId, item: TaskPush) -> Response:
        return self.push_for(scheduler_id, item)

    def push_for(self, scheduler_id: str, item: TaskPush, *, wait: bool = True) -> Response:
        """The push route once its body is read (the fast path of `katsched.api.hot` calls it too).
        `wait=False`: WouldWait at once when another writer has the store or the Katalogus must be asked;
        an item with an id (a runner's push-back) may have to wait for a read, and is not pushed then."""
        kind = scheduler_kind(scheduler_id)
        if item.scheduler_id is not None and item.scheduler_id != scheduler_id:
            raise BadRequest("scheduler_id in item does not match the scheduler_id in the path")
        if item.id is not None and not wait:
            raise WouldWait("a push with an id reads the task of that id first")
        manual = self.ctx.manual_pushes
        rule = None
        if manual is not None:
            rule = manual.schedule_rule(kind, item.organisation, item.data, wait=wait)
        new = TaskDraft(
            scheduler_id, item.organisation, item.priority, item.data, id=item.id, schedule_rule=rule
        )
        try:
            task = self._requeue_dispatched(scheduler_id, item.id) or self.ctx.queue.push(new, wait=wait)
        except QueueError as exc:
            reason = REFUSALS.get(type(exc))
            if reason:
                self.ctx.metrics.push_refused.labels(scheduler_id, reason).inc()
            if isinstance(exc, InvalidItem):
                raise InvalidItem(f"malformed item: {exc}") from exc
            raise
        self.ctx.metrics.pushed.labels(scheduler_id).inc()
        self.ctx.touch(scheduler_id)
        return model_response(task, 201)

    def _requeue_dispatched(self, scheduler_id: str, task_id: uuid.UUID | None) -> Task | None:
        """A runner pushing back a task it popped but never started (its shutdown re-push) puts that very task
        back on the queue; any other existing id is left to the push rules (a conflict)."""
        if task_id is None:
            return None
        try:
            existing = self.ctx.queue.get(task_id)
        except NotFound:
            return None
        if existing.scheduler_id != scheduler_id or existing.status is not TaskStatus.DISPATCHED:
            return None
        return self.ctx.queue.set_status(task_id, TaskStatus.QUEUED, reason="pushed back by its runner")

    def pop(
        self,
        request: Request,
        scheduler_id: SchedulerId,
        limit: PopLimit = None,
        filters: OptionalFilterBody = None,
    ) -> Response:
        return self.pop_for(scheduler_id, limit, filters, popped_by(request.scope))

    def pop_for(
        self,
        scheduler_id: str,
        limit: int | None,
        filters: dict[str, Any] | None,
        runner: PoppedBy,
        *,
        wait: bool = True,
    ) -> Response:
        """The pop route once its parameters are read (the fast path of `katsched.api.hot` calls it too).
        `wait=False`: WouldWait at once when another writer has the store (see `katsched.store.engine`)."""
        scheduler_kind(scheduler_id)
        expression = parse_body(filters, "task")
        size = DEFAULT_POP_LIMIT if limit is None else limit
        popped = self.ctx.queue.pop_rendered(scheduler_id, size, expression, popped_by=runner, wait=wait)
        self.ctx.metrics.pops.labels(scheduler_id).inc()
        if popped:
            self.ctx.metrics.popped.labels(scheduler_id).inc(len(popped))
        self.ctx.touch(scheduler_id)
        # Rendered by the queue before its claim committed: this join cannot fail.
        body = b'{"results":[' + b",".join(rendered for _, rendered in popped) + b"]}"
        return Response(body, media_type="application/json")

    def list_queues(self) -> Response:
        queues = []
        for kind in SchedulerKind:
            policy = self.ctx.queue.policy(kind.value)
            queues.append(
                QueueOut(
                    id=kind.value,
                    size=self.ctx.queue.qsize(kind.value),
                    maxsize=policy.maxsize,
                    item_type=PAYLOAD_TYPES[kind].__name__,
                    allow_replace=policy.allow_replace,
                    allow_updates=policy.allow_updates,
                    allow_priority_updates=policy.allow_priority_updates,
                )
            )
        return json_response(QUEUES, queues)
