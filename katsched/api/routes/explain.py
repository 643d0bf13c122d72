"""`/explain`: why a boefje does or does not run on an object, or what became of a raw file (dry run)."""

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from katsched.api.context import ApiContext, model_response
from katsched.api.errors import BadRequest
from katsched.api.schemas import error_responses
from katsched.core.explain import Explanation
from katsched.core.models import MutationOperation
from katsched.errors import ServiceUnavailable

NOT_FOUND = {"description": "No such object, boefje or raw file in the organisation"}


class ExplainRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def register(self, router: APIRouter) -> None:
        router.add_api_route(
            "/explain",
            self.explain,
            methods=["GET"],
            response_model=Explanation,
            responses={**error_responses(400, 404), 404: {**error_responses(404)[404], **NOT_FOUND}},
            summary="The decision the planner would take now, and every fact behind it; writes nothing",
            description=(
                "With `ooi`: for each boefje of the organisation that takes the object (or only `boefje`), "
                "the verdict of a mutation `operation` of it now. With `raw`: each normalizer of the raw "
                "file's mime types and what became of it. A KAT service that is down is named in "
                "`unavailable` and the answer is partial (still 200)."
            ),
        )

    def explain(
        self,
        organisation: Annotated[str, Query(min_length=1)],
        ooi: Annotated[str | None, Query(min_length=1, description="An object reference.")] = None,
        raw: Annotated[uuid.UUID | None, Query(description="A raw file id (normalizers).")] = None,
        boefje: Annotated[str | None, Query(min_length=1, description="Only this boefje.")] = None,
        operation: Annotated[
            Literal["create", "update"], Query(description="The mutation the verdicts assume.")
        ] = "update",
    ) -> Response:
        if (ooi is None) == (raw is None):
            raise BadRequest("give exactly one of ooi and raw")
        if raw is not None and boefje is not None:
            raise BadRequest("boefje goes with ooi, not with raw")
        explainer = self.ctx.explainer
        if explainer is None:
            raise ServiceUnavailable("explain needs the planners, and this API was built without them")
        if raw is not None:
            return model_response(explainer.explain_raw_file(organisation, raw))
        assert ooi is not None
        explained = explainer.explain_object(organisation, ooi, boefje, MutationOperation(operation))
        return model_response(explained)
