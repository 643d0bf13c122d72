"""The hot path's statements, run on the driver's own cursor: compiled once, processed as SQLAlchemy would.

`Connection.execute` costs 15-80 µs a statement beyond what the database takes to run it: the compiled-cache
lookup, an execution context, event dispatch, a result object. On the runners' hot path (a pop's claim, the
statements of a single push) that was a fifth of the store's CPU. `fetch` keeps what matters of it, from
SQLAlchemy itself: the dialect's SQL and parameter style (compiled once per statement, dialect and set of
parameter names), the column types' bind and result processors (values are written and read exactly as
`Connection.execute` writes and reads them), a column's constant default where no value is given, and its
exception classes (a driver's error is raised as the `DBAPIError` SQLAlchemy would raise, a lost connection
invalidated), so callers and `engine.translated` cannot tell the two apart. What it leaves out: SQLAlchemy's
execution events do not see these statements, and a default computed at execution (a function, a sequence)
is refused when the statement is first compiled. It runs one statement with one set of parameters in the
caller's open transaction; several rows at once (SQLAlchemy's batched INSERT) stay with `Connection.execute`.
"""

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Insert, Select, Update
from sqlalchemy.sql.compiler import SQLCompiler

Processor = Callable[[Any], Any]
Statement = Insert | Update | Select[Any]


@dataclass(frozen=True)
class _Form:
    """A statement as compiled for one dialect and one set of parameter names."""

    compiled: SQLCompiler
    sql: str
    positions: tuple[str, ...] | None  # the parameters' order for a positional driver (SQLite's qmark)
    expanding: bool  # an IN of a list of values: the SQL is completed at each execution
    defaults: dict[str, Any]  # the columns' own values where none is given (an INSERT's `default=`)
    bind: dict[str, Processor]  # by the parameter's name in the SQL
    columns: tuple[str, ...]  # the names of the result's columns
    results: tuple[Processor | None, ...]


# Each statement's forms, by (dialect, parameter names). Held weakly: a statement built for one use (a claim
# whose filter cannot be cached) takes its forms with it.
_forms: "WeakKeyDictionary[Statement, dict[tuple[str, frozenset[str]], _Form]]" = WeakKeyDictionary()


def fetch(
    connection: Connection, statement: Statement, parameters: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Run `statement` with `parameters` in `connection`'s open transaction; the rows it returns (RETURNING
    or SELECT), each as {column name: value}, in order."""
    dialect = connection.dialect
    form = _form(statement, dialect, parameters)
    sql, arguments = _arguments(form, parameters)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, arguments)
        fetched = cursor.fetchall() if cursor.description else []
    except dialect.loaded_dbapi.Error as exc:
        raise _wrapped(connection, sql, arguments, exc, cursor) from exc
    finally:
        cursor.close()
    return [_row(form, row) for row in fetched]


def _row(form: _Form, row: tuple[Any, ...]) -> dict[str, Any]:
    values = [value if p is None else p(value) for p, value in zip(form.results, row, strict=True)]
    return dict(zip(form.columns, values, strict=True))


def fetch_batch(
    connection: Connection, statement: Statement, parameter_rows: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The rows `statement` returns for each set of parameters, run as `fetch` when there is one set, and
    through Connection.execute (SQLAlchemy's batched INSERT) when there are several."""
    if len(parameter_rows) == 1:
        return fetch(connection, statement, parameter_rows[0])
    return [dict(row._mapping) for row in connection.execute(statement, list(parameter_rows))]


def _arguments(form: _Form, parameters: Mapping[str, Any]) -> tuple[str, Any]:
    """The SQL and the driver's arguments for these parameters: the statement's own values added, an
    expanding IN expanded (its SQL is completed here), every value through its type's bind processor."""
    values: MutableMapping[str, Any]
    expanded: Mapping[str, Processor] = {}
    if not form.expanding:
        values = form.compiled.construct_params(parameters)  # a new mapping each time
        sql, positions = form.sql, form.positions
    else:
        state = form.compiled.construct_expanded_state(parameters)
        values, sql, expanded = dict(state.parameters), state.statement, state.processors
        positions = tuple(state.positiontup) if state.positiontup is not None else None
    for name, value in form.defaults.items():
        if name not in parameters:
            values[name] = value
    for name, process in (*form.bind.items(), *expanded.items()):
        if name in values:
            values[name] = process(values[name])
    return sql, values if positions is None else tuple(values[name] for name in positions)


def _form(statement: Statement, dialect: Dialect, parameters: Mapping[str, Any]) -> _Form:
    by_key = _forms.setdefault(statement, {})
    key = (dialect.name, frozenset(parameters))
    form = by_key.get(key)
    if form is None:
        form = by_key[key] = _compiled(statement, dialect, list(parameters))
    return form


def _compiled(statement: Statement, dialect: Dialect, names: list[str]) -> _Form:
    # An INSERT names the columns it is given (as Connection.execute compiles it for these parameters).
    compiled = statement.compile(dialect=dialect, column_keys=names)
    if not isinstance(compiled, SQLCompiler):
        raise TypeError(f"not a statement fetch() can run: {statement!r}")
    escaped = compiled.escaped_bind_names
    bind: dict[str, Processor] = {}
    for parameter, name in compiled.bind_names.items():
        process = parameter.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            bind[escaped.get(name, name)] = process
    prefetched = [(column, column.default) for column in compiled.insert_prefetch]
    prefetched += [(column, column.onupdate) for column in compiled.update_prefetch]
    defaults = {}
    for column, default in prefetched:
        if default is None or not default.is_scalar:  # a function of the execution: SQLAlchemy's to run
            raise TypeError(f"fetch() runs no default of column {column.key} that is not a constant")
        defaults[escaped.get(column.key, column.key)] = default.arg  # type: ignore[attr-defined]
    returned = list(getattr(statement, "exported_columns", ()))
    return _Form(
        compiled=compiled,
        sql=compiled.string,
        positions=tuple(compiled.positiontup) if compiled.positiontup is not None else None,
        expanding="POSTCOMPILE" in compiled.string,
        defaults=defaults,
        bind=bind,
        columns=tuple(column.name for column in returned),
        results=tuple(_result_processor(column.type, dialect) for column in returned),
    )


def _result_processor(kind: Any, dialect: Dialect) -> Processor | None:
    processor: Processor | None = kind.dialect_impl(dialect).result_processor(dialect, None)
    return processor


def _wrapped(connection: Connection, sql: str, arguments: Any, exc: Exception, cursor: Any) -> BaseException:
    """The driver's error as Connection.execute raises it; a lost connection is invalidated, as it would."""
    dialect = connection.dialect
    lost = dialect.is_disconnect(exc, connection.connection.dbapi_connection, cursor)  # type: ignore[arg-type]
    if lost:
        connection.invalidate(exc)
    return DBAPIError.instance(
        sql,
        arguments,
        exc,
        dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=dialect,
        ismulti=False,
    )
