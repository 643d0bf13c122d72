"""`/tasks` (GET and POST with filters), `/tasks/stats` and `/tasks/{task_id}` (GET, PATCH)."""

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import TypeAdapter

from katsched.api.context import ApiContext, json_response, model_response
from katsched.api.errors import BadRequest
from katsched.api.filter_schema import OptionalFilterBody, parse_body
from katsched.api.pagination import page_links
from katsched.api.schemas import StatsParams, TaskPage, TaskPatch, TaskQueryParams, error_responses
from katsched.core.hashing import task_hash
from katsched.core.models import Task
from katsched.core.ports import TaskQuery
from katsched.core.push import align_ids, parse_payload, scheduler_kind
from katsched.errors import InvalidItem, NotFound

TaskId = Annotated[uuid.UUID, Path()]
STATS_WINDOW = timedelta(hours=24)
Stats = dict[str, dict[str, int]]
STATS = TypeAdapter(Stats)


def check_range(name: str, low: datetime | None, high: datetime | None) -> None:
    if low is not None and high is not None and low > high:
        raise BadRequest(f"min_{name} must be less than max_{name}")


class TaskRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def register(self, router: APIRouter) -> None:
        add = router.add_api_route
        for method in ("GET", "POST"):  # Rocky posts its filters; GET takes a body too, as in the original
            add(
                "/tasks",
                self.list_tasks,
                methods=[method],
                operation_id=f"list_tasks_{method.lower()}",
                response_model=TaskPage,
                responses=error_responses(400),
                summary="Tasks, newest first, filtered by the query and by an optional filter body",
            )
        add(
            "/tasks/stats",
            self.stats,
            methods=["GET"],
            response_model=Stats,
            # 400: a value PostgreSQL cannot hold in a text column (a NUL character).
            responses=error_responses(400),
            summary="Tasks per hour and status, over the last 24 hours",
        )
        add(
            "/tasks/{task_id}",
            self.get_task,
            methods=["GET"],
            response_model=Task,
            responses=error_responses(404),
        )
        add(
            "/tasks/{task_id}",
            self.patch_task,
            methods=["PATCH"],
            response_model=Task,
            responses=error_responses(400, 404, 409),
            summary="Change a task; a status change must be allowed by the transition table",
        )

    def list_tasks(
        self,
        request: Request,
        params: Annotated[TaskQueryParams, Query()],
        filters: OptionalFilterBody = None,
    ) -> Response:
        check_range("created_at", params.min_created_at, params.max_created_at)
        query = TaskQuery(
            scheduler_id=params.scheduler_id,
            organisation=params.organisation,
            type=params.task_type,
            status=params.status,
            input_ooi=params.input_ooi,
            min_created_at=params.min_created_at,
            max_created_at=params.max_created_at,
            filters=parse_body(filters, "task"),
            offset=params.offset,
            limit=params.limit,
        )
        page = self.ctx.queue.list_tasks(query)
        next_link, previous_link = page_links(request.url, params.offset, params.limit, page.count)
        return model_response(
            TaskPage(count=page.count, next=next_link, previous=previous_link, results=page.tasks)
        )

    def stats(self, params: Annotated[StatsParams, Query()]) -> Response:
        since = self.ctx.clock.now() - STATS_WINDOW
        hours = self.ctx.queue.hourly_stats(since, params.scheduler_id, params.organisation_id)
        return json_response(STATS, {hour.isoformat(): counts for hour, counts in hours.items()})

    def get_task(self, task_id: TaskId) -> Response:
        return model_response(self.ctx.queue.get(task_id))

    def patch_task(self, task_id: TaskId, patch: TaskPatch) -> Response:
        changes = self._changes(task_id, patch)
        if not changes:
            raise BadRequest("no data to patch")
        return model_response(self.ctx.queue.update(task_id, changes))

    def _changes(self, task_id: uuid.UUID, patch: TaskPatch) -> dict[str, Any]:
        """The writable fields the patch sets; `null` leaves a field unchanged (but unlinks a schedule)."""
        changes: dict[str, Any] = {
            name: getattr(patch, name)
            for name in ("status", "priority", "organisation", "data")
            if getattr(patch, name) is not None
        }
        if changes.get("priority") == 0:
            raise InvalidItem("a task must have a non-zero priority")
        if "schedule_id" in patch.model_fields_set:
            changes["schedule_id"] = self._existing_schedule(patch.schedule_id)
        if "data" in changes:
            changes["data"] = self._same_identity(task_id, changes["data"])
        return changes

    def _existing_schedule(self, schedule_id: uuid.UUID | None) -> uuid.UUID | None:
        if schedule_id is not None:
            try:
                self.ctx.schedules.get(schedule_id)
            except NotFound as exc:
                raise BadRequest(f"schedule_id: {exc}") from exc
        return schedule_id

    def _same_identity(self, task_id: uuid.UUID, data: dict[str, Any]) -> dict[str, Any]:
        """New data must be valid for the task's scheduler and keep its identity: a different hash is another
        piece of work, which is pushed as a new task rather than patched into this one."""
        task = self.ctx.queue.get(task_id)
        kind = scheduler_kind(task.scheduler_id)
        _, data = align_ids(kind, task_id, data)
        new_hash = task_hash(parse_payload(kind, data))
        if new_hash != task.hash:
            raise BadRequest(
                f"data changes the task's identity (hash {task.hash} → {new_hash}); push a new task"
            )
        return data
