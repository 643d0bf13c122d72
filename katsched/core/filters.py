"""The filter language of ``POST /tasks``, ``/schedules/search`` and pop: request document → validated tree.

The tree is immutable and holds nothing unchecked: columns come from an allow-list, JSON keys match
``KEY_PATTERN``, values are coerced to the column's type. ``katsched.store.filters`` compiles it to SQL.

Document: ``{"filters": <list> | <group>}``; a bare list means AND. A group is an object whose keys are
``and``, ``or`` and ``not``; several keys are ANDed; ``not`` takes exactly one filter (a list of one, or the
filter itself) and is a true complement (rows where a missing value made the inner filter unknown match it).
Unlike the original, groups nest: an item of a group's list may be a group (``MAX_DEPTH`` deep at most).
An empty list, ``{}`` or an absent ``filters`` matches everything (so does ``{"or": []}``).

A filter: ``{"column", "field"?, "operator", "value"?}``. ``field`` is a ``__``-separated path: into ``data``,
or for a relationship (tasks: ``schedule``, schedules: ``tasks``) a column of the related table, optionally
followed by a path into its ``data``. A relationship filter holds if *some* related row matches; without a
field a relationship takes only ``is_null`` / ``is_not_null`` (has no / has a related row).

Operators (the same answers on SQLite and PostgreSQL unless said otherwise):
* ``== != > < >= <=`` (and ``eq ne gt lt gte lte``), ``in``, ``not_in``: SQL comparisons; a NULL or missing
  value matches none of them. ``== null`` means ``is null``, ``!= null`` means ``is_not null``.
* ``is`` / ``is_not`` take null, true or false; ``is_null`` / ``is_not_null`` take no value. In ``data``,
  JSON null and a missing key are both null.
* ``like``, ``not_like``: case-sensitive, ``%`` and ``_`` wildcards, ``\\`` escapes (SQLite: via GLOB).
  ``ilike``, ``not_ilike``: the same, ignoring (ASCII) case. ``contains``, ``starts_with``: literal substring
  or prefix, case-sensitive. ``match``: every word of the value; PostgreSQL full text search (config
  ``simple``: whole words, no stemming), SQLite substrings ignoring case.
* ``@>`` / ``<@``: jsonb containment, PostgreSQL's rules on both (on SQLite compiled from the document's
  shape). The value is JSON, or a string holding a JSON object or array. On ``data``, ``contains`` is ``@>``.
* ``any``: the value at the path equals one of the values, or is an array containing one of them
  (``@>`` per value). On a plain column it means ``in``. A bare value counts as a list of one.
* ``@?`` (path exists, or some item passes ``? (@ op literal)``) and ``@@`` (``path op literal``) take the
  jsonpath subset of ``filter_values``; PostgreSQL's lax mode unwraps an array at the end of the path, SQLite
  does the same, but arrays in the middle of the path are unwrapped only by PostgreSQL.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, TypeAlias

from katsched.core.filter_values import (
    TEXT_KINDS,
    ColumnKind,
    Value,
    coerce_column_value,
    json_document,
    json_path_query,
    list_of_one_type,
)
from katsched.errors import FilterError

Entity = Literal["task", "schedule"]

MAX_DEPTH = 16
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-]+$")


class Operator(StrEnum):
    EQ = "=="
    NE = "!="
    IS = "is"
    IS_NOT = "is_not"
    GT = ">"
    LT = "<"
    GTE = ">="
    LTE = "<="
    LIKE = "like"
    NOT_LIKE = "not_like"
    ILIKE = "ilike"
    NOT_ILIKE = "not_ilike"
    IN = "in"
    NOT_IN = "not_in"
    CONTAINS = "contains"
    STARTS_WITH = "starts_with"
    MATCH = "match"
    JSON_CONTAINS = "@>"
    JSON_CONTAINED_BY = "<@"
    JSON_PATH_EXISTS = "@?"
    JSON_PATH_MATCH = "@@"
    ANY = "any"
    IS_NULL = "is_null"
    IS_NOT_NULL = "is_not_null"


ALIASES: Mapping[str, Operator] = {
    "eq": Operator.EQ,
    "ne": Operator.NE,
    "gt": Operator.GT,
    "lt": Operator.LT,
    "gte": Operator.GTE,
    "lte": Operator.LTE,
}
OPERATOR_NAMES: Mapping[str, Operator] = {**{op.value: op for op in Operator}, **ALIASES}

TEXT_OPERATORS = frozenset(
    {Operator.LIKE, Operator.NOT_LIKE, Operator.ILIKE, Operator.NOT_ILIKE, Operator.CONTAINS}
    | {Operator.STARTS_WITH, Operator.MATCH}
)
PATTERN_OPERATORS = frozenset({Operator.LIKE, Operator.NOT_LIKE, Operator.ILIKE, Operator.NOT_ILIKE})
LIST_OPERATORS = frozenset({Operator.IN, Operator.NOT_IN, Operator.ANY})
JSON_OPERATORS = frozenset(
    {Operator.JSON_CONTAINS, Operator.JSON_CONTAINED_BY, Operator.JSON_PATH_EXISTS, Operator.JSON_PATH_MATCH}
)

K = ColumnKind
COLUMNS: Mapping[Entity, Mapping[str, ColumnKind]] = {
    "task": {
        "id": K.UUID,
        "scheduler_id": K.TEXT,
        "schedule_id": K.UUID,
        "organisation": K.TEXT,
        "type": K.TEXT,
        "hash": K.TEXT,
        "priority": K.INT,
        "data": K.JSON,
        "status": K.STATUS,
        "created_at": K.DATETIME,
        "modified_at": K.DATETIME,
    },
    "schedule": {
        "id": K.UUID,
        "scheduler_id": K.TEXT,
        "organisation": K.TEXT,
        "hash": K.TEXT,
        "data": K.JSON,
        "enabled": K.BOOL,
        "schedule": K.TEXT,
        "deadline_at": K.DATETIME,
        "created_at": K.DATETIME,
        "modified_at": K.DATETIME,
    },
}
RELATIONS: Mapping[Entity, Mapping[str, Entity]] = {
    "task": {"schedule": "schedule"},
    "schedule": {"tasks": "task"},
}
TABLE_NAMES: Mapping[Entity, str] = {"task": "tasks", "schedule": "schedules"}
FILTER_KEYS = ("column", "field", "operator", "value")
GROUP_KEYS = ("and", "or", "not")


@dataclass(frozen=True)
class Condition:
    """``column`` [at ``path``] ``operator`` ``value``; inside ``Related``, a column of the related table."""

    column: str
    operator: Operator
    value: Value = None
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class Related:
    """Some row reached over ``relation`` satisfies ``condition`` (``None``: some related row exists)."""

    relation: str
    condition: Condition | None = None


@dataclass(frozen=True)
class And:
    filters: tuple["FilterExpr", ...] = ()


@dataclass(frozen=True)
class Or:
    filters: tuple["FilterExpr", ...]


@dataclass(frozen=True)
class Not:
    filter: "FilterExpr"


FilterExpr: TypeAlias = And | Or | Not | Condition | Related


def parse_filter_request(document: object, entity: Entity) -> FilterExpr:
    """Parse a whole request body ``{"filters": ...}``; ``None`` or ``{}`` match everything."""
    if document is None:
        return And()
    if not isinstance(document, Mapping):
        raise FilterError(f'document: expected an object with a "filters" key, got {_json_type(document)}')
    unknown = [key for key in document if key != "filters"]
    if unknown:
        raise FilterError(f'document: unknown key "{unknown[0]}"; expected "filters"')
    return parse_filters(document.get("filters"), entity)


def parse_filters(filters: object, entity: Entity) -> FilterExpr:
    """Parse the value of ``"filters"``: a list of filters (AND), a group object, or ``None``."""
    if filters is None:
        return And()
    if isinstance(filters, list):
        return _parse_list(filters, entity, "filters", 0)
    if isinstance(filters, Mapping):
        return _parse_group(filters, entity, "filters", 0)
    raise FilterError(f"filters: expected a list or an object, got {_json_type(filters)}")


def _parse_list(items: list[object], entity: Entity, where: str, depth: int) -> And:
    return And(tuple(_parse_item(item, entity, f"{where}[{i}]", depth) for i, item in enumerate(items)))


def _parse_item(item: object, entity: Entity, where: str, depth: int) -> FilterExpr:
    if not isinstance(item, Mapping):
        raise FilterError(f"{where}: expected a filter object, got {_json_type(item)}")
    if all(key in GROUP_KEYS for key in item):
        return _parse_group(item, entity, where, depth + 1)
    return _parse_condition(item, entity, where)


def _parse_group(group: Mapping[object, object], entity: Entity, where: str, depth: int) -> FilterExpr:
    if depth > MAX_DEPTH:
        raise FilterError(f"{where}: groups nest at most {MAX_DEPTH} deep")
    clauses: list[FilterExpr] = []
    for key, items in group.items():
        at = f"{where}.{key}"
        if key not in GROUP_KEYS:
            raise FilterError(f'{where}: unknown key "{key}"; expected one of and, or, not')
        if key == "not":
            clauses.append(Not(_parse_not(items, entity, at, depth)))
            continue
        if not isinstance(items, list):
            raise FilterError(f"{at}: expected a list of filters, got {_json_type(items)}")
        parsed = _parse_list(items, entity, at, depth)
        # An empty list does not filter, as in the original.
        clauses.extend(parsed.filters if key == "and" or not items else [Or(parsed.filters)])
    return clauses[0] if len(clauses) == 1 else And(tuple(clauses))


def _parse_not(items: object, entity: Entity, where: str, depth: int) -> FilterExpr:
    if isinstance(items, Mapping):
        return _parse_item(items, entity, where, depth)
    if not isinstance(items, list):
        raise FilterError(f"{where}: expected a list of one filter, got {_json_type(items)}")
    if len(items) != 1:
        raise FilterError(f"{where}: takes exactly one filter, got {len(items)}")
    return _parse_item(items[0], entity, f"{where}[0]", depth)


def _parse_condition(item: Mapping[object, object], entity: Entity, where: str) -> FilterExpr:
    unknown = [key for key in item if key not in FILTER_KEYS]
    if unknown:
        raise FilterError(f'{where}: unknown key "{unknown[0]}"; expected one of {", ".join(FILTER_KEYS)}')
    operator = _parse_operator(item.get("operator"), f"{where}.operator")
    column = item.get("column")
    if not isinstance(column, str):
        raise FilterError(f"{where}.column: required, a column name; got {_json_type(column)}")
    path = _parse_field(item.get("field"), f"{where}.field")
    relations = RELATIONS[entity]
    if column in relations:
        return _related(column, relations[column], path, operator, item, where)
    kind = _column_kind(column, entity, f"{where}.column", with_relations=True)
    if path and kind is not K.JSON:
        raise FilterError(f'{where}.field: column "{column}" has no fields; only data and relationships do')
    return _condition(column, kind, path, operator, item, where)


def _related(
    relation: str,
    target: Entity,
    path: tuple[str, ...],
    operator: Operator,
    item: Mapping[object, object],
    where: str,
) -> FilterExpr:
    if not path:
        if operator not in (Operator.IS_NULL, Operator.IS_NOT_NULL) or item.get("value") is not None:
            raise FilterError(
                f'{where}.field: relationship "{relation}" needs a field naming a column of '
                f"{TABLE_NAMES[target]} (only is_null / is_not_null work without one)"
            )
        exists = Related(relation)
        return Not(exists) if operator is Operator.IS_NULL else exists
    column, rest = path[0], path[1:]
    kind = _column_kind(column, target, f"{where}.field", with_relations=False)
    if rest and kind is not K.JSON:
        raise FilterError(f'{where}.field: column "{column}" of {TABLE_NAMES[target]} has no fields')
    condition = _condition(column, kind, rest, operator, item, where)
    if not isinstance(condition, Condition):
        raise FilterError(f"{where}: unexpected filter on a relationship")  # unreachable: no nested relations
    return Related(relation, condition)


def _condition(
    column: str,
    kind: ColumnKind,
    path: tuple[str, ...],
    operator: Operator,
    item: Mapping[object, object],
    where: str,
) -> Condition:
    at = f"{where}.value"
    value = item.get("value")
    in_json = kind is K.JSON
    if operator in (Operator.IS_NULL, Operator.IS_NOT_NULL):
        if value is not None:
            raise FilterError(f'{at}: "{operator}" takes no value')
        return Condition(column, Operator.IS if operator is Operator.IS_NULL else Operator.IS_NOT, None, path)
    if operator in (Operator.EQ, Operator.NE) and value is None and "value" in item:
        return Condition(column, Operator.IS if operator is Operator.EQ else Operator.IS_NOT, None, path)
    if in_json and not path:
        return _whole_json_condition(column, operator, value, at)
    if operator in JSON_OPERATORS:
        if not in_json:
            raise FilterError(f'{where}.operator: "{operator}" needs the data column or a field inside it')
        return Condition(column, operator, _json_operand(operator, value, at), path)
    if operator in TEXT_OPERATORS and not (in_json or kind in TEXT_KINDS):
        raise FilterError(
            f'{where}.operator: "{operator}" needs a text column or a field of data, not {column}'
        )
    operand = _operand(kind, operator, value, at)
    if operator is Operator.ANY and not in_json:
        operator = Operator.IN
    return Condition(column, operator, operand, path)


def _whole_json_condition(column: str, operator: Operator, value: object, at: str) -> Condition:
    if operator is Operator.CONTAINS:
        operator = Operator.JSON_CONTAINS
    if operator not in JSON_OPERATORS | {Operator.ANY}:
        raise FilterError(
            f'{at.removesuffix(".value")}.field: "{operator}" compares a field of {column}; '
            "give a field, or use @>, <@, @?, @@, is_null"
        )
    if operator is Operator.ANY:
        return Condition(column, operator, _operand(K.JSON, operator, value, at))
    return Condition(column, operator, _json_operand(operator, value, at))


def _json_operand(operator: Operator, value: object, at: str) -> Value:
    if operator in (Operator.JSON_PATH_EXISTS, Operator.JSON_PATH_MATCH):
        return json_path_query(value, at, predicate=operator is Operator.JSON_PATH_MATCH)
    return json_document(value, at)


def _operand(kind: ColumnKind, operator: Operator, value: object, at: str) -> Value:
    if operator in LIST_OPERATORS:
        # "any" also takes one bare value; "in" insists on a list, as in the original.
        many = value if isinstance(value, list) or operator is not Operator.ANY else [value]
        values = list_of_one_type(many, operator, at)
        return tuple(coerce_column_value(kind, v, operator, at) for v in values)
    if isinstance(value, list | dict):
        raise FilterError(f'{at}: "{operator}" needs a single value, got {_json_type(value)}')
    if operator in TEXT_OPERATORS and not isinstance(value, str):
        raise FilterError(f'{at}: "{operator}" needs a string, got {_json_type(value)}')
    if operator in PATTERN_OPERATORS and _ends_with_escape(value):
        raise FilterError(f'{at}: "{operator}" pattern ends with an unfinished escape (\\)')
    if operator in (Operator.IS, Operator.IS_NOT):
        if value is not None and not isinstance(value, bool):
            raise FilterError(f'{at}: "{operator}" needs null, true or false, got {_json_type(value)}')
        if value is not None and kind not in (K.BOOL, K.JSON):
            raise FilterError(
                f'{at}: "{operator} {str(value).lower()}" needs a boolean column or a field of data'
            )
        return value
    if value is None:
        raise FilterError(f'{at}: "{operator}" needs a value, got null')
    return coerce_column_value(kind, value, operator, at)


def _parse_operator(raw: object, where: str) -> Operator:
    operator = OPERATOR_NAMES.get(raw) if isinstance(raw, str) else None
    if operator is None:
        shown = f'"{raw}"' if isinstance(raw, str) else _json_type(raw)
        raise FilterError(f"{where}: unknown operator {shown}; expected one of {', '.join(OPERATOR_NAMES)}")
    return operator


def _parse_field(raw: object, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, str):
        raise FilterError(f"{where}: expected a string like boefje__id, got {_json_type(raw)}")
    segments = tuple(raw.split("__"))
    for segment in segments:
        if not KEY_PATTERN.fullmatch(segment):
            raise FilterError(
                f'{where}: bad segment "{segment}" in "{raw}"; segments match {KEY_PATTERN.pattern}'
            )
    return segments


def _column_kind(column: str, entity: Entity, where: str, *, with_relations: bool) -> ColumnKind:
    kind = COLUMNS[entity].get(column)
    if kind is None:
        names = [*COLUMNS[entity], *(RELATIONS[entity] if with_relations else ())]
        table = TABLE_NAMES[entity]
        raise FilterError(
            f'{where}: unknown column "{column}" for {table}; expected one of {", ".join(names)}'
        )
    return kind


def _ends_with_escape(pattern: object) -> bool:
    assert isinstance(pattern, str)
    return (len(pattern) - len(pattern.rstrip("\\"))) % 2 == 1


def _json_type(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )
