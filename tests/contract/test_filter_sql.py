"""The filter language compiled to SQL, on a real SQLite file and on PostgreSQL: every operator, real rows."""

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, insert, select, text, update
from sqlalchemy.sql.util import ClauseAdapter

from katsched.core.filters import COLUMNS, Entity, parse_filter_request, parse_filters
from katsched.store import tables
from katsched.store.engine import build_engine
from katsched.store.filter_sql import like_to_glob
from katsched.store.filters import compile_filter
from tests.conftest import POSTGRES_ADMIN_URL

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ALL = {"alice", "bob", "charlie", "dave"}


def uid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


SCHEDULES: list[dict[str, Any]] = [
    {
        "id": uid(1),
        "scheduler_id": "boefje",
        "organisation": "org1",
        "hash": "s1",
        "data": {"name": "s1", "score": 15, "enabled": True},
        "enabled": True,
        "schedule": "0 * * * *",
        "deadline_at": T0 + timedelta(hours=1),
    },
    {
        "id": uid(2),
        "scheduler_id": "report",
        "organisation": "org2",
        "hash": "s2",
        "data": {"name": "s2", "score": 25, "enabled": False},
        "enabled": False,
        "schedule": None,
        "deadline_at": None,
    },
    {
        "id": uid(3),
        "scheduler_id": "boefje",
        "organisation": "org1",
        "hash": "s3",
        "data": {"name": "s3"},
        "enabled": True,
        "schedule": "*/5 * * * *",
        "deadline_at": T0 + timedelta(hours=3),
    },
]
for row in SCHEDULES:
    row.update(created_at=T0, modified_at=T0)


def task(n: int, name: str, schedule: int | None, **columns: Any) -> dict[str, Any]:
    return {
        "id": uid(10 + n),
        "schedule_id": None if schedule is None else uid(schedule),
        "type": "boefje",
        "hash": f"{name:x<32}",
        "created_at": T0 + timedelta(hours=n),
        "modified_at": T0 + timedelta(hours=n, minutes=1),
        **columns,
        "data": {"name": name, **columns["data"]},
    }


TASKS: list[dict[str, Any]] = [
    task(0, "alice", 1, scheduler_id="boefje", organisation="org1", priority=25, status="queued", data={
        "foo": "bar", "score": 15, "height": 1.8, "active": True, "note": "100% sure_thing",
        "nested": {"child": {"name": "x"}}, "list": ["ipv4", "network/local"],
        "boefje": {"id": "dns-records", "oci_image": "ghcr.io/x"},
    }),
    task(1, "bob", 2, scheduler_id="boefje", organisation="org2", priority=30, status="completed", data={
        "foo": "baz", "score": 25, "height": 1.7, "active": False, "note": "1000 sure things",
        "list": ["ipv4", "ipv6", "network/local"], "tags": [{"k": "a", "v": 1}],
        "boefje": {"id": "nmap", "oci_image": "ghcr.io/x"},
    }),
    task(2, "charlie", None, scheduler_id="normalizer", organisation="org1", priority=28, status="failed",
         data={
        "foo": "bar", "score": 35, "height": 1.6, "active": True,
        "list": ["ipv4", "ipv6", "network/internet"],
        "boefje": {"id": "dns-records", "oci_image": "ghcr.io/y"},
    }),
    # Values of the "wrong" JSON type must never make the SQL fail; they simply do not match.
    task(3, "dave", None, scheduler_id="report", organisation="org3", priority=None, status="pending", data={
        "foo": None, "score": "high", "height": "tall", "active": "yes", "list": "ipv4", "tags": [],
    }),
]  # fmt: skip
for row in TASKS:
    if row["data"]["name"] == "dave":
        row["hash"] = None
NAMES = {row["id"]: row["data"]["name"] for row in [*TASKS, *SCHEDULES]}


def _fill(engine: Engine) -> Engine:
    tables.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(insert(tables.schedules), SCHEDULES)
        connection.execute(insert(tables.tasks), TASKS)
    return engine


@pytest.fixture(scope="module")
def sqlite_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = build_engine(f"sqlite:///{tmp_path_factory.mktemp('filters') / 'katsched.db'}")
    yield _fill(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def pg_engine() -> Iterator[Engine]:
    """A fresh schema in the server's default database, dropped afterwards. An unreachable server fails."""
    schema = f"katsched_filters_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    options = f"-c search_path={schema} -c timezone=utc"
    engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"options": options})
    try:
        yield _fill(engine)
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest) -> Engine:
    fixture = "sqlite_engine" if request.param == "sqlite" else "pg_engine"
    engine: Engine = request.getfixturevalue(fixture)
    return engine


def matching(engine: Engine, filters: object, entity: Entity = "task") -> set[str]:
    table = tables.tasks if entity == "task" else tables.schedules
    where = compile_filter(parse_filters(filters, entity), entity)
    with engine.connect() as connection:
        return {NAMES[row.id] for row in connection.execute(select(table.c.id).where(where))}


def f(column: str, operator: str, value: object = None, field: str | None = None) -> dict[str, object]:
    item: dict[str, object] = {"column": column, "operator": operator, "value": value}
    return item if field is None else {**item, "field": field}


def data(field: str, operator: str, value: object = None) -> dict[str, object]:
    return f("data", operator, value, field)


ISO = "2026-01-01T01:00:00+00:00"

COLUMN_CASES = [
    (f("organisation", "==", "org1"), {"alice", "charlie"}),
    (f("organisation", "eq", "org1"), {"alice", "charlie"}),
    (f("organisation", "!=", "org1"), {"bob", "dave"}),
    (f("organisation", "ne", "org1"), {"bob", "dave"}),
    (f("priority", ">", 25), {"bob", "charlie"}),
    (f("priority", "gt", 25), {"bob", "charlie"}),
    (f("priority", ">=", "25"), {"alice", "bob", "charlie"}),
    (f("priority", "gte", 25.5), {"bob", "charlie"}),
    (f("priority", "<", 28), {"alice"}),
    (f("priority", "lt", 28), {"alice"}),
    (f("priority", "<=", 28), {"alice", "charlie"}),
    (f("priority", "lte", 28), {"alice", "charlie"}),
    (f("status", "==", "COMPLETED"), {"bob"}),
    (f("status", "in", ["queued", "FAILED"]), {"alice", "charlie"}),
    (f("status", "not_in", ["queued"]), {"bob", "charlie", "dave"}),
    (f("id", "==", str(uid(11))), {"bob"}),
    (f("id", "in", [str(uid(10)), str(uid(13))]), {"alice", "dave"}),
    (f("schedule_id", "==", str(uid(1))), {"alice"}),
    (f("schedule_id", "is", None), {"charlie", "dave"}),
    (f("schedule_id", "==", None), {"charlie", "dave"}),
    (f("schedule_id", "is_not", None), {"alice", "bob"}),
    (f("schedule_id", "!=", None), {"alice", "bob"}),
    (f("hash", "is_null"), {"dave"}),
    (f("hash", "is_not_null"), {"alice", "bob", "charlie"}),
    (f("created_at", ">=", ISO), {"bob", "charlie", "dave"}),
    (f("created_at", ">=", "2026-01-01T01:00:00Z"), {"bob", "charlie", "dave"}),
    (f("created_at", ">=", "2026-01-01T03:00:00+02:00"), {"bob", "charlie", "dave"}),
    (f("created_at", "==", "2026-01-01T01:00:00"), {"bob"}),
    (f("modified_at", "<", ISO), {"alice"}),
    (f("scheduler_id", "like", "boef%"), {"alice", "bob"}),
    (f("scheduler_id", "like", "BOEF%"), set()),
    (f("scheduler_id", "like", "b_efje"), {"alice", "bob"}),
    (f("scheduler_id", "ilike", "BOEF%"), {"alice", "bob"}),
    (f("scheduler_id", "not_like", "boef%"), {"charlie", "dave"}),
    (f("scheduler_id", "not_ilike", "%ORT"), {"alice", "bob", "charlie"}),
    (f("scheduler_id", "contains", "orm"), {"charlie"}),
    (f("scheduler_id", "starts_with", "norm"), {"charlie"}),
    (f("scheduler_id", "starts_with", "Norm"), set()),
    (f("organisation", "match", "ORG1"), {"alice", "charlie"}),
    (f("organisation", "any", ["org2", "org3"]), {"bob", "dave"}),
]

JSON_CASES = [
    (data("foo", "==", "bar"), {"alice", "charlie"}),
    (data("foo", "!=", "bar"), {"bob"}),
    (data("score", ">", 20), {"bob", "charlie"}),
    (data("score", ">=", 25), {"bob", "charlie"}),
    (data("score", "<", 25), {"alice"}),
    (data("score", "<=", 25), {"alice", "bob"}),
    (data("score", "==", "15"), {"alice"}),
    (data("height", "==", 1.8), {"alice"}),
    (data("height", "<", 1.75), {"bob", "charlie"}),
    (data("active", "==", True), {"alice", "charlie"}),
    (data("active", "==", False), {"bob"}),
    (data("active", "==", "true"), {"alice", "charlie"}),
    (data("active", "is", True), {"alice", "charlie"}),
    (data("active", "is_not", True), {"bob", "dave"}),
    (data("foo", "is_null"), {"dave"}),
    (data("missing", "is", None), ALL),
    (data("foo", "is_not_null"), {"alice", "bob", "charlie"}),
    (data("nested__child__name", "==", "x"), {"alice"}),
    (data("boefje__id", "in", ["dns-records"]), {"alice", "charlie"}),
    (data("boefje__id", "not_in", ["dns-records"]), {"bob"}),
    (data("score", "in", [15, 35.0]), {"alice", "charlie"}),
    (data("score", "not_in", [15]), {"bob", "charlie"}),
    (data("active", "in", [True]), {"alice", "charlie"}),
    (data("foo", "like", "%ar"), {"alice", "charlie"}),
    (data("foo", "like", "%AR"), set()),
    (data("foo", "ilike", "%AR"), {"alice", "charlie"}),
    (data("foo", "not_like", "%ar"), {"bob"}),
    (data("foo", "not_ilike", "%AR"), {"bob"}),
    (data("note", "like", "100\\% sure%"), {"alice"}),
    (data("note", "contains", "0% s"), {"alice"}),
    (data("note", "contains", "_"), {"alice"}),
    (data("foo", "contains", "ar"), {"alice", "charlie"}),
    (data("foo", "starts_with", "b"), {"alice", "bob", "charlie"}),
    (data("score", "starts_with", "1"), {"alice"}),
    (data("name", "match", "ALICE"), {"alice"}),
    (data("note", "match", "sure"), {"alice", "bob"}),
    (data("note", "match", "Things SURE"), {"bob"}),
    (data("note", "match", "  "), set()),
    (data("note", "ilike", "100\\% SURE%"), {"alice"}),
    (data("note", "ilike", "1000 SURE%"), {"bob"}),
]

CONTAINMENT_CASES = [
    (f("data", "@>", {"foo": "bar"}), {"alice", "charlie"}),
    (f("data", "@>", '{"foo": "bar"}'), {"alice", "charlie"}),
    (f("data", "contains", {"foo": "baz"}), {"bob"}),
    (f("data", "@>", {"boefje": {"id": "dns-records"}}), {"alice", "charlie"}),
    (f("data", "@>", {"tags": [{"k": "a"}]}), {"bob"}),
    (f("data", "@>", {"score": 15.0, "active": True}), {"alice"}),
    (f("data", "@>", {"foo": None}), {"dave"}),
    (f("data", "@>", {"active": "yes"}), {"dave"}),
    (f("data", "@>", {}), ALL),
    (data("list", "@>", ["ipv4"]), {"alice", "bob", "charlie"}),
    (data("list", "@>", '["ipv6", "network/internet"]'), {"charlie"}),
    (data("list", "@>", []), {"alice", "bob", "charlie"}),
    (data("list", "@>", "ipv6"), {"bob", "charlie"}),
    (data("list", "@>", "ipv4"), ALL),
    (data("list", "<@", ["ipv4", "ipv6", "network/local"]), {"alice", "bob", "dave"}),
    (data("boefje", "<@", {"id": "dns-records", "oci_image": "ghcr.io/x", "extra": 1}), {"alice"}),
    (data("nested", "<@", {"child": {"name": "x", "more": 1}}), {"alice"}),
    (data("tags", "<@", [{"k": "a", "v": 1, "w": 2}]), {"bob", "dave"}),
    (data("tags", "<@", [{"k": "b", "v": 1}]), {"dave"}),
    (f("data", "<@", {"name": "dave"}), set()),
    (data("list", "any", ["ipv6", "nope"]), {"bob", "charlie"}),
    (data("list", "any", "network/local"), {"alice", "bob"}),
    (data("list", "any", ["ipv4"]), ALL),
    (data("foo", "any", ["baz", "qux"]), {"bob"}),
    (data("score", "any", [25, 35]), {"bob", "charlie"}),
]

JSONPATH_CASES = [
    (f("data", "@?", "$.nested.child"), {"alice"}),
    (f("data", "@?", "$.foo"), ALL),
    (f("data", "@?", '$."boefje".oci_image'), {"alice", "bob", "charlie"}),
    (data("boefje", "@?", "$.oci_image"), {"alice", "bob", "charlie"}),
    (f("data", "@?", '$.list ? (@ == "ipv6")'), {"bob", "charlie"}),
    (f("data", "@?", '$.list[*] ? (@ == "network/internet")'), {"charlie"}),
    (f("data", "@?", "$.tags[*]"), {"bob"}),
    (f("data", "@?", "$.score ? (@ > 20)"), {"bob", "charlie"}),
    (f("data", "@@", "$.score > 20"), {"bob", "charlie"}),
    (f("data", "@@", '$.list == "ipv6"'), {"bob", "charlie"}),
    (f("data", "@@", "$.active == true"), {"alice", "charlie"}),
    (f("data", "@@", "$.foo == null"), {"dave"}),
    (f("data", "@@", "$.foo != null"), {"alice", "bob", "charlie"}),
    (f("data", "@@", "$.boefje != null"), {"alice", "bob", "charlie"}),
    (f("data", "@@", '$.boefje.id == "nmap"'), {"bob"}),
    (data("boefje", "@@", '$.id <> "nmap"'), {"alice", "charlie"}),
]

RELATIONSHIP_CASES = [
    (f("schedule", "==", True, "enabled"), {"alice"}),
    (f("schedule", ">", 20, "data__score"), {"bob"}),
    (f("schedule", "like", "0 %", "schedule"), {"alice"}),
    (f("schedule", ">", ISO, "deadline_at"), set()),
    (f("schedule", ">=", ISO, "deadline_at"), {"alice"}),
    (f("schedule", "is_null"), {"charlie", "dave"}),
    (f("schedule", "is_not_null"), {"alice", "bob"}),
]

GROUP_CASES = [
    ([], ALL),
    ({}, ALL),
    ({"or": []}, ALL),
    ([data("foo", "==", "bar"), f("organisation", "==", "org1")], {"alice", "charlie"}),
    ({"and": [data("foo", "==", "bar"), f("priority", "<", 28)]}, {"alice"}),
    ({"or": [data("name", "==", "alice"), data("name", "==", "bob")]}, {"alice", "bob"}),
    ({"not": [data("name", "==", "alice")]}, {"bob", "charlie", "dave"}),
    ({"not": data("name", "==", "alice")}, {"bob", "charlie", "dave"}),
    ({"not": [data("score", ">", 20)]}, {"alice", "dave"}),  # a true complement: dave's score is no number
    ({"or": [data("foo", "==", "bar")], "and": [f("priority", ">", 25)]}, {"charlie"}),
    ({"or": [{"and": [data("foo", "==", "bar"), f("priority", ">", 25)]}, data("name", "==", "dave")]},
     {"charlie", "dave"}),
    ({"and": [{"not": [{"or": [data("name", "==", "alice"), data("name", "==", "bob")]}]}]},
     {"charlie", "dave"}),
]  # fmt: skip

WORKER_FILTER = {
    "filters": [
        {"column": "data", "field": "boefje__oci_image", "operator": "in", "value": ["ghcr.io/x"]},
        {"column": "data", "field": "boefje__id", "operator": "in", "value": ["dns-records"]},
    ]
}


def _ids(cases: Sequence[tuple[object, set[str]]]) -> list[str]:
    return [str(filters).replace(" ", "")[:80] for filters, _ in cases]


ALL_TASK_CASES = (
    COLUMN_CASES + JSON_CASES + CONTAINMENT_CASES + JSONPATH_CASES + RELATIONSHIP_CASES + GROUP_CASES
)


@pytest.mark.parametrize(("filters", "expected"), ALL_TASK_CASES, ids=_ids(ALL_TASK_CASES))
def test_task_filters_match_exactly_the_expected_rows(
    engine: Engine, filters: object, expected: set[str]
) -> None:
    assert (
        matching(engine, [filters] if isinstance(filters, dict) and "column" in filters else filters)
        == expected
    )


SCHEDULE_CASES = [
    (f("enabled", "is", True), {"s1", "s3"}),
    (f("enabled", "==", "false"), {"s2"}),
    (f("schedule", "like", "0 %"), {"s1"}),
    (f("schedule", "is_null"), {"s2"}),
    (f("deadline_at", "<", "2026-01-01T02:00:00+00:00"), {"s1"}),
    (data("enabled", "==", False), {"s2"}),
    (f("tasks", "==", "completed", "status"), {"s2"}),
    (f("tasks", "==", "bar", "data__foo"), {"s1"}),
    (f("tasks", "is_null"), {"s3"}),
    (f("tasks", "is_not_null"), {"s1", "s2"}),
    ({"not": [f("tasks", "==", "nmap", "data__boefje__id")]}, {"s1", "s3"}),
]


@pytest.mark.parametrize(("filters", "expected"), SCHEDULE_CASES, ids=_ids(SCHEDULE_CASES))
def test_schedule_filters_match_exactly_the_expected_rows(
    engine: Engine, filters: dict[str, object], expected: set[str]
) -> None:
    assert matching(engine, [filters] if "column" in filters else filters, "schedule") == expected


def test_the_worker_pop_filter_selects_by_image_and_boefje(engine: Engine) -> None:
    where = compile_filter(parse_filter_request(WORKER_FILTER, "task"), "task")
    with engine.connect() as connection:
        assert [NAMES[i] for i in connection.scalars(select(tables.tasks.c.id).where(where))] == ["alice"]


HOSTILE = "x'; DROP TABLE tasks; --"


@pytest.mark.parametrize(
    "filters",
    [
        f("organisation", "==", HOSTILE),
        f("organisation", "like", HOSTILE),
        f("organisation", "match", HOSTILE),
        data("foo", "in", [HOSTILE, 'x"); DROP TABLE tasks; --']),
        data("foo", "contains", HOSTILE),
        f("data", "@>", {HOSTILE: HOSTILE}),
        f("data", "<@", {HOSTILE: [HOSTILE]}),
        f("data", "@@", f'$.foo == "{HOSTILE}"'),
        f("schedule", "==", HOSTILE, "organisation"),
    ],
)
def test_hostile_values_are_data_never_sql(engine: Engine, filters: dict[str, object]) -> None:
    assert matching(engine, [filters]) == set()
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(tables.tasks)) == len(TASKS)


def test_a_cached_statement_takes_the_new_values(engine: Engine) -> None:
    # Same statement shape, other values: the compiled-statement cache must not replay the first ones.
    for value, expected in [("bar", {"alice", "charlie"}), ("baz", {"bob"})]:
        assert matching(engine, [data("foo", "like", f"{value[:2]}{value[2]}%")]) == expected
        assert matching(engine, [f("data", "@>", {"foo": value})]) == expected


def test_the_expression_survives_being_rewritten_onto_an_alias(engine: Engine) -> None:
    """The queue adapts the filter to an alias of ``tasks`` and uses it inside an UPDATE, as pop does."""
    filters = [data("list", "@>", ["ipv6"]), f("schedule", "is_not_null"), data("active", "==", False)]
    where = compile_filter(parse_filters(filters, "task"), "task")
    candidate = tables.tasks.alias("candidate")
    adapted = ClauseAdapter(candidate).traverse(where)
    claim = select(candidate.c.id).where(adapted).scalar_subquery()
    with engine.begin() as connection:
        statement = update(tables.tasks).where(tables.tasks.c.id.in_(claim)).values(priority=99)
        changed = connection.execute(statement.returning(tables.tasks.c.id)).scalars().all()
        assert [NAMES[i] for i in changed] == ["bob"]
        connection.rollback()


def test_the_allow_list_names_real_columns() -> None:
    for entity, table in (("task", tables.tasks), ("schedule", tables.schedules)):
        assert set(COLUMNS[entity]) <= set(table.c.keys())  # type: ignore[index]


@pytest.mark.parametrize(
    ("pattern", "glob"),
    [
        ("a%b_c", "a*b?c"),
        ("100\\%", "100%"),
        ("x\\_y", "x_y"),
        ("*?[", "[*][?][[]"),
        ("\\\\", "\\"),
        ("a\\", "a\\"),
    ],
)
def test_like_patterns_translate_to_case_sensitive_glob(pattern: str, glob: str) -> None:
    assert like_to_glob(pattern) == glob
