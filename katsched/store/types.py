"""Column types that behave the same on SQLite and PostgreSQL: the dialect-specific bits live here."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, ColumnElement, DateTime, Dialect, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine

# JSONB on PostgreSQL gives the filter language its @> and <@ operators; SQLite keeps JSON as text.
JsonDocument: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on SQLite (which has no time zones) as on PostgreSQL.

    SQLite stores the text form, which sorts chronologically as every value is UTC and has the same shape.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: katsched stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def hour_bucket(column: ColumnElement[datetime], dialect_name: str) -> ColumnElement[str]:
    """The start of the hour a timestamp falls in, as text that sorts chronologically."""
    if dialect_name == "sqlite":
        # UTCDateTime stores "YYYY-MM-DD HH:MM:SS.ffffff"; the first 13 characters are the hour.
        return func.substr(column, 1, 13)
    return func.to_char(func.date_trunc("hour", column), "YYYY-MM-DD HH24")
