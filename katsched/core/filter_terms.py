"""How big a filter is, in terms the databases must hold, and the cap on it.

SQLite refuses a statement whose expression tree is deeper than 1,000 (a long AND or OR is a deep tree),
which used to come back as 503 "try again later" although a retry can never succeed. A term is one
comparison the SQL holds: a condition counts one, except where it expands into one comparison per item
(``any`` three per value, ``match`` per word, ``@>`` / ``<@`` per value in the document). ``in`` stays one
``IN (…)`` however long its list (``filter_values.MAX_LIST`` bounds that). A boefje pop holds its filter
twice (the deduplication group's head is found with it too), which the cap leaves room for.
"""

import json

from katsched.core.filter_values import JsonLiteral
from katsched.core.filters import And, Condition, FilterExpr, Not, Operator, Or, Related
from katsched.errors import FilterError

MAX_TERMS = 200
ANY_WEIGHT = 3  # SQLite compares each value of `any` as a scalar and as an array member: three terms


def check_terms(expression: FilterExpr) -> FilterExpr:
    """`expression`, or FilterError when it holds more than MAX_TERMS terms."""
    terms = count_terms(expression)
    if terms > MAX_TERMS:
        raise FilterError(f"filters: {terms} terms, more than the {MAX_TERMS} one query may hold")
    return expression


def count_terms(expression: FilterExpr) -> int:
    if isinstance(expression, And | Or):
        return sum(count_terms(inner) for inner in expression.filters)
    if isinstance(expression, Not):
        return count_terms(expression.filter)
    if isinstance(expression, Related):
        return 1 + (_condition_terms(expression.condition) if expression.condition is not None else 0)
    return _condition_terms(expression)


def _condition_terms(condition: Condition) -> int:
    value = condition.value
    if condition.operator is Operator.ANY and isinstance(value, tuple):
        return ANY_WEIGHT * max(len(value), 1)
    if condition.operator is Operator.MATCH and isinstance(value, str):
        return max(len(value.split()), 1)
    if isinstance(value, JsonLiteral):
        return _scalars(json.loads(value.text))
    return 1


def _scalars(document: object) -> int:
    if isinstance(document, dict):
        return max(sum(_scalars(item) for item in document.values()), 1)
    if isinstance(document, list):
        return max(sum(_scalars(item) for item in document), 1)
    return 1
