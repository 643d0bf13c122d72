"""Commands that only look never create, migrate or write the database, find it from any directory, and work
with read-only access to it (an operator with group read on /var/lib/katsched).

CI runs as root, whom chmod does not stop: there the commands run as `nobody` through setpriv."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from katsched.config import load_settings
from katsched.store.engine import build_engine
from katsched.store.migrate import head_revision, upgrade
from tests.conftest import scratch_postgres

pytestmark = pytest.mark.integration

DNS = '{"boefje": {"id": "dns-records"}, "input_ooi": "Hostname|internet|example.com", "organization": "o1"}'
LOOKING = [("queue", "ls"), ("queue", "peek", "-s", "boefje"), ("queue", "stats"), ("status", "--once")]


def as_unprivileged(command: list[str]) -> list[str]:
    """`command` as a user without rights to the files (nobody) when we are root; as is otherwise."""
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root without setpriv (util-linux): cannot drop privileges")
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command]


def cli(*args: str, cwd: Path, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "katsched", *args]
    return subprocess.run(
        as_unprivileged(command) if unprivileged else command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120", "HOME": str(cwd)},
    )


@pytest.fixture
def world_readable() -> Iterator[Path]:
    """A directory outside root's 0700 pytest tree, so that `nobody` can reach it."""
    path = Path(tempfile.mkdtemp(prefix="katsched-ro-"))
    path.chmod(0o755)
    yield path
    for inside in path.rglob("*"):
        inside.chmod(0o755 if inside.is_dir() else 0o644)
    shutil.rmtree(path)


def push_one(config: Path, cwd: Path) -> str:
    """Push a task through the CLI (creating and migrating the database); its id."""
    pushed = cli(
        "queue", "push", "-s", "boefje", "-o", "o1", "--data", DNS, "--json", "-c", str(config), cwd=cwd
    )
    assert pushed.returncode == 0, pushed.stderr
    return str(json.loads(pushed.stdout)["id"])


def fingerprint(directory: Path) -> dict[str, tuple[str, int]]:
    return {
        item.name: (hashlib.sha256(item.read_bytes()).hexdigest(), item.stat().st_mtime_ns)
        for item in sorted(directory.iterdir())
    }


def test_a_command_that_writes_closes_the_database_when_it_ends(tmp_path: Path) -> None:
    """The last close of a SQLite writer folds the -wal file back into the database: none is left behind,
    although the commands that answer once exit without a final garbage collection (cli/__init__.py)."""
    config = tmp_path / "config.toml"
    config.write_text('[database]\nurl = "sqlite:///katsched.db"\n')
    for args in [("queue", "pop", "-s", "boefje"), ("queue", "purge", "-s", "boefje", "--yes")]:
        push_one(config, cwd=tmp_path)
        assert sorted(item.name for item in tmp_path.iterdir()) == ["config.toml", "katsched.db"]
        result = cli(*args, "--config", str(config), cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        assert sorted(item.name for item in tmp_path.iterdir()) == ["config.toml", "katsched.db"], args


def test_no_database_is_named_by_its_absolute_path_and_not_created(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "etc" / "config.toml").write_text('[database]\nurl = "sqlite:///data/katsched.db"\n')
    config = str(tmp_path / "etc" / "config.toml")
    for args in [*LOOKING, ("tasks", "show", "abcd")]:
        result = cli(*args, "--config", config, cwd=tmp_path / "elsewhere")
        assert result.returncode == 7, (args, result.stderr)
        assert result.stderr == (
            f"katsched: error: no database at {tmp_path / 'etc' / 'data' / 'katsched.db'}: start the daemon "
            "or run `katsched db upgrade`\n"
        )
    assert not (tmp_path / "etc" / "data").exists()


def test_a_config_in_another_directory_names_one_database_for_every_working_directory(tmp_path: Path) -> None:
    for name in ("etc", "a", "b"):
        (tmp_path / name).mkdir()
    config = tmp_path / "etc" / "config.toml"
    config.write_text('[database]\nurl = "sqlite:///katsched.db"\n')
    task_id = push_one(config, cwd=tmp_path / "a")
    listed = cli("queue", "ls", "--json", "--config", str(config), cwd=tmp_path / "b")
    assert json.loads(listed.stdout)["results"][0]["id"] == task_id
    assert sorted(p.name for p in tmp_path.rglob("katsched.db")) == ["katsched.db"]
    assert (tmp_path / "etc" / "katsched.db").exists()


def test_looking_works_on_a_read_only_database_and_leaves_it_untouched(world_readable: Path) -> None:
    config = world_readable / "config.toml"
    config.write_text('[database]\nurl = "sqlite:///state/katsched.db"\n')
    task_id = push_one(config, cwd=world_readable)
    state = world_readable / "state"
    for item in state.iterdir():
        item.chmod(0o444)
    state.chmod(0o555)
    before = fingerprint(state)
    # `status --once` exits 1 without a live daemon (for monitoring scripts); `status --json` answers anyway.
    for args in [*LOOKING[:-1], ("status", "--json"), ("tasks", "show", task_id[:8])]:
        result = cli(*args, "--config", str(config), cwd=world_readable, unprivileged=True)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr
    listed = cli("queue", "ls", "--json", "--config", str(config), cwd=world_readable, unprivileged=True)
    assert [task["id"] for task in json.loads(listed.stdout)["results"]] == [task_id]
    assert fingerprint(state) == before  # no -wal, no -shm, not a byte changed
    refused = cli(
        "queue", "pop", "-s", "boefje", "--config", str(config), cwd=world_readable, unprivileged=True
    )
    assert refused.returncode == 7 and len(refused.stderr.splitlines()) == 1, refused.stderr


def test_an_old_schema_asks_for_db_upgrade_and_is_not_migrated(tmp_path: Path) -> None:
    database = tmp_path / "katsched.db"
    engine = build_engine(f"sqlite:///{database}")
    upgrade(engine, "0004")
    engine.dispose()
    (tmp_path / "config.toml").write_text(f'[database]\nurl = "sqlite:///{database}"\n')
    for args in LOOKING:
        result = cli(*args, "--config", str(tmp_path / "config.toml"), cwd=tmp_path)
        assert result.returncode == 7
        assert result.stderr == (
            f"katsched: error: database at {database} needs `katsched db upgrade` (is at revision 0004, "
            f"not {head_revision()})\n"
        )
    engine = build_engine(f"sqlite:///{database}")
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004"
    engine.dispose()


@pytest.mark.postgres
def test_a_postgres_schema_behind_or_absent_asks_for_db_upgrade_and_is_not_migrated(tmp_path: Path) -> None:
    with scratch_postgres("katsched_ro") as url:
        where = make_url(url).render_as_string(hide_password=True)
        config = tmp_path / "config.toml"
        config.write_text(f'[database]\nurl = "{url}"\n')
        empty = cli("queue", "ls", "--config", str(config), cwd=tmp_path)
        assert (empty.returncode, empty.stderr) == (
            7,
            f"katsched: error: database at {where} needs `katsched db upgrade` (has no katsched schema, "
            f"not {head_revision()})\n",
        )
        engine = build_engine(url)
        upgrade(engine, "0004")
        for args in LOOKING:
            result = cli(*args, "--config", str(config), cwd=tmp_path)
            assert (result.returncode, result.stderr) == (
                7,
                f"katsched: error: database at {where} needs `katsched db upgrade` (is at revision 0004, "
                f"not {head_revision()})\n",
            )
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0004"
        engine.dispose()


def test_the_read_only_engine_refuses_writes(database_config: Path) -> None:
    from katsched.cli.common import open_read_only

    engine = open_read_only(load_settings(database_config))
    try:
        with pytest.raises(Exception, match=r"read-only|readonly"), engine.begin() as connection:
            connection.execute(text("DELETE FROM tasks"))
    finally:
        engine.dispose()


@pytest.fixture
def config_file(database_config: Path) -> Path:
    return database_config
