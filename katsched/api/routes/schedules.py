"""`/schedules` (GET, POST), `/schedules/search` and `/schedules/{schedule_id}` (GET, PATCH, DELETE)."""

import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel

from katsched.api.context import ApiContext, model_response
from katsched.api.errors import BadRequest, ValidationFailed
from katsched.api.filter_schema import FilterBody, parse_body
from katsched.api.pagination import page_links
from katsched.api.routes.tasks import check_range
from katsched.api.schemas import (
    PageParams,
    ScheduleCreate,
    SchedulePage,
    SchedulePatch,
    ScheduleQueryParams,
    error_responses,
)
from katsched.core.deadlines import next_cron_fire, validate_cron
from katsched.core.hashing import task_hash
from katsched.core.models import Schedule, SchedulerKind
from katsched.core.ports import ScheduleQuery
from katsched.core.push import parse_payload, scheduler_kind
from katsched.errors import NotFound

ScheduleId = Annotated[uuid.UUID, Path()]


def checked_cron(expression: str) -> str:
    try:
        return validate_cron(expression)
    except ValueError as exc:
        raise ValidationFailed(f"validation error for schedule: {exc}") from exc


def payload_hash(kind: SchedulerKind, data: dict[str, Any]) -> str:
    """The identity hash of schedule data, which must be a valid payload of the scheduler (InvalidItem)."""
    return task_hash(parse_payload(kind, data))


class ScheduleRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def register(self, router: APIRouter) -> None:
        one = "/schedules/{schedule_id}"
        routes: list[tuple[str, str, Callable[..., Response], int, type[BaseModel], tuple[int, ...]]] = [
            ("GET", "/schedules", self.list_schedules, 200, SchedulePage, (400,)),
            ("POST", "/schedules", self.create_schedule, 201, Schedule, (400, 409)),
            ("POST", "/schedules/search", self.search, 200, SchedulePage, (400,)),
            ("GET", one, self.get_schedule, 200, Schedule, (404,)),
            ("PATCH", one, self.patch_schedule, 200, Schedule, (400, 404, 409)),
        ]
        for method, path, endpoint, status, model, errors in routes:
            router.add_api_route(
                path,
                endpoint,
                methods=[method],
                status_code=status,
                response_model=model,
                responses=error_responses(*errors),
            )
        router.add_api_route(
            one,
            self.delete_schedule,
            methods=["DELETE"],
            status_code=204,
            response_class=Response,
            responses=error_responses(),
        )

    def list_schedules(self, request: Request, params: Annotated[ScheduleQueryParams, Query()]) -> Response:
        check_range("deadline_at", params.min_deadline_at, params.max_deadline_at)
        check_range("created_at", params.min_created_at, params.max_created_at)
        query = ScheduleQuery(
            scheduler_id=params.scheduler_id,
            organisation=params.organisation,
            hash=params.schedule_hash,
            enabled=params.enabled,
            min_deadline_at=params.min_deadline_at,
            max_deadline_at=params.max_deadline_at,
            min_created_at=params.min_created_at,
            max_created_at=params.max_created_at,
            offset=params.offset,
            limit=params.limit,
        )
        return self._page(request, query)

    def search(
        self, request: Request, params: Annotated[PageParams, Query()], filters: FilterBody
    ) -> Response:
        expression = parse_body(filters, "schedule")
        return self._page(
            request, ScheduleQuery(filters=expression, offset=params.offset, limit=params.limit)
        )

    def _page(self, request: Request, query: ScheduleQuery) -> Response:
        page = self.ctx.schedules.list_schedules(query)
        limit = query.limit or 0
        next_link, previous_link = page_links(request.url, query.offset, limit, page.count)
        return model_response(
            SchedulePage(count=page.count, next=next_link, previous=previous_link, results=page.schedules)
        )

    def create_schedule(self, body: ScheduleCreate) -> Response:
        if body.deadline_at is None and body.schedule is None:
            raise BadRequest("Either deadline_at or schedule must be provided")
        if body.schedule is not None:
            checked_cron(body.schedule)
        try:
            kind = scheduler_kind(body.scheduler_id)
        except NotFound as exc:
            raise BadRequest(str(exc)) from exc
        schedule_hash = payload_hash(kind, body.data)
        deadline_at = body.deadline_at
        if deadline_at is None and body.schedule is not None:
            deadline_at = next_cron_fire(body.schedule, self.ctx.clock.now())
        created = self.ctx.schedules.create(
            body.scheduler_id,
            body.organisation,
            body.data,
            schedule_hash,
            schedule=body.schedule,
            deadline_at=deadline_at,
        )
        return model_response(created, 201)

    def get_schedule(self, schedule_id: ScheduleId) -> Response:
        return model_response(self.ctx.schedules.get(schedule_id))

    def patch_schedule(self, schedule_id: ScheduleId, patch: SchedulePatch) -> Response:
        given = {name for name in patch.model_fields_set if getattr(patch, name) is not None}
        given |= patch.model_fields_set & {"schedule", "deadline_at"}  # null clears these two
        if not given:
            raise BadRequest("no data to patch")
        current = self.ctx.schedules.get(schedule_id)
        changes = self._changes(current, patch, given)
        return model_response(self.ctx.schedules.update(schedule_id, changes))

    def _changes(self, current: Schedule, patch: SchedulePatch, given: set[str]) -> dict[str, Any]:
        changes: dict[str, Any] = {name: getattr(patch, name) for name in given & {"enabled", "deadline_at"}}
        if "schedule" in given:
            changes["schedule"] = checked_cron(patch.schedule) if patch.schedule is not None else None
            if patch.schedule is not None and "deadline_at" not in given:
                changes["deadline_at"] = next_cron_fire(patch.schedule, self.ctx.clock.now())
        if "data" in given:
            assert patch.data is not None
            changes["data"] = patch.data
            changes["hash"] = payload_hash(scheduler_kind(current.scheduler_id), patch.data)
        expected = changes.get("hash", current.hash)
        if "hash" in given and patch.hash != expected:
            raise BadRequest(f"hash {patch.hash} does not match the hash of the data, {expected}")
        return changes

    def delete_schedule(self, schedule_id: ScheduleId) -> Response:
        """204 whether or not the schedule existed, as in the original; its tasks are kept without one."""
        self.ctx.schedules.delete(schedule_id)
        return Response(status_code=204)
