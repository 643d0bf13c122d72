"""Settings: defaults, strict validation with one-line messages, lookup order, redaction, the example file."""

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from katsched import config
from katsched._config_example import render_example
from katsched.cli.config import app, config_from_environment
from katsched.config import DatabaseSettings, Settings, load_settings, redacted, settings_from_toml
from katsched.errors import ConfigError, NotFound

REPO = Path(__file__).resolve().parents[2]
PLUGIN = '[[catalogue.plugins]]\nid = "dns"\ntype = "boefje"\nconsumes = ["Hostname"]\n'


def error_of(text: str, source: str = "config.toml") -> str:
    with pytest.raises(ConfigError) as caught:
        settings_from_toml(text, source)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- defaults ---


def test_defaults_need_no_file() -> None:
    settings = Settings()
    assert settings.database.url == "sqlite:///katsched.db"
    assert (settings.api.enabled, settings.api.host, settings.api.port) == (True, "127.0.0.1", 8004)
    assert settings.amqp.url == "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert settings.katalogus.url == "" and settings.katalogus.cache_ttl == 30
    assert settings.recurring.sweep_interval == 30 and settings.recurring.prune_interval == 3600
    assert settings.retention.tasks_days == 30 and settings.logging.level == "INFO"
    assert settings.config_path is None


def test_settings_compare_by_value_not_by_source(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[api]\nport = 8004\n")
    assert load_settings(path) == Settings()
    assert settings_from_toml("[api]\nport = 8005\n", "x") != Settings()


def test_each_scheduler_has_its_own_ranker_default() -> None:
    settings = settings_from_toml("[schedulers.normalizer]\nmaxsize = 5\n", "x")
    assert settings.scheduler("boefje").ranker == "staleness"
    assert settings.scheduler("normalizer").ranker == "ended_at"
    assert settings.scheduler("normalizer").maxsize == 5
    assert settings.scheduler("report").ranker == "created_at"
    assert settings.schedulers.report.grace_period == 86400


def test_unknown_scheduler_name() -> None:
    with pytest.raises(NotFound):
        Settings().scheduler("bit")


def test_job_intervals_follow_interval_unless_set() -> None:
    recurring = settings_from_toml("[recurring]\ninterval = 15\nrank_interval = 90\n", "x").recurring
    assert (recurring.reschedule_interval, recurring.new_plugins_interval) == (15, 15)
    assert recurring.rank_interval == 90
    assert recurring.sweep_interval == 30


def _models(model: type[BaseModel]) -> list[type[BaseModel]]:
    found = [model]
    for info in model.model_fields.values():
        for candidate in (info.annotation, *getattr(info.annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                found += _models(candidate)
    return found


def test_every_field_has_a_description() -> None:
    missing = [
        f"{model.__name__}.{name}"
        for model in _models(Settings)
        for name, info in model.model_fields.items()
        if not info.description
    ]
    assert missing == []


def test_settings_are_immutable() -> None:
    with pytest.raises(ValueError):
        Settings().api.port = 1  # type: ignore[misc]


# --- validation messages ---


@pytest.mark.parametrize("value", ['"1d"', "1.5", "true"])
def test_integers_are_strict(value: str) -> None:
    assert error_of(f"[schedulers.boefje]\ngrace_period = {value}\n") == (
        f"config.toml: schedulers.boefje.grace_period: expected an integer number of seconds, got {value}"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[api]\nprot = 1\n", 'api.prot: unknown key (did you mean "port"?)'),
        ("[datbase]\n", 'datbase: unknown section (did you mean "database"?)'),
        ("[api]\nzzz = 1\n", "api.zzz: unknown key"),
        ("[api]\nenabled = 1\n", "api.enabled: expected true or false, got 1"),
        ("[api]\nport = 0\n", "api.port: must be at least 1, got 0"),
        ("[api]\nport = 70000\n", "api.port: must be at most 65535, got 70000"),
        ("api = 5\n", "api: expected a table, got 5"),
        (
            '[logging]\nlevel = "info"\n',
            'logging.level: expected "DEBUG", "INFO", "WARNING" or "ERROR", got "info"',
        ),
        (
            '[katalogus]\nurl = "katalogus:8000"\n',
            'katalogus.url: expected an http(s) URL, got "katalogus:8000"',
        ),
        (
            "[retention]\ntasks_days = 1.5\n",
            "retention.tasks_days: expected an integer number of days, got 1.5",
        ),
        (
            '[[catalogue.plugins]]\nid = "x"\n',
            "catalogue.plugins[0].type: required key is missing; "
            "catalogue.plugins[0].consumes: required key is missing",
        ),
        (
            PLUGIN.replace('["Hostname"]', "5"),
            "catalogue.plugins[0].consumes: expected an array or a string, got 5",
        ),
        (
            PLUGIN.replace('["Hostname"]', '["A", 5]'),
            "catalogue.plugins[0].consumes[1]: expected a string, got 5",
        ),
        (PLUGIN + PLUGIN, 'catalogue: plugin "dns" is declared twice'),
        (PLUGIN + 'organisations = ["acme"]\n', 'catalogue: plugin "dns" names unknown organisation "acme"'),
    ],
)
def test_problems_name_the_file_and_the_key(text: str, message: str) -> None:
    assert error_of(text) == f"config.toml: {message}"


def test_several_problems_on_one_line() -> None:
    message = error_of("[api]\nport = true\n[logging]\nformat = 1\n")
    assert message == (
        "config.toml: api.port: expected an integer, got true; logging.format: "
        'expected "text" or "json", got 1'
    )


def test_toml_syntax_error_has_a_position() -> None:
    message = error_of("[api]\nport = 1\nhost = \n")
    assert message.startswith("config.toml: line 3, column 8: invalid TOML: ")


def test_secrets_are_not_echoed_in_messages() -> None:
    assert error_of("[bytes]\npassword = 12345\n") == "config.toml: bytes.password: expected a string"
    message = error_of('[database]\nurl = "mysql://kat:hunter2@db/kat"\n')
    assert "hunter2" not in message and "mysql://kat:***@db/kat" in message


# --- lookup order ---


@pytest.fixture
def places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Four candidate files with distinct ports; /etc is replaced by a file under tmp_path."""
    paths = {}
    for port, name in enumerate(["explicit", "env", "system", "local"], start=9001):
        folder = tmp_path / name
        folder.mkdir()
        paths[name] = folder / "config.toml"
        paths[name].write_text(f"[api]\nport = {port}\n")
    monkeypatch.chdir(tmp_path / "local")
    monkeypatch.setattr(config, "SYSTEM_CONFIG_PATH", paths["system"])
    monkeypatch.setenv("KATSCHED_CONFIG", str(paths["env"]))
    return paths


def test_lookup_order(places: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(places["explicit"]).api.port == 9001
    assert load_settings().api.port == 9002
    monkeypatch.delenv("KATSCHED_CONFIG")
    assert load_settings().api.port == 9003
    places["system"].unlink()
    settings = load_settings()
    assert settings.api.port == 9004
    assert settings.config_path == Path("config.toml")
    places["local"].unlink()
    assert load_settings() == Settings()
    assert load_settings().config_path is None


def test_loaded_settings_remember_their_file(places: dict[str, Path]) -> None:
    assert load_settings(places["explicit"]).config_path == places["explicit"]


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "x.toml"
    with pytest.raises(ConfigError, match=r"^.*x\.toml: cannot read: No such file or directory$"):
        load_settings(missing)


def test_missing_file_from_environment_is_an_error(places: dict[str, Path]) -> None:
    places["env"].unlink()
    with pytest.raises(ConfigError, match="cannot read: No such file or directory"):
        load_settings()


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[api]\nhost = "\xff"\n')
    with pytest.raises(ConfigError, match="cannot read: not UTF-8 text"):
        load_settings(path)


# --- redaction ---


def test_redaction_hides_every_secret() -> None:
    settings = settings_from_toml(
        '[api]\ntoken = "t0ken"\n[bytes]\nusername = "kat"\npassword = "pw1"\n'
        '[database]\nurl = "postgresql+psycopg://kat:pw2@db:5432/kat"\n'
        '[amqp]\nurl = "amqp://kat:pw3@mq:5672/kat"\n',
        "x",
    )
    shown = redacted(settings)
    text = json.dumps(shown)
    assert not any(secret in text for secret in ("t0ken", "pw1", "pw2", "pw3"))
    assert shown["api"]["token"] == "***"
    assert shown["bytes"] == {"url": "", "username": "kat", "password": "***", "timeout": 10}
    assert shown["database"]["url"] == "postgresql+psycopg://kat:***@db:5432/kat"
    assert shown["amqp"]["url"] == "amqp://kat:***@mq:5672/kat"
    assert settings.api.token == "t0ken"


def test_redaction_keeps_empty_secrets_and_urls_without_password() -> None:
    shown = redacted(settings_from_toml('[katalogus]\nurl = "http://user@katalogus:8000"\n', "x"))
    assert shown["api"]["token"] == ""
    assert shown["katalogus"]["url"] == "http://user@katalogus:8000"
    assert shown["database"]["url"] == "sqlite:///katsched.db"


# --- the example file ---


def test_example_file_is_what_init_writes() -> None:
    assert (REPO / "config.example.toml").read_text(encoding="utf-8") == render_example()


def test_example_file_loads_to_the_defaults() -> None:
    settings = settings_from_toml((REPO / "config.example.toml").read_text(encoding="utf-8"), "example")
    assert settings == Settings()


def test_commented_examples_are_valid_when_uncommented() -> None:
    lines = render_example().splitlines()
    uncommented = [line[2:] if line.startswith("# [[") or _is_commented_key(line) else line for line in lines]
    settings = settings_from_toml("\n".join(uncommented), "uncommented")
    assert [org.id for org in settings.catalogue.organisations] == ["acme"]
    assert settings.catalogue.plugins[0].consumes == ["Hostname"]


def _is_commented_key(line: str) -> bool:
    return line.startswith("# ") and " = " in line and not line.startswith("#  ")


def test_example_documents_every_key() -> None:
    text = render_example()
    for model in _models(Settings):
        for name in model.model_fields:
            assert f"{name} = " in text or f"{name}:" in text or f"[{name}" in text or f".{name}]" in text, (
                name
            )


# --- commands, through typer's runner ---

runner = CliRunner()


def test_init_then_check_then_show(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    assert runner.invoke(app, ["init", str(path)]).exit_code == 0
    written = Settings(database=DatabaseSettings(url=f"sqlite:///{tmp_path / 'katsched.db'}"))
    assert load_settings(path) == written  # the defaults, but for the absolute database path
    result = runner.invoke(app, ["check", str(path)])
    assert (result.exit_code, result.stdout) == (0, f"ok: {path}\n")
    shown = runner.invoke(app, ["show", "--config", str(path), "--json"])
    assert json.loads(shown.stdout) == redacted(written)


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[api]\n")
    result = runner.invoke(app, ["init", str(path)])
    assert isinstance(result.exception, ConfigError)
    assert "already exists; use --force" in str(result.exception)
    assert runner.invoke(app, ["init", "--force", str(path)]).exit_code == 0
    assert path.read_text() == render_example({"database.url": f"sqlite:///{tmp_path / 'katsched.db'}"})


def test_init_to_stdout() -> None:
    expected = render_example({"database.url": f"sqlite:///{Path.cwd() / 'katsched.db'}"})
    assert runner.invoke(app, ["init", "-"]).stdout == expected


def test_show_toml_is_loadable_and_redacted(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[api]\ntoken = "secret-token"\n' + PLUGIN)
    output = runner.invoke(app, ["show", "-c", str(path)]).stdout
    assert "secret-token" not in output
    shown: dict[str, Any] = tomllib.loads(output)
    assert shown["api"]["token"] == "***"
    assert shown["catalogue"]["plugins"][0]["id"] == "dns"


def test_check_reports_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[api]\nport = '8004'\n")
    result = runner.invoke(app, ["check", str(path)])
    assert str(result.exception) == f'{path}: api.port: expected an integer, got "8004"'


# --- from-env ---

MULA_ENV = {
    "SCHEDULER_API_HOST": "0.0.0.0",
    "SCHEDULER_API_PORT": "8004",
    "SCHEDULER_DB_URI": "postgresql://kat:dbpw@postgres:5432/mula_db",
    "QUEUE_URI": "amqp://kat:mqpw@rabbitmq:5672/kat",
    "KATALOGUS_API": "http://katalogus:8000/",
    "OCTOPOES_API": "http://octopoes_api:80",
    "BYTES_API": "http://bytes:8000",
    "BYTES_USERNAME": "bytes",
    "BYTES_PASSWORD": "bytespw",
    "SCHEDULER_PQ_MAXSIZE": "1000",
    "SCHEDULER_PQ_GRACE_PERIOD": "3600",
    "SCHEDULER_LOGGING_FORMAT": "json",
    "scheduler_rabbitmq_prefetch_count": "50",
    "SCHEDULER_LOG_CFG": "/etc/kat/logging.json",
    "SCHEDULER_PQ_NONSENSE": "1",
    "PATH": "/usr/bin",
}


def test_from_env_converts_what_maps() -> None:
    document, warnings = config_from_environment(MULA_ENV)
    settings = settings_from_toml(document, "converted")
    assert settings.api.enabled and settings.api.host == "0.0.0.0" and settings.api.port == 8004
    assert settings.database.url == "postgresql+psycopg://kat:dbpw@postgres:5432/mula_db"
    assert settings.amqp.enabled and settings.amqp.url == "amqp://kat:mqpw@rabbitmq:5672/kat"
    assert settings.amqp.prefetch == 50
    assert settings.katalogus.url == "http://katalogus:8000"
    assert (settings.bytes.username, settings.bytes.password) == ("bytes", "bytespw")
    assert {settings.scheduler(name).maxsize for name in ("boefje", "normalizer", "report")} == {1000}
    assert settings.schedulers.normalizer.grace_period == 3600
    assert settings.logging.format == "json"
    assert [warning.split(":")[0] for warning in warnings] == ["SCHEDULER_LOG_CFG", "SCHEDULER_PQ_NONSENSE"]
    assert "#   SCHEDULER_LOG_CFG: " in document


def test_from_env_uses_deprecated_names_only_as_fallback() -> None:
    document, _ = config_from_environment(
        {"SCHEDULER_RABBITMQ_DSN": "amqp://old", "SCHEDULER_DB_DSN": "postgres://u:p@h/d", "DEBUG": "true"}
    )
    settings = settings_from_toml(document, "converted")
    assert settings.amqp.url == "amqp://old"
    assert settings.database.url == "postgresql+psycopg://u:p@h/d"
    assert settings.logging.level == "DEBUG"
    both, _ = config_from_environment({"SCHEDULER_RABBITMQ_DSN": "amqp://old", "QUEUE_URI": "amqp://new"})
    assert settings_from_toml(both, "converted").amqp.url == "amqp://new"


def test_from_env_warns_about_values_that_do_not_convert() -> None:
    document, warnings = config_from_environment({"SCHEDULER_API_PORT": "80a"})
    assert warnings == ['SCHEDULER_API_PORT: not converted: expected an integer, got "80a"']
    assert settings_from_toml(document, "converted").api.port == 8004


def test_from_env_rejects_values_katsched_does_not_accept() -> None:
    with pytest.raises(ConfigError, match=r"^environment: api\.port: must be at most 65535, got 80000$"):
        config_from_environment({"SCHEDULER_API_PORT": "80000"})


def test_from_env_on_an_empty_environment() -> None:
    document, warnings = config_from_environment({})
    assert settings_from_toml(document, "converted").api.enabled
    assert warnings == ["none of mula's settings is set in this environment"]
