"""`katsched config init | check | show | from-env`: write, validate and inspect the configuration file."""

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import tomli_w
import typer

from katsched._config_example import render_example
from katsched.cli.common import ConfigOption
from katsched.config import SYSTEM_CONFIG_PATH, load_settings, redacted, settings_from_toml
from katsched.core.models import SchedulerKind
from katsched.errors import ConfigError, StorageError

app = typer.Typer(
    help="Write, check and show the configuration file.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


PathArgument = Annotated[str | None, typer.Argument(help="The file (same as --config).", show_default=False)]
SYSTEM_DATABASE = Path("/var/lib/katsched/katsched.db")


def _one_path(positional: str | None, option: str | Path | None) -> str | None:
    """`config check FILE` and `config check --config FILE` both work; two different files do not."""
    if positional is not None and option is not None and Path(positional) != Path(option):
        raise typer.BadParameter(f"two files given: {positional} and {option}", param_hint="--config")
    chosen = positional if positional is not None else option
    return None if chosen is None else str(chosen)


def database_for(config_file: str) -> Path:
    """Where a new config file keeps its SQLite database: /var/lib/katsched for the system config (the
    unit's StateDirectory), else beside the file. Absolute, so that any working directory finds it."""
    directory = Path.cwd() if config_file == "-" else Path(config_file).absolute().parent
    return SYSTEM_DATABASE if directory == SYSTEM_CONFIG_PATH.parent else directory / "katsched.db"


@app.command()
def init(
    path: PathArgument = None,
    config: ConfigOption = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented configuration file with every key at its default; - writes to standard output."""
    target = _one_path(path, config) or "config.toml"
    text = render_example({"database.url": f"sqlite:///{database_for(target)}"})
    if target == "-":
        typer.echo(text, nl=False)
        return
    try:
        with open(target, "w" if force else "x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        raise ConfigError(f"{target}: already exists; use --force to overwrite it") from None
    except OSError as error:
        raise ConfigError(f"{target}: cannot write: {error.strerror or error}") from None
    typer.echo(f"wrote {target} (database: {database_for(target)})")


@app.command()
def check(path: PathArgument = None, config: ConfigOption = None) -> None:
    """Validate a configuration file and load the driver of its database: prints ok, or the problem and
    exits with 2. Default: the file katsched would load."""
    from katsched import wiring

    chosen = _one_path(path, config)
    settings = load_settings(None if chosen is None else Path(chosen))
    source = settings.config_path or "no config file found; built-in defaults"
    try:  # builds no connection: only imports the driver the URL names
        wiring.engine_for(settings, read_only=True).dispose()
    except StorageError as error:
        raise ConfigError(f"{source}: database.url: {error}") from None
    typer.echo(f"ok: {source}")


@app.command()
def show(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of TOML.")] = False,
) -> None:
    """Print the effective settings, defaults included, with secrets shown as ***."""
    settings = load_settings(config)
    data = redacted(settings)
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    typer.echo(
        f"# effective settings from {settings.config_path or 'built-in defaults'}; secrets shown as ***"
    )
    typer.echo(tomli_w.dumps(_without_none(data)), nl=False)


def _without_none(value: Any) -> Any:
    # TOML has no null: an unset optional key is simply absent.
    if isinstance(value, dict):
        return {key: _without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_none(item) for item in value]
    return value


@app.command("from-env")
def from_env() -> None:
    """Print a configuration file equivalent to the environment of OpenKAT's scheduler (mula)."""
    document, warnings = config_from_environment(os.environ)
    for warning in warnings:
        typer.echo(f"katsched: warning: {warning}", err=True)
    typer.echo(document, nl=False)


@dataclass(frozen=True)
class _EnvSetting:
    names: tuple[str, ...]  # the first that is set wins; later names are the deprecated spellings
    keys: tuple[str, ...]  # dotted keys in katsched's file
    convert: Callable[[str], object]


def _integer(value: str) -> int:
    return int(value.strip())


def _base_url(value: str) -> str:
    return value.strip().rstrip("/")


def _database_url(value: str) -> str:
    scheme, sep, rest = value.strip().partition("://")
    if sep and scheme in ("postgres", "postgresql", "postgresql+psycopg2"):
        return f"postgresql+psycopg://{rest}"
    return value.strip()


def _debug_level(value: str) -> str | None:
    return "DEBUG" if value.strip().lower() in ("1", "true", "yes", "on") else None


def _each_scheduler(key: str) -> tuple[str, ...]:
    return tuple(f"schedulers.{kind}.{key}" for kind in SchedulerKind)


_ENV_SETTINGS = (
    _EnvSetting(("SCHEDULER_DB_URI", "SCHEDULER_DB_DSN"), ("database.url",), _database_url),
    _EnvSetting(("SCHEDULER_DB_CONNECTION_POOL_SIZE",), ("database.pool_size",), _integer),
    _EnvSetting(("SCHEDULER_API_HOST",), ("api.host",), str.strip),
    _EnvSetting(("SCHEDULER_API_PORT",), ("api.port",), _integer),
    _EnvSetting(("QUEUE_URI", "SCHEDULER_RABBITMQ_DSN"), ("amqp.url",), str.strip),
    _EnvSetting(("SCHEDULER_RABBITMQ_PREFETCH_COUNT",), ("amqp.prefetch",), _integer),
    _EnvSetting(("KATALOGUS_API",), ("katalogus.url",), _base_url),
    _EnvSetting(("SCHEDULER_KATALOGUS_REQUEST_TIMEOUT",), ("katalogus.timeout",), _integer),
    _EnvSetting(("OCTOPOES_API",), ("octopoes.url",), _base_url),
    _EnvSetting(("SCHEDULER_OCTOPOES_REQUEST_TIMEOUT",), ("octopoes.timeout",), _integer),
    _EnvSetting(("BYTES_API",), ("bytes.url",), _base_url),
    _EnvSetting(("BYTES_USERNAME",), ("bytes.username",), str),
    _EnvSetting(("BYTES_PASSWORD",), ("bytes.password",), str),
    _EnvSetting(("SCHEDULER_BYTES_REQUEST_TIMEOUT",), ("bytes.timeout",), _integer),
    _EnvSetting(("SCHEDULER_PQ_MAXSIZE",), _each_scheduler("maxsize"), _integer),
    _EnvSetting(("SCHEDULER_PQ_GRACE_PERIOD",), _each_scheduler("grace_period"), _integer),
    _EnvSetting(("SCHEDULER_LOGGING_FORMAT",), ("logging.format",), str.strip),
    _EnvSetting(("DEBUG",), ("logging.level",), _debug_level),
)

_NOT_CONVERTED = {
    "SCHEDULER_LOG_CFG": "a logging dictConfig file has no equivalent; use [logging] level and format",
    "SCHEDULER_COLLECT_METRICS": "no equivalent; the queue gauges follow [recurring] metrics_interval",
    "SPAN_EXPORT_GRPC_ENDPOINT": "katsched does not export traces",
    "SCHEDULER_KATALOGUS_POOL_CONNECTIONS": "no equivalent; HTTP connection pools are not configurable",
    "SCHEDULER_OCTOPOES_POOL_CONNECTIONS": "no equivalent; HTTP connection pools are not configurable",
    "SCHEDULER_BYTES_POOL_CONNECTIONS": "no equivalent; HTTP connection pools are not configurable",
    "SCHEDULER_MONITOR_ORGANISATIONS_INTERVAL": (
        "unused by mula; see [recurring] organisations_refresh_interval"
    ),
    "SCHEDULER_PQ_INTERVAL": "unused by mula; see [recurring] interval",
    "SCHEDULER_PQ_MAX_RANDOM_OBJECTS": "unused by mula",
    "SCHEDULER_PQ_POPULATE_INTERVAL": "obsolete, ignored by mula",
    "SCHEDULER_PQ_POPULATE_GRACE_PERIOD": "obsolete, ignored by mula",
    "SCHEDULER_DEBUG": "ignored by mula, which reads DEBUG",
    "DATABASE_MIGRATION": "katsched migrates at start-up and with `katsched db upgrade`",
}

_HEADER = """\
# katsched configuration converted by `katsched config from-env` from the environment of OpenKAT's
# scheduler (mula). Keys not listed take katsched's defaults; `katsched config init` documents them all.
"""


def config_from_environment(environ: Mapping[str, str]) -> tuple[str, list[str]]:
    """(TOML document, warnings) equivalent to mula's environment; raises ConfigError if it is invalid."""
    env = {name.upper(): value for name, value in environ.items()}  # mula reads them case-insensitively
    data: dict[str, Any] = {"api": {"enabled": True}}  # mula always served its API
    skipped = _convert(env, data) + _not_converted(env)
    if "url" in data.get("amqp", {}):
        data["amqp"]["enabled"] = True
    warnings = [f"{name}: not converted: {reason}" for name, reason in skipped]
    if not any(name in env for setting in _ENV_SETTINGS for name in setting.names):
        warnings.append("none of mula's settings is set in this environment")
    comments = [f"#   {name}: {reason}" for name, reason in skipped]
    document = _HEADER + ("#\n# Not converted:\n" + "\n".join(comments) + "\n" if comments else "")
    document += "\n" + tomli_w.dumps(_nested(data))
    settings_from_toml(document, "environment")  # the converted values must pass the same checks as a file
    return document, warnings


def _convert(env: Mapping[str, str], data: dict[str, Any]) -> list[tuple[str, str]]:
    """Fill data with the converted settings; returns the (name, reason) of values that do not convert."""
    skipped = []
    for setting in _ENV_SETTINGS:
        name = next((name for name in setting.names if name in env), None)
        if name is None:
            continue
        try:
            value = setting.convert(env[name])
        except ValueError:
            skipped.append((name, f'expected an integer, got "{env[name]}"'))
            continue
        for key in setting.keys:
            if value is not None:
                section, _, field = key.rpartition(".")
                data.setdefault(section, {})[field] = value
    return skipped


def _not_converted(env: Mapping[str, str]) -> list[tuple[str, str]]:
    mapped = {name for setting in _ENV_SETTINGS for name in setting.names}
    skipped = [(name, reason) for name, reason in _NOT_CONVERTED.items() if name in env]
    unknown = sorted(
        name
        for name in env
        if name.startswith("SCHEDULER_") and name not in mapped and name not in _NOT_CONVERTED
    )
    return skipped + [(name, "not a setting of mula; ignored") for name in unknown]


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """{"schedulers.boefje": {...}} → {"schedulers": {"boefje": {...}}}, in the order of katsched's file."""
    order = ["database", "api", "amqp", "katalogus", "octopoes", "bytes", "schedulers", "logging"]
    result: dict[str, Any] = {}
    for section in sorted(flat, key=lambda name: order.index(name.split(".")[0])):
        target = result
        for part in section.split("."):
            target = target.setdefault(part, {})
        target.update(flat[section])
    return result
