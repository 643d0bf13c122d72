"""Task ids from the prefix a person typed, as git takes a short commit hash."""

import uuid

from sqlalchemy import Engine, select

from katsched.store.engine import read
from katsched.store.tables import tasks


def ids_with_prefix(engine: Engine, hex_digits: str, limit: int = 5) -> list[uuid.UUID]:
    """Up to `limit` ids whose 32 hex digits start with `hex_digits` (lower case, no dashes).

    A range on the primary key, so the index answers it: the prefix padded with 0s is the lowest id it can
    stand for and padded with fs the highest, on SQLite (hex text) and PostgreSQL (uuid) alike."""
    low, high = uuid.UUID(hex_digits.ljust(32, "0")), uuid.UUID(hex_digits.ljust(32, "f"))
    statement = select(tasks.c.id).where(tasks.c.id.between(low, high)).order_by(tasks.c.id).limit(limit)
    with read(engine) as connection:
        return list(connection.execute(statement).scalars())
