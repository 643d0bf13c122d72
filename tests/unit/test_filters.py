"""The filter language's parser: request documents → validated, immutable trees, or one precise error."""

import dataclasses
import uuid
from datetime import UTC, datetime

import pytest

from katsched.core.filter_values import JsonLiteral, JsonPathQuery
from katsched.core.filters import (
    And,
    Condition,
    Not,
    Operator,
    Or,
    Related,
    parse_filter_request,
    parse_filters,
)
from katsched.errors import FilterError

O = Operator  # noqa: E741  (short, so the tables of cases read as tables)


def one(item: dict[str, object], entity: str = "task") -> object:
    """The tree of a one-filter list, unwrapped."""
    tree = parse_filters([item], entity)  # type: ignore[arg-type]
    assert isinstance(tree, And) and len(tree.filters) == 1
    return tree.filters[0]


def c(column: str, operator: str, value: object = None, field: object = None) -> dict[str, object]:
    item: dict[str, object] = {"column": column, "operator": operator, "value": value}
    return item if field is None else {**item, "field": field}


# Shapes


def test_the_worker_filter_parses_to_two_anded_conditions() -> None:
    document = {
        "filters": [
            c("data", "in", ["ghcr.io/x"], "boefje__oci_image"),
            c("data", "in", ["dns-records"], "boefje__id"),
        ]
    }
    assert parse_filter_request(document, "task") == And(
        (
            Condition("data", O.IN, ("ghcr.io/x",), ("boefje", "oci_image")),
            Condition("data", O.IN, ("dns-records",), ("boefje", "id")),
        )
    )


@pytest.mark.parametrize("document", [None, {}, {"filters": None}, {"filters": []}, {"filters": {}}])
def test_an_empty_request_matches_everything(document: object) -> None:
    assert parse_filter_request(document, "task") == And()


def test_group_keys_are_anded_and_an_empty_group_list_does_not_filter() -> None:
    a, b = c("organisation", "==", "a"), c("organisation", "==", "b")
    tree = parse_filters({"or": [a, b], "and": [a], "not": [b]}, "task")
    ca, cb = Condition("organisation", O.EQ, "a"), Condition("organisation", O.EQ, "b")
    assert tree == And((Or((ca, cb)), ca, Not(cb)))
    assert parse_filters({"or": []}, "task") == And()
    assert parse_filters({"or": [a]}, "task") == Or((ca,))


def test_groups_nest_and_not_takes_a_bare_filter_too() -> None:
    tree = parse_filters({"or": [{"and": [c("type", "==", "x")]}, {"not": c("type", "==", "y")}, {}]}, "task")
    assert tree == Or(
        (Condition("type", O.EQ, "x"), Not(Condition("type", O.EQ, "y")), And()),
    )


def test_the_tree_is_immutable_and_hashable() -> None:
    tree = parse_filters([c("data", "@>", {"a": [1]}, "x")], "task")
    assert isinstance(tree, And)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tree.filters = ()  # type: ignore[misc]
    assert hash(tree) == hash(parse_filters([c("data", "@>", {"a": [1]}, "x")], "task"))


# Operators and their normalisation


@pytest.mark.parametrize(
    ("alias", "operator"),
    [
        *[("eq", O.EQ), ("==", O.EQ), ("ne", O.NE), ("!=", O.NE), ("gt", O.GT), (">", O.GT), ("lt", O.LT)],
        *[("<", O.LT), ("gte", O.GTE), (">=", O.GTE), ("lte", O.LTE), ("<=", O.LTE)],
    ],
)
def test_operator_aliases_mean_the_same(alias: str, operator: Operator) -> None:
    assert one(c("priority", alias, 3)) == Condition("priority", operator, 3)


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (c("hash", "==", None), Condition("hash", O.IS, None)),
        (c("hash", "!=", None), Condition("hash", O.IS_NOT, None)),
        (c("hash", "is_null"), Condition("hash", O.IS, None)),
        ({"column": "hash", "operator": "is_not_null"}, Condition("hash", O.IS_NOT, None)),
        (c("hash", "is", None), Condition("hash", O.IS, None)),
        (c("data", "contains", {"a": 1}), Condition("data", O.JSON_CONTAINS, JsonLiteral('{"a":1}'))),
        (c("data", "@>", '{"b": [1, 2]}'), Condition("data", O.JSON_CONTAINS, JsonLiteral('{"b":[1,2]}'))),
        (c("data", "<@", "x", "a"), Condition("data", O.JSON_CONTAINED_BY, JsonLiteral('"x"'), ("a",))),
        (c("organisation", "any", ["a", "b"]), Condition("organisation", O.IN, ("a", "b"))),
        (c("data", "any", "a", "list"), Condition("data", O.ANY, ("a",), ("list",))),
        (c("data", "is", True, "on"), Condition("data", O.IS, True, ("on",))),
        (c("enabled", "is_not", False), Condition("enabled", O.IS_NOT, False)),
    ],
)
def test_operators_normalise(item: dict[str, object], expected: Condition) -> None:
    entity = "schedule" if item["column"] == "enabled" else "task"
    assert one(item, entity) == expected


@pytest.mark.parametrize("operator", [o.value for o in Operator])
def test_every_operator_parses_on_a_field_of_data(operator: str) -> None:
    values: dict[str, object] = {"in": ["a"], "not_in": ["a"], "any": ["a"], "@>": {"a": 1}, "<@": [1]}
    values |= {
        "@?": "$.a",
        "@@": "$.a == 1",
        "is": True,
        "is_not": None,
        "is_null": None,
        "is_not_null": None,
    }
    parsed = one(c("data", operator, values.get(operator, "x"), "a"))
    assert isinstance(parsed, Condition) and parsed.path == ("a",)


# Values are coerced to the column's type


@pytest.mark.parametrize(
    ("item", "value"),
    [
        (c("status", "==", "COMPLETED"), "completed"),
        (c("status", "in", ["Queued", "failed"]), ("queued", "failed")),
        (c("status", "like", "COMP%"), "comp%"),
        (c("priority", ">", "25"), 25),
        (c("priority", ">", " -3 "), -3),
        (c("priority", "<", 2.5), 2.5),
        (c("priority", "<", "2.5"), 2.5),
        (c("id", "==", "00000000-0000-0000-0000-000000000007"), uuid.UUID(int=7)),
        (c("schedule_id", "in", [str(uuid.UUID(int=8))]), (uuid.UUID(int=8),)),
        (c("created_at", ">", "2026-01-01T01:00:00Z"), datetime(2026, 1, 1, 1, tzinfo=UTC)),
        (c("created_at", ">", "2026-01-01T03:00:00+02:00"), datetime(2026, 1, 1, 1, tzinfo=UTC)),
        (c("modified_at", ">", "2026-01-01T01:00:00"), datetime(2026, 1, 1, 1, tzinfo=UTC)),
        (c("data", "==", 1.5, "x"), 1.5),
        (c("data", "==", True, "x"), True),
        (c("data", "==", "2026-01-01", "x"), "2026-01-01"),
    ],
)
def test_values_are_coerced_to_the_column_type(item: dict[str, object], value: object) -> None:
    parsed = one(item)
    assert isinstance(parsed, Condition)
    assert parsed.value == value
    assert type(parsed.value) is type(value)


@pytest.mark.parametrize(("raw", "expected"), [("True", True), ("false", False), (1, True), (0, False)])
def test_booleans_are_coerced_for_the_enabled_column(raw: object, expected: bool) -> None:
    assert one(c("enabled", "==", raw), "schedule") == Condition("enabled", O.EQ, expected)


# Relationships


def test_relationships_become_related_conditions() -> None:
    assert one(c("schedule", "==", True, "enabled")) == Related("schedule", Condition("enabled", O.EQ, True))
    assert one(c("schedule", ">", 3, "data__a__b")) == Related(
        "schedule", Condition("data", O.GT, 3, ("a", "b"))
    )
    assert one(c("tasks", "==", "QUEUED", "status"), "schedule") == Related(
        "tasks", Condition("status", O.EQ, "queued")
    )
    assert one(c("schedule", "is_null")) == Not(Related("schedule"))
    assert one(c("tasks", "is_not_null"), "schedule") == Related("tasks")


# JSON documents and the jsonpath subset


@pytest.mark.parametrize(
    ("operator", "text", "canonical"),
    [
        ("@?", "$.a.b", '$."a"."b"'),
        ("@?", ' $ . "x-y" ', None),
        ("@?", '$."x-y"', '$."x-y"'),
        ("@?", "$.list[*]", '$."list"[*]'),
        ("@?", '$.list[*] ? (@ == "a)b")', '$."list"[*] ? (@ == "a)b")'),
        ("@?", "$.n ? (@ >= -1.5e2)", '$."n" ? (@ >= -150.0)'),
        ("@@", "$.score > 20", '$."score" > 20'),
        ("@@", "$.a <> null", '$."a" != null'),
        ("@@", "$ == true", "$ == true"),
    ],
)
def test_the_jsonpath_subset_is_rendered_canonically(operator: str, text: str, canonical: str | None) -> None:
    if canonical is None:
        with pytest.raises(FilterError, match="unsupported jsonpath"):
            one(c("data", operator, text))
        return
    parsed = one(c("data", operator, text))
    assert isinstance(parsed, Condition) and isinstance(parsed.value, JsonPathQuery)
    assert parsed.value.render() == canonical


# Errors: one line, naming where in the document


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ("nope", "filters: expected a list or an object, got a string"),
        ([1], "filters[0]: expected a filter object, got a number"),
        ({"xor": []}, 'filters: unknown key "xor"; expected one of and, or, not'),
        (
            {"not": [c("type", "==", "a"), c("type", "==", "b")]},
            "filters.not: takes exactly one filter, got 2",
        ),
        ({"not": []}, "filters.not: takes exactly one filter, got 0"),
        ({"or": {"column": "x"}}, "filters.or: expected a list of filters, got an object"),
        ({"or": [{"and": [{"xor": 1, "and": []}]}]}, 'filters.or[0].and[0]: unknown key "xor"'),
        (
            [c("type", "xor", "a"), c("type", "==", "a")],
            'filters[0].operator: unknown operator "xor"; expected one of',
        ),
        (
            [c("type", "==", "a"), c("type", "xor", "a")],
            'filters[1].operator: unknown operator "xor"; expected one of ==',
        ),
        ([{"column": "type", "value": 1}], "filters[0].operator: unknown operator null"),
        (
            [c("nope", "==", "a")],
            'filters[0].column: unknown column "nope" for tasks; expected one of id, scheduler_id',
        ),
        ([{"operator": "==", "value": 1}], "filters[0].column: required"),
        (
            [{**c("type", "==", "a"), "colum": "x"}],
            'filters[0]: unknown key "colum"; expected one of column, field',
        ),
        ([c("type", "==", "a", "x")], 'filters[0].field: column "type" has no fields'),
        ([c("data", "==", "a", "a'b")], 'filters[0].field: bad segment "a\'b"'),
        ([c("data", "==", "a", "a____b")], 'filters[0].field: bad segment ""'),
        ([c("data", "==", "a", 3)], "filters[0].field: expected a string"),
        ([c("data", "in", [], "a")], 'filters[0].value: "in" needs a non-empty list of values of one type'),
        (
            [c("data", "in", ["a", 1], "a")],
            'filters[0].value: "in" needs a non-empty list of values of one type',
        ),
        ([c("data", "in", [True, 1], "a")], '"in" needs a non-empty list of values of one type'),
        ([c("data", "not_in", "a", "a")], '"not_in" needs a non-empty list of values of one type'),
        ([c("data", "in", [None], "a")], '"in" needs a non-empty list of values of one type'),
        ([c("data", "in", list(range(1001)), "a")], "at most 1000"),
        ([c("data", "==", ["a"], "a")], '"==" needs a single value, got a list'),
        ([c("data", "==", "a")], 'filters[0].field: "==" compares a field of data'),
        ([c("data", ">", float("nan"), "a")], "filters[0].value: expected a string, number or boolean"),
        ([c("data", ">", None, "a")], '">" needs a value, got null'),
        (
            [c("status", "==", "done")],
            'filters[0].value: unknown status "done"; expected one of pending, queued',
        ),
        ([c("status", "==", 3)], "a status is a string"),
        ([c("id", "==", "not-a-uuid")], "filters[0].value: 'not-a-uuid' is not a UUID"),
        ([c("created_at", ">", "yesterday")], "'yesterday' is not an ISO 8601 datetime"),
        ([c("created_at", ">", 5)], "5 is not an ISO 8601 datetime"),
        ([c("priority", ">", "high")], "'high' is not an integer"),
        ([c("priority", ">", True)], "True is not an integer"),
        ([c("priority", ">", "inf")], "'inf' is not an integer"),
        ([c("organisation", "==", 3)], "3 is not a string"),
        ([c("priority", "like", "1%")], 'filters[0].operator: "like" needs a text column or a field of data'),
        ([c("created_at", "contains", "1")], '"contains" needs a text column or a field of data'),
        ([c("organisation", "like", 1)], 'filters[0].value: "like" needs a string, got a number'),
        ([c("organisation", "like", "a\\")], "pattern ends with an unfinished escape"),
        ([c("status", "@>", "x")], '"@>" needs the data column or a field inside it'),
        ([c("organisation", "is", True)], '"is true" needs a boolean column or a field of data'),
        ([c("data", "is", "x", "a")], '"is" needs null, true or false, got a string'),
        ([c("hash", "is_null", 1)], '"is_null" takes no value'),
        ([c("schedule", "==", "x")], 'relationship "schedule" needs a field naming a column of schedules'),
        ([c("schedule", "==", "x", "nope")], 'filters[0].field: unknown column "nope" for schedules'),
        ([c("schedule", "==", "x", "tasks__status")], 'unknown column "tasks" for schedules'),
        ([c("schedule", "==", "x", "enabled__a")], 'column "enabled" of schedules has no fields'),
        ([c("data", "@>", "{not json", "a")], "filters[0].value: not valid JSON"),
        ([c("data", "@>", {"a": float("inf")})], "not a JSON value"),
        ([c("data", "@>", {1: "a"})], "JSON object keys must be strings"),
        ([c("data", "@>", [[[[[[[[[[1]]]]]]]]]])], "JSON document too large"),
        ([c("data", "@>", list(range(300)))], "JSON document too large"),
        ([c("data", "@?", 3)], '"@?" needs a jsonpath string'),
        ([c("data", "@?", "strict $.a")], "unsupported jsonpath 'strict $.a'"),
        ([c("data", "@?", "$.a[0]")], "unsupported jsonpath"),
        ([c("data", "@?", '$.a ? (@ like_regex "x")')], "unsupported jsonpath"),
        ([c("data", "@@", "$.a")], "unsupported jsonpath '$.a' for \"@@\""),
        ([c("data", "@@", "$.a == nope")], "jsonpath literal 'nope' is not a JSON"),
        ([c("data", "@@", "$.a == [1]")], "jsonpath literal '[1]' is not a JSON"),
        ([c("data", "@@", "$.a > null")], 'jsonpath "> null" is never true'),
    ],
)
def test_malformed_filters_raise_one_precise_error(filters: object, message: str) -> None:
    with pytest.raises(FilterError) as raised:
        parse_filters(filters, "task")
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_groups_nest_only_so_deep() -> None:
    filters: object = [c("type", "==", "a")]
    for _ in range(20):
        filters = {"and": [filters] if isinstance(filters, dict) else filters}
    with pytest.raises(FilterError, match="groups nest at most 16 deep"):
        parse_filters(filters, "task")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], 'document: expected an object with a "filters" key, got a list'),
        ({"filter": []}, 'document: unknown key "filter"; expected "filters"'),
    ],
)
def test_the_request_document_is_checked(document: object, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        parse_filter_request(document, "task")


def test_schedules_have_their_own_columns() -> None:
    assert one(c("enabled", "==", True), "schedule") == Condition("enabled", O.EQ, True)
    with pytest.raises(FilterError, match='unknown column "priority" for schedules; expected one of id,'):
        parse_filters([c("priority", "==", 1)], "schedule")
    with pytest.raises(FilterError, match='unknown column "enabled" for tasks'):
        parse_filters([c("enabled", "==", True)], "task")
