from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from katsched.testing import FakeClock
from tests.conftest import DATABASES, migrated_engine
from tests.stores import Stores, memory_stores, sql_stores
from tests.world import World, sql_world


@pytest.fixture(params=["memory", *DATABASES])
def stores(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stores]:
    """The planners' store ports of each implementation: in memory, on a SQLite file, on PostgreSQL.
    A case that takes `stores` is a case of the one store contract suite."""
    if request.param == "memory":
        yield memory_stores(clock)
        return
    with migrated_engine(request.param, request, tmp_path_factory) as engine:
        yield sql_stores(engine, clock)


@pytest.fixture
def world_on_sql(engine: Engine, clock: FakeClock) -> World:
    """The planners on a real database (SQLite and PostgreSQL), for the cases about the database itself."""
    return sql_world(engine, clock)
