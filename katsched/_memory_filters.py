"""A filter tree (`katsched.core.filters`) evaluated in Python, for the in-memory queue and schedules.

SQL's three-valued logic is kept: a comparison with a NULL or missing value is unknown (None), AND/OR combine
unknowns as SQL does, NOT is the complement of "true" (as `katsched.store.filters` compiles it), and a row
matches only when the whole tree is true. A value inside ``data`` is read as the type of the filter's value,
as in SQL: a number only from a JSON number, a boolean only from a JSON boolean, text from a string, a
number's digits or ``true``/``false`` (an object or array read as text is unknown here).

Supported: ``== != > < >= <=``, ``is`` / ``is_not`` (null, true, false; so ``is_null`` / ``is_not_null``),
``in``, ``not_in`` (and ``any`` on a plain column, which the parser makes ``in``), ``like``, ``not_like``,
``ilike``, ``not_ilike``, ``contains`` and ``starts_with`` on text, and relationships (``schedule`` /
``tasks``). Not supported, refused with `FilterError` before any row is read: ``match``, ``@>``, ``<@``,
``@?``, ``@@`` and ``any`` or ``contains`` on the whole ``data`` column or a field of it.
"""

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from katsched.core.filters import And, Condition, FilterExpr, Not, Operator, Or, Related
from katsched.core.models import Schedule, Task
from katsched.errors import FilterError

Row = Task | Schedule
Truth = bool | None  # None: unknown, as SQL's NULL
RelatedRows = Callable[[str, Row], Iterable[Row]]  # (relation, row) -> the rows it reaches

UNSUPPORTED = frozenset(
    {
        Operator.MATCH,
        Operator.JSON_CONTAINS,
        Operator.JSON_CONTAINED_BY,
        Operator.JSON_PATH_EXISTS,
        Operator.JSON_PATH_MATCH,
        Operator.ANY,
    }
)
TEXT_MATCHES = frozenset(
    {Operator.LIKE, Operator.NOT_LIKE, Operator.ILIKE, Operator.NOT_ILIKE, Operator.CONTAINS}
    | {Operator.STARTS_WITH}
)

_COMPARE: Mapping[Operator, Callable[[Any, Any], bool]] = {
    Operator.EQ: operator.eq,
    Operator.NE: operator.ne,
    Operator.GT: operator.gt,
    Operator.LT: operator.lt,
    Operator.GTE: operator.ge,
    Operator.LTE: operator.le,
    Operator.IN: lambda left, values: left in values,
    Operator.NOT_IN: lambda left, values: left not in values,
}


def check_supported(expr: FilterExpr) -> None:
    """Raise `FilterError` naming the first operator the in-memory stores cannot evaluate."""
    if isinstance(expr, And | Or):
        for item in expr.filters:
            check_supported(item)
    elif isinstance(expr, Not):
        check_supported(expr.filter)
    elif isinstance(expr, Related):
        if expr.condition is not None:
            check_supported(expr.condition)
    elif expr.operator in UNSUPPORTED:
        raise FilterError(
            f'filter operator "{expr.operator}" on column {expr.column} is not supported by the in-memory '
            "store (katsched.testing); it runs on SQLite and PostgreSQL only"
        )


def matches(expr: FilterExpr, row: Row, related: RelatedRows) -> bool:
    """Whether `row` passes the filter (unknown does not pass)."""
    return _evaluate(expr, row, related) is True


def _evaluate(expr: FilterExpr, row: Row, related: RelatedRows) -> Truth:
    if isinstance(expr, And):
        return _all(_evaluate(item, row, related) for item in expr.filters)
    if isinstance(expr, Or):
        return _any(_evaluate(item, row, related) for item in expr.filters)
    if isinstance(expr, Not):
        return _evaluate(expr.filter, row, related) is not True
    if isinstance(expr, Related):
        condition = expr.condition
        reached = related(expr.relation, row)
        return any(condition is None or _condition(condition, other) is True for other in reached)
    return _condition(expr, row)


def _all(truths: Iterable[Truth]) -> Truth:
    result: Truth = True
    for truth in truths:
        if truth is False:
            return False
        if truth is None:
            result = None
    return result


def _any(truths: Iterable[Truth]) -> Truth:
    result: Truth = False
    for truth in truths:
        if truth is True:
            return True
        if truth is None:
            result = None
    return result


def _condition(condition: Condition, row: Row) -> Truth:
    op, value = condition.operator, condition.value
    left = getattr(row, condition.column)
    if condition.path:
        left = _json_as(_at_path(left, condition.path), value)
    if op is Operator.IS:
        return left is value if value is None else (left is not None and left == value)
    if op is Operator.IS_NOT:
        return left is not value if value is None else (left is None or left != value)
    if left is None:
        return None
    if op in _COMPARE:
        return _COMPARE[op](left, value)
    if op in TEXT_MATCHES:
        return _text_operator(op, str(left), str(value))
    check_supported(condition)  # raises
    raise FilterError(f'filter operator "{op}" cannot be evaluated in memory')


def _at_path(document: object, path: tuple[str, ...]) -> object:
    for key in path:
        if not isinstance(document, dict):
            return None
        document = document.get(key, None)
    return document


def _json_as(found: object, value: object) -> object:
    """The JSON value at a path read as the filter value's type (the first of a list): None when it is not."""
    sample = value[0] if isinstance(value, tuple) and value else value
    if found is None or isinstance(found, dict | list):
        return None
    if isinstance(sample, bool):
        return found if isinstance(found, bool) else None
    if isinstance(sample, int | float):
        return found if isinstance(found, int | float) and not isinstance(found, bool) else None
    if isinstance(found, bool):
        return "true" if found else "false"
    return str(found)


def _text_operator(op: Operator, text: str, pattern: str) -> bool:
    if op is Operator.CONTAINS:
        return pattern in text
    if op is Operator.STARTS_WITH:
        return text.startswith(pattern)
    flags = re.ASCII | re.IGNORECASE if op in (Operator.ILIKE, Operator.NOT_ILIKE) else 0
    found = re.fullmatch(like_to_regex(pattern), text, flags | re.DOTALL) is not None
    return found if op in (Operator.LIKE, Operator.ILIKE) else not found


def like_to_regex(pattern: str) -> str:
    """A LIKE pattern (``%``, ``_``, ``\\`` escapes) as a regular expression."""
    parts: list[str] = []
    escaped = False
    for char in pattern:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return "".join(parts)
