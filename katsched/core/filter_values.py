"""The values of the filter language: coercion to a column's type, JSON documents, and the jsonpath subset.

Typed columns get values of their own type: UUID strings for ids, ISO strings for ``*_at`` (naive means UTC),
``"25"`` for an integer, ``"true"`` for a boolean, any case of a status. Inside ``data`` the type of the value
picks the comparison: strings compare with the text form of the JSON value, numbers with JSON numbers only,
booleans with JSON booleans only; nothing is cast from an incompatible type, so no row can make SQL fail.

``@?`` and ``@@`` take a subset of SQL/JSON path that both databases can answer alike:
``$.key.key[*]`` (keys as identifiers or ``"quoted"``), then for ``@@`` a comparison ``== != < <= > >=``
with a JSON literal, and for ``@?`` optionally a filter ``? (@ <op> <literal>)``.
"""

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal, TypeAlias

from katsched.core.models import TaskStatus
from katsched.errors import FilterError

MAX_LIST = 1000
MAX_DOCUMENT_NODES = 256
MAX_DOCUMENT_DEPTH = 8

JsonScalar: TypeAlias = str | int | float | bool | None


class ColumnKind(StrEnum):
    TEXT = "text"
    STATUS = "status"
    UUID = "uuid"
    INT = "int"
    BOOL = "bool"
    DATETIME = "datetime"
    JSON = "json"


TEXT_KINDS = frozenset({ColumnKind.TEXT, ColumnKind.STATUS})
EQUALITY = frozenset({"==", "!=", "in", "not_in", "any"})


@dataclass(frozen=True)
class JsonLiteral:
    """A JSON document given in a filter, kept as canonical text so the tree stays immutable."""

    text: str

    @classmethod
    def of(cls, value: object) -> "JsonLiteral":
        return cls(json.dumps(value, sort_keys=True, separators=(",", ":")))

    @property
    def value(self) -> object:
        return json.loads(self.text)


@dataclass(frozen=True)
class JsonPathQuery:
    """``$.keys[*]`` [op literal]: for ``@@`` a comparison, for ``@?`` existence or a filter on the items."""

    kind: Literal["exists", "match"]
    keys: tuple[str, ...]
    unwrap: bool = False
    comparison: str | None = None
    operand: JsonScalar = None

    def render(self) -> str:
        """The canonical jsonpath text (every key quoted), as PostgreSQL receives it."""
        path = "$" + "".join(f'."{key}"' for key in self.keys) + ("[*]" if self.unwrap else "")
        if self.comparison is None:
            return path
        condition = f"{self.comparison} {json.dumps(self.operand)}"
        return f"{path} {condition}" if self.kind == "match" else f"{path} ? (@ {condition})"


Scalar: TypeAlias = str | int | float | bool | datetime | uuid.UUID
Value: TypeAlias = Scalar | JsonLiteral | JsonPathQuery | tuple[Scalar, ...] | None


def list_of_one_type(value: object, operator: str, at: str) -> list[str | int | float | bool]:
    """A non-empty list of scalars that share one type (ints and floats count as one: numbers)."""
    message = f'{at}: "{operator}" needs a non-empty list of values of one type'
    if not isinstance(value, list) or not value:
        raise FilterError(message)
    if len(value) > MAX_LIST:
        raise FilterError(f"{message}, at most {MAX_LIST}; got {len(value)}")
    kinds = {_scalar_kind(item) for item in value}
    if len(kinds) != 1 or None in kinds:
        raise FilterError(message)
    return list(value)


def coerce_column_value(kind: ColumnKind, value: object, operator: str, at: str) -> Scalar:
    """``value`` as the Python type of the column (or, inside ``data``, a finite JSON scalar)."""
    if kind is ColumnKind.JSON:
        if _scalar_kind(value) is None:
            raise FilterError(f"{at}: expected a string, number or boolean, got {value!r}")
        assert isinstance(value, str | int | float)  # bool is an int
        return value
    if kind is ColumnKind.STATUS:
        return _status(value, operator, at)
    coerce = _COERCERS[kind]
    try:
        return coerce(value)
    except (TypeError, ValueError, KeyError, OverflowError):
        raise FilterError(f"{at}: {value!r} is not {_EXPECTED[kind]}") from None


def json_value(value: object, at: str, depth: int = 0, budget: list[int] | None = None) -> object:
    """``value`` if it is plain JSON of bounded size: objects with string keys, lists, finite scalars."""
    budget = budget if budget is not None else [MAX_DOCUMENT_NODES]
    budget[0] -= 1
    if depth > MAX_DOCUMENT_DEPTH or budget[0] < 0:
        raise FilterError(
            f"{at}: JSON document too large (depth {MAX_DOCUMENT_DEPTH}, {MAX_DOCUMENT_NODES} values)"
        )
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise FilterError(f"{at}: JSON object keys must be strings")
        for item in value.values():
            json_value(item, at, depth + 1, budget)
    elif isinstance(value, list):
        for item in value:
            json_value(item, at, depth + 1, budget)
    elif value is not None and _scalar_kind(value) is None:
        raise FilterError(f"{at}: not a JSON value: {value!r}")
    return value


def json_document(value: object, at: str) -> JsonLiteral:
    """The document of ``@>`` / ``<@``: JSON, or (as in the original) a string holding an object or array."""
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            value = json.loads(value)
        except ValueError:
            raise FilterError(f"{at}: not valid JSON: {value!r}") from None
    return JsonLiteral.of(json_value(value, at))


_PATH = re.compile(
    r'\s*\$(?P<keys>(?:\.(?:[A-Za-z_][A-Za-z0-9_]*|"[A-Za-z0-9_\-]+"))*)(?P<unwrap>\[\*\])?\s*'
)
_KEY = re.compile(r'\.(?:([A-Za-z_][A-Za-z0-9_]*)|"([A-Za-z0-9_\-]+)")')
_COMPARISON = r"(?P<op>==|!=|<>|<=|>=|<|>)\s*(?P<literal>.+?)"
_MATCH = re.compile(rf"{_COMPARISON}\s*")
_FILTER = re.compile(rf"\?\s*\(\s*@\s*{_COMPARISON}\s*\)\s*")
_SUBSET = '$.key.key[*] then, for @@, "<op> <literal>" and for @?, optionally "? (@ <op> <literal>)"'


def json_path_query(value: object, at: str, *, predicate: bool) -> JsonPathQuery:
    operator = "@@" if predicate else "@?"
    if not isinstance(value, str):
        raise FilterError(f'{at}: "{operator}" needs a jsonpath string, got {value!r}')
    path = _PATH.match(value)
    rest = value[path.end() :] if path else ""
    found = (_MATCH if predicate else _FILTER).fullmatch(rest) if rest or predicate else None
    if path is None or ((rest or predicate) and found is None):
        raise FilterError(f'{at}: unsupported jsonpath {value!r} for "{operator}"; katsched takes {_SUBSET}')
    keys = tuple(a or b for a, b in _KEY.findall(path.group("keys")))
    query = JsonPathQuery("match" if predicate else "exists", keys, bool(path.group("unwrap")))
    if found is None:
        return query
    comparison = "!=" if found.group("op") == "<>" else found.group("op")
    return JsonPathQuery(query.kind, keys, query.unwrap, comparison, _path_literal(found, comparison, at))


def _path_literal(found: re.Match[str], comparison: str, at: str) -> JsonScalar:
    try:
        literal = json.loads(found.group("literal"))
    except ValueError:
        literal = ...
    if literal is ... or (literal is not None and _scalar_kind(literal) is None):
        raise FilterError(
            f"{at}: jsonpath literal {found.group('literal')!r} is not a JSON string, number or bool"
        )
    if literal is None and comparison not in ("==", "!="):
        raise FilterError(f'{at}: jsonpath "{comparison} null" is never true; use == or !=')
    assert literal is None or isinstance(literal, str | int | float | bool)
    return literal


def _scalar_kind(value: object) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return "number"
    return "str" if isinstance(value, str) else None


def _status(value: object, operator: str, at: str) -> str:
    if not isinstance(value, str):
        raise FilterError(f"{at}: a status is a string, got {value!r}")
    status = value.lower()
    if operator in EQUALITY and status not in TaskStatus.__members__.values():
        names = ", ".join(s.value for s in TaskStatus)
        raise FilterError(f'{at}: unknown status "{value}"; expected one of {names}')
    return status


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError
    return value


def _uuid(value: object) -> uuid.UUID:
    return uuid.UUID(_text(value))


def _int(value: object) -> int | float:
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    text = _text(value).strip()
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else _finite(float(text))


def _finite(number: float) -> float:
    if not math.isfinite(number):
        raise ValueError
    return number


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1) and isinstance(value, int):
        return bool(value)
    return {"true": True, "false": False}[_text(value).lower()]


def _datetime(value: object) -> datetime:
    moment = datetime.fromisoformat(_text(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_COERCERS: Mapping[ColumnKind, Callable[[object], Scalar]] = {
    ColumnKind.TEXT: _text,
    ColumnKind.UUID: _uuid,
    ColumnKind.INT: _int,
    ColumnKind.BOOL: _bool,
    ColumnKind.DATETIME: _datetime,
}
_EXPECTED = {
    ColumnKind.TEXT: "a string",
    ColumnKind.UUID: "a UUID",
    ColumnKind.INT: "an integer",
    ColumnKind.BOOL: "a boolean",
    ColumnKind.DATETIME: "an ISO 8601 datetime",
}
