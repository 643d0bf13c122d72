"""The command table of `katsched` and the lazy-import rule (docs/architecture.md, "Lazy imports")."""

import subprocess
import sys
from pathlib import Path

import pytest

from katsched.cli import COMMANDS, ONE_ANSWER, answers_once, load_command

HEAVY = (
    "sqlalchemy",
    "alembic",
    "fastapi",
    "uvicorn",
    "pika",
    "rich.live",
    "apscheduler",
    "httpx",
    "pydantic",
)


def imported_modules(*args: str, cwd: Path) -> set[str]:
    """The modules `katsched ARGS` imports, from Python's own import log."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "katsched", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}


def heavy_among(modules: set[str], heavy: tuple[str, ...]) -> set[str]:
    return {name for name in modules if name.split(".")[0] in heavy or name in heavy}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_listed_help_line_is_the_commands_own(name: str) -> None:
    command = load_command(name)
    assert command.name == name
    assert (command.help or "").splitlines()[0] == COMMANDS[name][2]


def test_help_imports_no_heavy_module(tmp_path: Path) -> None:
    modules = imported_modules("--help", cwd=tmp_path)
    assert "typer" in modules  # the log was read
    assert heavy_among(modules, HEAVY) == set()
    assert not any(name.startswith(("katsched.cli.", "katsched.store")) for name in modules)


def test_queue_ls_imports_only_what_it_uses(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(f'[database]\nurl = "sqlite:///{tmp_path / "k.db"}"\n')
    imported_modules("db", "upgrade", "--config", str(tmp_path / "config.toml"), cwd=tmp_path)  # a database
    modules = imported_modules("queue", "ls", "--config", str(tmp_path / "config.toml"), cwd=tmp_path)
    assert "katsched.store.queue" in modules  # the command ran (import_module itself is not logged)
    server_side = ("alembic", "fastapi", "uvicorn", "pika", "rich.live", "apscheduler", "httpx")
    assert heavy_among(modules, server_side) == set()


@pytest.mark.parametrize(
    ("args", "once"),
    [
        (["queue", "ls"], True),
        (["tasks", "show", "abcd"], True),
        (["status", "--once"], True),
        (["status", "--json"], True),
        (["status"], False),  # live until Ctrl-C
        (["status", "--", "--once"], False),
        (["daemon"], False),
        (["api"], False),
        (["db", "prune"], False),
        (["--version"], False),
        ([], False),
    ],
)
def test_only_commands_that_answer_once_pause_the_garbage_collector(args: list[str], once: bool) -> None:
    assert answers_once(args) is once
    assert set(COMMANDS) >= ONE_ANSWER


# `katsched ARGS`, then how many objects the exit finds frozen and whether the collector is on.
EXIT_PROBE = """
import atexit, gc, sys
atexit.register(lambda: print(gc.get_freeze_count(), gc.isenabled(), file=sys.stderr))
sys.argv = ["katsched", *sys.argv[1:]]
from katsched.cli import main
main()
"""


@pytest.mark.parametrize(("args", "frozen"), [(["queue", "--help"], True), (["--help"], False)])
def test_a_command_that_answers_once_exits_with_its_objects_frozen(
    args: list[str], frozen: bool, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", EXIT_PROBE, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    count, enabled = result.stderr.split()
    assert (int(count) > 10_000) is frozen  # the imports' objects, not a handful
    assert enabled == "True"  # paused for the command only
