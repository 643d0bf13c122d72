"""The migrations and the table definitions describe the same schema, and every migration goes down and up."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, func, select, text

from katsched.store.migrate import MIGRATIONS, current_revision, head_revision, upgrade
from katsched.store.plugins_seen import SqlSeenPlugins
from katsched.store.tables import metadata, plugins_seen, task_events
from tests.world import ORG


def test_the_migrated_schema_matches_the_tables(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []
    assert current_revision(engine) == head_revision()


def test_every_migration_goes_down_to_nothing_and_back(tmp_path: Path) -> None:
    from alembic import command

    from katsched.store.migrate import _config

    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    command.downgrade(_config(engine), "base")
    with engine.connect() as connection:
        names = {
            row[0] for row in connection.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
        }
    assert names <= {"alembic_version"}
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_history_rows_come_from_the_database_trigger(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO tasks (id, scheduler_id, organisation, priority, status, type, data, created_at,"
                " modified_at) VALUES (:id, 'report', 'org1', 5, 'queued', 'report', '{}', :at, :at)"
            ),
            {"id": "0" * 32, "at": "2026-01-01 00:00:00"},
        )
        connection.execute(
            text("UPDATE tasks SET status = 'dispatched', modified_at = '2026-01-01 00:01:00'")
        )
        connection.execute(text("UPDATE tasks SET priority = 7"))
        statuses = (
            connection.execute(text("SELECT status FROM task_events ORDER BY changed_at")).scalars().all()
        )
    assert statuses == ["queued", "dispatched"]


def test_revisions_read_without_alembic_agree_with_alembic(tmp_path: Path) -> None:
    from alembic.script import ScriptDirectory

    from katsched.store.migrate import MIGRATIONS, revisions

    scripts = ScriptDirectory(str(MIGRATIONS))
    known, head = revisions()
    assert head == head_revision() == scripts.get_current_head()
    assert known == {script.revision for script in scripts.walk_revisions()}
    assert current_revision(create_engine(f"sqlite:///{tmp_path / 'empty.db'}")) is None


def test_migration_0002_goes_down_and_up(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the shared PostgreSQL database stays at head for the other tests")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    command.downgrade(config, "0001")
    with engine.connect() as connection:
        assert not engine.dialect.has_table(connection, "plugins_seen")
    upgrade(engine)
    SqlSeenPlugins(engine).mark_seen(ORG, ["a"], datetime(2026, 1, 1, tzinfo=UTC))
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(plugins_seen)).scalar_one() == 1
        assert connection.execute(select(func.count()).select_from(task_events)).scalar_one() == 0
