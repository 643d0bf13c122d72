"""The filter request body of pop, `/tasks` and `/schedules/search`: described precisely in the OpenAPI
document, checked by `katsched.core.filters` at run time.

The body is received as any JSON object so that every problem with a filter (unknown column or operator, a bad
value, bad nesting) is answered by the filter parser with 400 `Invalid filter(s): …` and a precise reason,
rather than by a 422 from schema validation. The models below exist only for the document.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from katsched.core.filter_terms import check_terms
from katsched.core.filters import OPERATOR_NAMES, Entity, FilterExpr, parse_filter_request
from katsched.errors import FilterError

OperatorName = Literal[tuple(OPERATOR_NAMES)]  # type: ignore[valid-type]
Scalar = str | int | float | bool | None


class Filter(BaseModel):
    model_config = ConfigDict(extra="forbid", title="Filter")

    column: str = Field(description="A column: id, scheduler_id, organisation, status, data, …")
    field: str | None = Field(None, description="A path inside data (or a related row), `__`-separated.")
    operator: OperatorName  # type: ignore[valid-type]
    value: Scalar | list[Scalar] | dict[str, Any] = None


class FilterGroup(BaseModel):
    model_config = ConfigDict(extra="forbid", title="FilterGroup", populate_by_name=True)

    and_: list["Filter | FilterGroup"] = Field(default_factory=list, alias="and")
    or_: list["Filter | FilterGroup"] = Field(default_factory=list, alias="or")
    not_: "list[Filter | FilterGroup] | Filter | FilterGroup" = Field(
        default_factory=list, alias="not", description="Exactly one filter (or a list of one)."
    )


class FilterRequest(BaseModel):
    """A bare list of filters means AND; `{}` or an empty list matches everything."""

    model_config = ConfigDict(extra="forbid", title="FilterRequest")

    filters: list[Filter | FilterGroup] | FilterGroup | None = None


_REF = {"$ref": "#/components/schemas/FilterRequest"}

# The runtime type of the body: a JSON object, parsed by `katsched.core.filters.parse_filter_request`.
OptionalFilterBody = Annotated[dict[str, Any] | None, WithJsonSchema(_REF)]
FilterBody = Annotated[dict[str, Any], WithJsonSchema(_REF)]


def filter_components() -> dict[str, Any]:
    """The component schemas the `$ref` above points to, for the OpenAPI document."""
    schema = FilterRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions: dict[str, Any] = schema.pop("$defs", {})
    return {**definitions, "FilterRequest": schema}


def parse_body(document: dict[str, Any] | None, entity: Entity) -> FilterExpr | None:
    """The filter tree of a request body (None without a body); FilterError for anything wrong in it."""
    if document is None:
        return None
    _refuse_huge_integers(document, "document")
    return check_terms(parse_filter_request(document, entity))


_INT64 = range(-(2**63), 2**63)


def _refuse_huge_integers(value: object, where: str) -> None:
    """No column, nor SQLite, holds an integer beyond 64 bits: say so rather than fail in the driver."""
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_huge_integers(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_huge_integers(item, f"{where}[{index}]")
    elif isinstance(value, int) and not isinstance(value, bool) and value not in _INT64:
        raise FilterError(f"{where}: {value} is out of range (64-bit integers only)")
