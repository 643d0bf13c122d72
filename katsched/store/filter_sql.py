"""The dialect-specific SQL of the filter language: the one place where SQLite and PostgreSQL part ways.

Every helper returns a ``ByDialect``: both renderings are built up front and the compiler picks one, so the
statement keeps a single, cacheable set of bound parameters and ``ClauseAdapter`` can rewrite both. Nothing a
filter carries is rendered as SQL text: values, JSON paths and documents are all bound parameters.
"""

from typing import Any, Generic, TypeVar

from sqlalchemy import (
    Boolean,
    Float,
    Numeric,
    Text,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    true,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, JSONPATH, REGCONFIG
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import FromClause
from sqlalchemy.sql.visitors import InternalTraversal

from katsched.core.filter_values import JsonPathQuery
from katsched.store import filter_json

_T = TypeVar("_T")

# Full text search without stemming: closer to SQLite's substring match, and the same whatever the locale.
TEXT_SEARCH_CONFIG = "simple"


class ByDialect(ColumnElement[_T], Generic[_T]):
    """One expression for SQLite and one for PostgreSQL (also used to show a statement without an engine)."""

    inherit_cache = True
    # SQLAlchemy's protocol: a class-level list naming the children to copy, compare and cache.
    _traverse_internals: list[tuple[str, InternalTraversal]] = [  # noqa: RUF012
        ("sqlite", InternalTraversal.dp_clauseelement),
        ("postgresql", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, sqlite: ColumnElement[Any], postgresql: ColumnElement[_T]) -> None:
        self.sqlite = sqlite
        self.postgresql = postgresql
        self.type = postgresql.type

    @property
    def _from_objects(self) -> list[FromClause]:
        froms = [*self.sqlite._from_objects, *self.postgresql._from_objects]
        return list(dict.fromkeys(froms))


@compiles(ByDialect)
def _compile_default(element: ByDialect[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.postgresql, **kw)


@compiles(ByDialect, "sqlite")
def _compile_sqlite(element: ByDialect[Any], compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.sqlite, **kw)


# Scalars inside a JSON column. A value of another JSON type gives NULL, never a cast error.


def pg_at(document: ColumnElement[Any], path: tuple[str, ...]) -> ColumnElement[Any]:
    return document.op("#>", return_type=JSONB)(_pg_path(path)) if path else document


def _pg_path(path: tuple[str, ...]) -> ColumnElement[Any]:
    return literal(list(path), ARRAY(Text))


def _pg_text(document: ColumnElement[Any], path: tuple[str, ...]) -> ColumnElement[str]:
    return document.op("#>>", return_type=Text)(_pg_path(path))


def _pg_typed(
    document: ColumnElement[Any], path: tuple[str, ...], json_type: str, to: Any
) -> ColumnElement[Any]:
    return case((func.jsonb_typeof(pg_at(document, path)) == json_type, cast(_pg_text(document, path), to)))


def json_text(document: ColumnElement[Any], path: tuple[str, ...]) -> ColumnElement[str]:
    """The text form: a string's value, a number's digits, ``true``/``false``; null or absent is NULL."""
    source = filter_json.Source.at(document, path)
    # A simple CASE evaluates json_type once: this sits on the pop path (the workers filter on boefje ids).
    booleans = {"true": literal("true"), "false": literal("false")}
    sqlite = case(booleans, value=source.json_type(), else_=cast(source.extract(), Text))
    return ByDialect(sqlite, _pg_text(document, path))


def json_number(document: ColumnElement[Any], path: tuple[str, ...]) -> ColumnElement[float]:
    source = filter_json.Source.at(document, path)
    sqlite = case((source.json_type().in_(["integer", "real"]), source.extract(Float())))
    postgresql = _pg_typed(document, path, "number", Numeric())
    return ByDialect(sqlite, type_coerce(postgresql, Float()))


def json_bool(document: ColumnElement[Any], path: tuple[str, ...]) -> ColumnElement[bool]:
    kind = filter_json.Source.at(document, path).json_type()
    sqlite = case((kind == "true", true()), (kind == "false", false()))
    return ByDialect(sqlite, _pg_typed(document, path, "boolean", Boolean()))


# Text patterns. Our LIKE is PostgreSQL's: case-sensitive, backslash escapes. SQLite's LIKE ignores case, so
# there the pattern is translated to GLOB, which does not.


def like(expression: ColumnElement[Any], pattern: str) -> ColumnElement[bool]:
    sqlite = expression.op("GLOB", is_comparison=True)(literal(like_to_glob(pattern)))
    return ByDialect(sqlite, expression.like(pattern))


def ilike(expression: ColumnElement[Any], pattern: str) -> ColumnElement[bool]:
    return ByDialect(expression.ilike(pattern, escape="\\"), expression.ilike(pattern))


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def like_to_glob(pattern: str) -> str:
    glob: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            glob.append(_glob_literal(next(chars, "\\")))
        else:
            glob.append({"%": "*", "_": "?"}.get(char) or _glob_literal(char))
    return "".join(glob)


def _glob_literal(char: str) -> str:
    return f"[{char}]" if char in "*?[" else char


def text_match(expression: ColumnElement[Any], words: str) -> ColumnElement[bool]:
    """Every word of ``words``, in any order: whole words on PostgreSQL (full text search), and on SQLite,
    which has no full text search outside FTS tables, substrings ignoring case."""
    config = cast(literal(TEXT_SEARCH_CONFIG), REGCONFIG)
    postgresql = func.to_tsvector(config, expression).op("@@", return_type=Boolean)(
        func.plainto_tsquery(config, literal(words))
    )
    found = [expression.ilike(f"%{escape_like(word)}%", escape="\\") for word in words.split()]
    # plainto_tsquery of no words matches nothing; so must SQLite.
    return ByDialect(and_(*found) if found else false(), postgresql)


# JSON documents: containment and the jsonpath subset.


def json_contains(
    document: ColumnElement[Any], path: tuple[str, ...], value: object, *, contained_by: bool = False
) -> ColumnElement[bool]:
    """``@>`` (or ``<@``) with PostgreSQL's semantics, including "an array contains a bare scalar"."""
    source = filter_json.Source.at(document, path)
    sqlite = (filter_json.contained_by if contained_by else filter_json.contains)(source, value, top=True)
    postgresql = pg_at(document, path).op("<@" if contained_by else "@>", return_type=Boolean)(
        literal(value, JSONB)
    )
    return ByDialect(sqlite, postgresql)


def json_path(
    document: ColumnElement[Any], path: tuple[str, ...], query: JsonPathQuery
) -> ColumnElement[bool]:
    """``@?`` / ``@@`` with a ``JsonPathQuery``: PostgreSQL gets its canonical text, SQLite the same test."""
    sqlite = filter_json.path_query(document, path, query)
    operator = "@@" if query.kind == "match" else "@?"
    postgresql = pg_at(document, path).op(operator, return_type=Boolean)(
        cast(literal(query.render()), JSONPATH)
    )
    return ByDialect(sqlite, postgresql)
