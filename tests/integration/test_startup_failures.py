"""`katsched daemon` and `katsched api` that cannot start say why in one line and exit 1 at once, before
READY: a port in use (held by a test socket), an unreadable database, a missing database driver."""

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_cli_read_only import as_unprivileged, world_readable  # noqa: F401 (fixture)
from tests.integration.test_daemon_lifecycle import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def start(
    command: str, config: Path, *, unprivileged: bool = False, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `katsched COMMAND --config CONFIG` with a notify socket, which must not hear READY. How fast it
    fails is measured by bench/cli.py (timing belongs in benchmarks, not in tests)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(config.parent / "notify"))
        os.chmod(config.parent / "notify", 0o777)
        notify.setblocking(False)
        argv = [sys.executable, "-m", "katsched", command, "--config", str(config)]
        environment = {**os.environ, "NOTIFY_SOCKET": str(config.parent / "notify"), **(env or {})}
        result = subprocess.run(
            as_unprivileged(argv) if unprivileged else argv,
            capture_output=True,
            text=True,
            timeout=60,
            env=environment,
            cwd=config.parent,
        )
        messages = []
        while True:
            try:
                messages.append(notify.recv(4096).decode())
            except BlockingIOError:
                break
    assert not any("READY=1" in message for message in messages), messages
    return result


def assert_one_line_failure(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "restart" not in result.stderr and "start_failed" not in result.stderr  # no retry: fatal at once
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line or "error:" in line]
    assert len(errors) == 1, result.stderr
    assert errors[0].endswith(message), result.stderr


@pytest.mark.parametrize("command", ["daemon", "api"])
def test_a_port_in_use(tmp_path: Path, held_port: int, command: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "k.db"}"\n[api]\nport = {held_port}\n')
    result = start(command, config)
    assert_one_line_failure(result, f"api: cannot listen on 127.0.0.1:{held_port}: address already in use")
    assert not (tmp_path / "k.db").exists()  # refused before the store was touched
    if command == "api":
        assert result.stderr == (
            f"katsched: error: api: cannot listen on 127.0.0.1:{held_port}: address already in use\n"
        )


@pytest.mark.parametrize("command", ["daemon", "api"])
def test_an_unreadable_database(world_readable: Path, command: str) -> None:  # noqa: F811
    database = world_readable / "k.db"
    database.write_bytes(b"")
    database.chmod(0o000)
    config = world_readable / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{database}"\n[api]\nport = {free_port()}\n')
    result = start(command, config, unprivileged=True)
    # The daemon first takes the file's daemon lock beside it: as `nobody` (when we are root) it cannot
    # create that file in the directory; otherwise the directory is ours and SQLite meets the database.
    if command == "daemon" and os.geteuid() == 0:
        lock = f"{database}.daemon.lock"
        assert_one_line_failure(result, f"cannot lock the database {database}: {lock}: Permission denied")
    else:
        assert_one_line_failure(result, "unable to open database file")


@pytest.mark.parametrize("command", ["daemon", "api"])
def test_a_missing_database_driver(tmp_path: Path, command: str) -> None:
    fake = tmp_path / "no-psycopg" / "psycopg"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
    )
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "postgresql://kat@127.0.0.1/katsched"\n[api]\nport = {free_port()}\n'
    )
    result = start(command, config, env={"PYTHONPATH": str(fake.parent)})
    assert_one_line_failure(
        result,
        "postgresql+psycopg URLs need the psycopg driver, which is not installed: install katsched with "
        "the postgres extra ('katsched[postgres]')",
    )
