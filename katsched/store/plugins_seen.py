"""Which boefjes the new-plugins planner has enumerated objects for (the `SeenPlugins` port)."""

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Engine, Insert, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from katsched.store.engine import read, write
from katsched.store.tables import plugins_seen


class SqlSeenPlugins:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def seen(self, organisation_id: str) -> set[str]:
        statement = select(plugins_seen.c.plugin_id).where(plugins_seen.c.organisation == organisation_id)
        with read(self.engine) as connection:
            return {str(plugin_id) for plugin_id in connection.execute(statement).scalars()}

    def mark_seen(self, organisation_id: str, plugin_ids: Collection[str], at: datetime) -> None:
        """Record the plugins as seen; one seen before keeps its first `first_seen_at`."""
        if not plugin_ids:
            return
        rows = [
            {"organisation": organisation_id, "plugin_id": p, "first_seen_at": at} for p in set(plugin_ids)
        ]
        with write(self.engine) as connection:
            connection.execute(_insert_new(connection.dialect.name), rows)

    def forget(self, organisation_id: str, plugin_ids: Collection[str]) -> None:
        """Forget plugins (disabled or removed): enabling one again counts as new, as in the original."""
        if not plugin_ids:
            return
        statement = delete(plugins_seen).where(
            plugins_seen.c.organisation == organisation_id, plugins_seen.c.plugin_id.in_(set(plugin_ids))
        )
        with write(self.engine) as connection:
            connection.execute(statement)


def _insert_new(dialect_name: str) -> Insert:
    """An INSERT that skips rows already present (both dialects spell ON CONFLICT DO NOTHING alike)."""
    if dialect_name == "postgresql":
        return postgresql.insert(plugins_seen).on_conflict_do_nothing()
    return sqlite.insert(plugins_seen).on_conflict_do_nothing()


if TYPE_CHECKING:  # mypy proves that the adapter implements the port
    from katsched.core.ports import SeenPlugins

    def _implements_port(store: SqlSeenPlugins) -> SeenPlugins:
        return store
