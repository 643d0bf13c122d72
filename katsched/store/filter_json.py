"""JSON containment and the jsonpath subset for SQLite, spelled with json_type, json_extract and json_each.

SQLite has no ``@>``: the filter's document is known when the statement is built, so its shape becomes the
shape of the SQL (one EXISTS over ``json_each`` per object member or array item) and its scalars become bound
parameters. The rules follow PostgreSQL's jsonb containment: objects match key by key, an array item matches
some item of the same type, scalars match by type and value, and only at the top may an array contain a bare
scalar. Elements of ``json_each`` are re-entered through their ``value`` (JSON text for containers), never
through ``fullkey``, whose quoting breaks on unusual keys.
"""

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, and_, case, exists, false, func, literal, not_, or_, select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeEngine

from katsched.core.filter_values import JsonPathQuery, JsonScalar

Predicate = Callable[[TableValuedAlias], ColumnElement[bool]]
NUMBER_TYPES = ("integer", "real")
COMPARISONS: Mapping[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def sqlite_path(keys: tuple[str, ...]) -> str:
    """A JSON path for SQLite; keys are quoted and were checked against ``KEY_PATTERN`` (no quotes inside)."""
    return "$" + "".join(f'."{key}"' for key in keys)


@dataclass(frozen=True)
class Source:
    """A place inside a JSON document: the document expression and a JSON path (both SQL expressions)."""

    document: ColumnElement[Any]
    path: ColumnElement[str]

    @classmethod
    def at(cls, document: ColumnElement[Any], keys: tuple[str, ...]) -> "Source":
        return cls(document, literal(sqlite_path(keys)))

    def json_type(self) -> ColumnElement[str]:
        return func.json_type(self.document, self.path, type_=Text)

    def extract(self, type_: TypeEngine[Any] | None = None) -> ColumnElement[Any]:
        return func.json_extract(self.document, self.path, type_=type_)

    def each(self) -> TableValuedAlias:
        return func.json_each(self.document, self.path).table_valued("key", "value", "type", "atom")


def contains(source: Source, document: object, *, top: bool = False) -> ColumnElement[bool]:
    kind = source.json_type()
    if isinstance(document, dict):
        return and_(kind == "object", *(_some(source, _member(k, v, contains)) for k, v in document.items()))
    if isinstance(document, list):
        return and_(kind == "array", *(_some(source, _item(v, contains)) for v in document))
    found = _scalar_is(kind, source.extract(), document)
    if not top:
        return found
    return or_(found, and_(kind == "array", _some(source, _item(document, contains))))


def contained_by(source: Source, document: object, *, top: bool = False) -> ColumnElement[bool]:
    kind = source.json_type()
    if isinstance(document, dict):
        return and_(
            kind == "object", _every(source, [_member(k, v, contained_by) for k, v in document.items()])
        )
    if not isinstance(document, list):
        return _scalar_is(kind, source.extract(), document)
    inside = and_(kind == "array", _every(source, [_item(v, contained_by) for v in document]))
    if not top:
        return inside
    bare = [_scalar_is(kind, source.extract(), v) for v in document if not isinstance(v, dict | list)]
    return or_(inside, *bare)


Check = Callable[..., ColumnElement[bool]]


def _member(key: str, value: object, check: Check) -> Predicate:
    return lambda row: and_(row.c.key == key, _element(row, value, check))


def _item(value: object, check: Check) -> Predicate:
    return lambda row: _element(row, value, check)


def _element(row: TableValuedAlias, value: object, check: Check) -> ColumnElement[bool]:
    if isinstance(value, dict | list):
        # CASE, not AND: json_type on a scalar's raw value fails, and SQLite may evaluate AND in any order.
        wanted = "object" if isinstance(value, dict) else "array"
        return case((row.c.type == wanted, check(Source(row.c.value, literal("$")), value)), else_=false())
    return _scalar_is(row.c.type, row.c.atom, value)


def _scalar_is(kind: ColumnElement[Any], value: ColumnElement[Any], wanted: object) -> ColumnElement[bool]:
    if wanted is None:
        return kind == "null"
    if isinstance(wanted, bool):
        return kind == ("true" if wanted else "false")
    if isinstance(wanted, str):
        return and_(kind == "text", value == wanted)
    return and_(kind.in_(NUMBER_TYPES), value == wanted)


def _some(source: Source, predicate: Predicate) -> ColumnElement[bool]:
    row = source.each()
    return exists(select(literal(1)).select_from(row).where(predicate(row)))


def _every(source: Source, predicates: list[Predicate]) -> ColumnElement[bool]:
    row = source.each()
    allowed = or_(false(), *(predicate(row) for predicate in predicates))
    return not_(exists(select(literal(1)).select_from(row).where(not_(func.coalesce(allowed, false())))))


def path_query(
    document: ColumnElement[Any], path: tuple[str, ...], query: JsonPathQuery
) -> ColumnElement[bool]:
    """PostgreSQL's lax mode unwraps an array at the end of the path: so do we, through json_each."""
    source = Source.at(document, (*path, *query.keys))
    kind = source.json_type()
    if query.comparison is None:
        if not query.unwrap:
            return kind.is_not(None)
        length = func.json_array_length(source.document, source.path)
        return and_(kind.is_not(None), or_(kind != "array", length > 0))
    comparison, operand = query.comparison, query.operand

    def matches(row: TableValuedAlias) -> ColumnElement[bool]:
        return _compare(row.c.type, row.c.atom, comparison, operand)

    return case(
        (kind == "array", _some(source, matches)), else_=_compare(kind, source.extract(), comparison, operand)
    )


def _compare(
    kind: ColumnElement[Any], value: ColumnElement[Any], op: str, operand: JsonScalar
) -> ColumnElement[bool]:
    """A jsonpath comparison: values of different types never compare, except that anything is ``!= null``."""
    if operand is None:
        return kind == "null" if op == "==" else and_(kind.is_not(None), kind != "null")
    if isinstance(operand, bool):
        types: tuple[str, ...] = ("true", "false")
    elif isinstance(operand, str):
        types = ("text",)
    else:
        types = NUMBER_TYPES
    return and_(kind.in_(types), COMPARISONS[op](value, operand))
