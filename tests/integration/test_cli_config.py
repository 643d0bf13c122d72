"""`katsched config …` through the installed console script: exit codes, one-line errors, files written.

These run the real `main()`, so they need every CLI module to import; until the sibling command modules have
landed they fail at import time, not because of the config commands.
"""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from katsched._config_example import render_example

pytestmark = pytest.mark.integration

KATSCHED = Path(sys.executable).parent / "katsched"
REPO = Path(__file__).resolve().parents[2]


def katsched(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # A clean environment: no KATSCHED_CONFIG, and no mula settings that `from-env` would pick up.
    base = {key: os.environ[key] for key in ("PATH", "HOME", "LANG", "PYTHONPATH") if key in os.environ}
    return subprocess.run(
        [str(KATSCHED), "config", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_check_show_round_trip(tmp_path: Path) -> None:
    init = katsched("init", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    example = (REPO / "config.example.toml").read_text()
    database = f"sqlite:///{tmp_path / 'katsched.db'}"  # absolute: every working directory finds it
    assert (tmp_path / "config.toml").read_text() == example.replace(
        '"sqlite:///katsched.db"', f'"{database}"'
    )
    for check in (
        katsched("check", "config.toml", cwd=tmp_path),
        katsched("check", "-c", "config.toml", cwd=tmp_path),
    ):
        assert (check.returncode, check.stdout) == (0, "ok: config.toml\n")
    show = katsched("show", "--config", "config.toml", "--json", cwd=tmp_path)
    assert show.returncode == 0, show.stderr
    assert json.loads(show.stdout)["api"]["port"] == 8004
    assert json.loads(show.stdout)["database"]["url"] == database


def test_init_to_stdout(tmp_path: Path) -> None:
    result = katsched("init", "-", cwd=tmp_path)
    expected = render_example({"database.url": f"sqlite:///{tmp_path / 'katsched.db'}"})
    assert (result.returncode, result.stdout) == (0, expected)
    assert list(tmp_path.iterdir()) == []


def test_init_of_the_system_config_puts_the_database_in_var_lib(tmp_path: Path) -> None:
    from katsched.cli.config import database_for

    assert database_for("/etc/katsched/config.toml") == Path("/var/lib/katsched/katsched.db")
    assert database_for(str(tmp_path / "elsewhere" / "k.toml")) == tmp_path / "elsewhere" / "katsched.db"


def test_a_relative_database_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "config.toml").write_text('[database]\nurl = "sqlite:///data/k.db"\n')
    show = katsched("show", "--json", "--config", "etc/config.toml", cwd=tmp_path)
    assert json.loads(show.stdout)["database"]["url"] == f"sqlite:///{tmp_path / 'etc' / 'data' / 'k.db'}"


def test_check_loads_the_database_driver(tmp_path: Path) -> None:
    # A psycopg that cannot be imported, as in an install without the postgres extra.
    fake = tmp_path / "no-psycopg" / "psycopg"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n"
    )
    (tmp_path / "config.toml").write_text('[database]\nurl = "postgresql://kat@db/katsched"\n')
    env = {"PYTHONPATH": str(fake.parent)}
    result = katsched("check", "--config", "config.toml", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr == (
        "katsched: error: config.toml: database.url: postgresql+psycopg URLs need the psycopg driver, which "
        "is not installed: install katsched with the postgres extra ('katsched[postgres]')\n"
    )
    assert katsched("check", "--config", "config.toml", cwd=tmp_path).returncode == 0  # with the driver


def test_check_and_show_name_each_kind_of_database(database_config: Path, tmp_path: Path) -> None:
    url = tomllib.loads(database_config.read_text())["database"]["url"]
    check = katsched("check", "--config", str(database_config), cwd=tmp_path)
    assert (check.returncode, check.stdout) == (0, f"ok: {database_config}\n"), check.stderr
    show = katsched("show", "--json", "--config", str(database_config), cwd=tmp_path)
    assert json.loads(show.stdout)["database"]["url"] == url


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("# mine\n")
    refused = katsched("init", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr == "katsched: error: config.toml: already exists; use --force to overwrite it\n"
    assert (tmp_path / "config.toml").read_text() == "# mine\n"
    assert katsched("init", "--force", cwd=tmp_path).returncode == 0


BAD_CONFIGS = [
    (
        '[schedulers.boefje]\ngrace_period = "1d"\n',
        'schedulers.boefje.grace_period: expected an integer number of seconds, got "1d"',
    ),
    ("[api]\nprot = 8004\n", 'api.prot: unknown key (did you mean "port"?)'),
    ("[api]\nport = 1.5\n", "api.port: expected an integer, got 1.5"),
    ('[api]\nenabled = "yes"\n', 'api.enabled: expected true or false, got "yes"'),
    (
        "[api]\nport = 8004\n[logging\n",
        "line 3, column 9: invalid TOML: Expected ']' at the end of a table declaration",
    ),
    (
        '[schedulers.report]\nranker = "random"\n',
        'schedulers.report.ranker: expected "staleness", "ended_at" or "created_at", got "random"',
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_CONFIGS)
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "config.toml").write_text(text)
    for args in (["check", "config.toml"], ["show", "--config", "config.toml"]):
        result = katsched(*args, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr == f"katsched: error: config.toml: {message}\n"
        assert result.stdout == ""


def test_missing_file(tmp_path: Path) -> None:
    result = katsched("check", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert result.returncode == 2
    assert (
        result.stderr
        == f"katsched: error: {tmp_path / 'nope.toml'}: cannot read: No such file or directory\n"
    )


def test_check_finds_the_file_through_the_environment(tmp_path: Path) -> None:
    (tmp_path / "custom.toml").write_text("[api]\nport = 9000\n")
    result = katsched("check", cwd=tmp_path, env={"KATSCHED_CONFIG": str(tmp_path / "custom.toml")})
    assert (result.returncode, result.stdout) == (0, f"ok: {tmp_path / 'custom.toml'}\n")


def test_show_redacts_secrets(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[api]\ntoken = "tok3n"\n[amqp]\nurl = "amqp://kat:mqpw@mq/kat"\n[bytes]\npassword = "bpw"\n'
    )
    result = katsched("show", "--config", "config.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not any(secret in result.stdout for secret in ("tok3n", "mqpw", "bpw"))
    shown = tomllib.loads(result.stdout)
    assert shown["amqp"]["url"] == "amqp://kat:***@mq/kat" and shown["bytes"]["password"] == "***"


def test_from_env_writes_a_loadable_file(tmp_path: Path) -> None:
    env = {
        "SCHEDULER_DB_URI": "postgresql://kat:pw@postgres/mula",
        "QUEUE_URI": "amqp://kat:pw@rabbitmq/kat",
        "KATALOGUS_API": "http://katalogus:8000",
        "SCHEDULER_LOG_CFG": "/app/logging.json",
    }
    result = katsched("from-env", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("katsched: warning: SCHEDULER_LOG_CFG: not converted: ")
    (tmp_path / "config.toml").write_text(result.stdout)
    assert katsched("check", "config.toml", cwd=tmp_path).returncode == 0
    assert tomllib.loads(result.stdout)["database"]["url"] == "postgresql+psycopg://kat:pw@postgres/mula"
