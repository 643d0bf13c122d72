"""A filter tree (``katsched.core.filters``) → one SQLAlchemy Core boolean over ``tasks`` or ``schedules``.

The result is a plain WHERE expression: relationships are EXISTS subqueries over an alias of the related table
(so the caller may alias, join or UPDATE freely); ``not`` is a true complement (``NOT coalesce(x, false)``).
Dialect differences live in ``katsched.store.filter_sql``.
"""

import operator
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Table, and_, exists, false, func, literal, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause

from katsched.core.filter_values import JsonLiteral, JsonPathQuery, Value
from katsched.core.filters import RELATIONS, And, Condition, Entity, FilterExpr, Not, Operator, Or, Related
from katsched.store import filter_sql, tables

TABLES: Mapping[Entity, Table] = {"task": tables.tasks, "schedule": tables.schedules}

Left = ColumnElement[Any]
Apply = Callable[[Left, Any], ColumnElement[bool]]


def compile_filter(expr: FilterExpr, entity: Entity) -> ColumnElement[bool]:
    """The WHERE expression of ``expr`` over ``tables.tasks`` (entity ``task``) or ``tables.schedules``."""
    return _compile(expr, entity, TABLES[entity])


def _compile(expr: FilterExpr, entity: Entity, table: FromClause) -> ColumnElement[bool]:
    if isinstance(expr, And):
        return and_(true(), *(_compile(item, entity, table) for item in expr.filters))
    if isinstance(expr, Or):
        return or_(false(), *(_compile(item, entity, table) for item in expr.filters))
    if isinstance(expr, Not):
        return not_(func.coalesce(_compile(expr.filter, entity, table), false()))
    if isinstance(expr, Related):
        return _related(expr, entity, table)
    return _condition(expr, table)


def _related(expr: Related, entity: Entity, table: FromClause) -> ColumnElement[bool]:
    other = TABLES[RELATIONS[entity][expr.relation]].alias()
    link = other.c.id == table.c.schedule_id if entity == "task" else other.c.schedule_id == table.c.id
    condition = true() if expr.condition is None else _condition(expr.condition, other)
    return exists(select(literal(1)).select_from(other).where(link, condition))


def _condition(condition: Condition, table: FromClause) -> ColumnElement[bool]:
    column = table.c[condition.column]
    op, value, path = condition.operator, condition.value, condition.path
    if op in (Operator.JSON_CONTAINS, Operator.JSON_CONTAINED_BY):
        assert isinstance(value, JsonLiteral)
        return filter_sql.json_contains(
            column, path, value.value, contained_by=op is Operator.JSON_CONTAINED_BY
        )
    if op in (Operator.JSON_PATH_EXISTS, Operator.JSON_PATH_MATCH):
        assert isinstance(value, JsonPathQuery)
        return filter_sql.json_path(column, path, value)
    if op is Operator.ANY:
        assert isinstance(value, tuple)
        return or_(false(), *(filter_sql.json_contains(column, path, item) for item in value))
    left = _json_scalar(column, path, value) if path else column
    return _APPLY[op](left, value)


def _json_scalar(column: Left, path: tuple[str, ...], value: Value) -> Left:
    """The value at ``path``, read as the type of the filter's value (the first, for a list)."""
    sample = value[0] if isinstance(value, tuple) else value
    if isinstance(sample, bool):
        return filter_sql.json_bool(column, path)
    if isinstance(sample, int | float):
        return filter_sql.json_number(column, path)
    return filter_sql.json_text(column, path)


_APPLY: Mapping[Operator, Apply] = {
    Operator.EQ: operator.eq,
    Operator.NE: operator.ne,
    Operator.GT: operator.gt,
    Operator.LT: operator.lt,
    Operator.GTE: operator.ge,
    Operator.LTE: operator.le,
    Operator.IS: lambda left, value: left.is_(value),
    Operator.IS_NOT: lambda left, value: left.is_not(value),
    Operator.IN: lambda left, values: left.in_(list(values)),
    Operator.NOT_IN: lambda left, values: left.not_in(list(values)),
    Operator.LIKE: filter_sql.like,
    Operator.NOT_LIKE: lambda left, pattern: not_(filter_sql.like(left, pattern)),
    Operator.ILIKE: filter_sql.ilike,
    Operator.NOT_ILIKE: lambda left, pattern: not_(filter_sql.ilike(left, pattern)),
    Operator.CONTAINS: lambda left, text: filter_sql.like(left, f"%{filter_sql.escape_like(text)}%"),
    Operator.STARTS_WITH: lambda left, text: filter_sql.like(left, f"{filter_sql.escape_like(text)}%"),
    Operator.MATCH: filter_sql.text_match,
}
