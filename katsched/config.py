"""One TOML file → typed, validated Settings.

Every key has a default, so an empty file (or none at all) is a working single-machine setup. Validation is
strict: TOML already carries types, so "1d" where seconds are expected, or `true` where a number is, is a
mistake to report, not a value to coerce. Every problem becomes a ConfigError of one line that names the file,
the dotted key and what is wrong with it.
"""

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, PrivateAttr, ValidationError, model_validator

from katsched._config_errors import REDACTED, describe, field_extra, redact_url, toml_problem
from katsched.core.models import SchedulerKind
from katsched.errors import ConfigError, NotFound

ENV_VAR = "KATSCHED_CONFIG"
SYSTEM_CONFIG_PATH = Path("/etc/katsched/config.toml")
LOCAL_CONFIG_PATH = Path("config.toml")

RankerName = Literal["staleness", "ended_at", "created_at"]
_HTTP_URL = r"^(https?://\S+)?$"
_DATABASE_URL = r"^(sqlite|postgresql)(\+\w+)?://"


def _number(default: int, description: str, *, unit: str = "", ge: int = 0, le: int | None = None) -> Any:
    """A strict integer field; `unit` words the error message ("an integer number of seconds")."""
    extra: dict[str, JsonValue] = {"unit": unit} if unit else {}
    return Field(default, ge=ge, le=le, description=description, json_schema_extra=extra or None)


def _secret(description: str) -> Any:
    return Field("", description=description, json_schema_extra={"secret": True})


def _service_url(description: str) -> Any:
    return Field(
        "", pattern=_HTTP_URL, description=description, json_schema_extra={"expects": "an http(s) URL"}
    )


def _timeout(service: str) -> Any:
    return _number(10, f"Seconds to wait for an answer from {service}.", unit="seconds", ge=1)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DatabaseSettings(_Section):
    url: str = Field(
        "sqlite:///katsched.db",
        pattern=_DATABASE_URL,
        description="SQLAlchemy URL of the task database: sqlite:////absolute/path, sqlite:///path relative "
        "to the directory of the config file, or postgresql+psycopg://user:password@host:5432/name (which "
        "needs katsched's postgres extra).",
        json_schema_extra={"expects": "a sqlite:// or postgresql:// URL"},
    )
    busy_timeout_ms: int = _number(
        5000, "Milliseconds SQLite waits for another writer before giving up.", unit="milliseconds"
    )
    pool_size: int = _number(
        10,
        "Connections kept open to the database; for SQLite also the most open at once, besides the one the"
        " API keeps for the pushes and pops it serves on its event loop.",
        ge=1,
    )
    sqlite_cache_mib: int = _number(
        8,
        "Page cache of each SQLite connection, in MiB: with pool_size it bounds the memory the database"
        " takes, however many tasks are queued.",
        ge=1,
    )


class ApiSettings(_Section):
    enabled: bool = Field(
        True,
        description="Serve the HTTP API for runners and the web UI (loopback unless `host` says otherwise).",
    )
    host: str = Field(
        "127.0.0.1", description="Address the HTTP API listens on; 0.0.0.0 for every interface."
    )
    port: int = _number(8004, "TCP port of the HTTP API.", ge=1, le=65535)
    token: str = _secret('Bearer token that clients must send; "" turns authentication off.')
    max_body_bytes: int = _number(1_048_576, "Largest request body accepted, in bytes.", unit="bytes", ge=1)


class AmqpSettings(_Section):
    enabled: bool = Field(
        False, description="Consume scan-profile mutations and raw-file events from RabbitMQ."
    )
    url: str = Field(
        "amqp://guest:guest@127.0.0.1:5672/%2F",
        description="RabbitMQ URL, as OpenKAT's QUEUE_URI; the password in it is treated as a secret.",
    )
    prefetch: int = _number(
        200,
        "Messages a consumer may hold unacknowledged; mutations are planned up to 100 at a time from them.",
        ge=1,
    )
    mutations_queue: str = Field(
        "scan_profile_mutations", min_length=1, description="Queue of Octopoes scan-profile mutations."
    )
    raw_files_queue: str = Field(
        "raw_file_received", min_length=1, description="Queue of Bytes raw-file-received events."
    )
    retry_backoff_max: int = _number(
        60, "Longest pause, in seconds, between reconnection attempts to RabbitMQ.", unit="seconds", ge=1
    )


class KatalogusSettings(_Section):
    url: str = _service_url('Base URL of the Katalogus; "" uses the static [catalogue] below instead.')
    cache_ttl: int = _number(30, "Seconds a plugin or organisation list is cached.", unit="seconds")
    timeout: int = _timeout("the Katalogus")


class OctopoesSettings(_Section):
    url: str = _service_url('Base URL of Octopoes; "" means objects cannot be looked up.')
    timeout: int = _timeout("Octopoes")


class BytesSettings(_Section):
    url: str = _service_url('Base URL of Bytes; "" means last runs are not looked up.')
    username: str = Field("", description="User name for Bytes' token endpoint.")
    password: str = _secret("Password for Bytes' token endpoint.")
    timeout: int = _timeout("Bytes")


class CatalogueOrganisation(_Section):
    id: str = Field(
        min_length=1,
        description="Organisation code, as used in task and API paths.",
        json_schema_extra={"example": "acme"},
    )
    name: str = Field(description="Human-readable organisation name.", json_schema_extra={"example": "Acme"})


class CataloguePlugin(_Section):
    id: str = Field(
        min_length=1,
        description="Plugin id, as the Katalogus names it.",
        json_schema_extra={"example": "dns-records"},
    )
    type: Literal["boefje", "normalizer", "bit"] = Field(
        description="boefje, normalizer or bit.", json_schema_extra={"example": "boefje"}
    )
    enabled: bool = Field(True, description="Whether tasks are created for this plugin.")
    name: str | None = Field(None, description="Display name.", json_schema_extra={"example": "DNS records"})
    version: str | None = Field(None, description="Plugin version.", json_schema_extra={"example": "1.0"})
    scan_level: int | None = Field(
        None,
        ge=0,
        le=4,
        description="Lowest object scan level (0-4) the plugin may run on.",
        json_schema_extra={"example": 1},
    )
    consumes: list[str] | str = Field(
        description="Object types a boefje takes, or mime types a normalizer takes.",
        json_schema_extra={"example": ["Hostname"]},
    )
    produces: list[str] = Field(
        default_factory=list,
        description="Mime types or object types the plugin produces.",
        json_schema_extra={"example": ["boefje/dns-records"]},
    )
    cron: str | None = Field(
        None,
        description="Cron expression (UTC) for recurring runs; wins over interval.",
        json_schema_extra={"example": "0 3 * * *"},
    )
    interval: int | None = Field(
        None,
        ge=1,
        description="Minutes between recurring runs.",
        json_schema_extra={"unit": "minutes", "example": 1440},
    )
    run_on: list[Literal["create", "update"]] | None = Field(
        None,
        description="Run when an object is created and/or updated.",
        json_schema_extra={"example": ["create", "update"]},
    )
    oci_image: str | None = Field(
        None,
        description="Container image of the plugin.",
        json_schema_extra={"example": "ghcr.io/example/dns:1.0"},
    )
    organisations: list[str] = Field(
        default_factory=list,
        description="Organisation ids the plugin is enabled for; [] means every one.",
        json_schema_extra={"example": ["acme"]},
    )


class CatalogueSettings(_Section):
    organisations: list[CatalogueOrganisation] = Field(
        default_factory=list, description="Organisations, used when [katalogus] url is empty."
    )
    plugins: list[CataloguePlugin] = Field(
        default_factory=list, description="Plugins, used when [katalogus] url is empty."
    )

    @model_validator(mode="after")
    def _check_references(self) -> "CatalogueSettings":
        known = {org.id for org in self.organisations}
        seen: set[str] = set()
        for plugin in self.plugins:
            if plugin.id in seen:
                raise ValueError(f'plugin "{plugin.id}" is declared twice')
            seen.add(plugin.id)
            for org in plugin.organisations:
                if org not in known:
                    raise ValueError(f'plugin "{plugin.id}" names unknown organisation "{org}"')
        return self


_FOLLOWS_INTERVAL = ("reschedule_interval", "new_plugins_interval", "rank_interval")


def _job_interval(description: str, default: int = 60, follows: bool = False) -> Any:
    extra: dict[str, JsonValue] = {"unit": "seconds"}
    if follows:
        extra["default_from"] = "interval"
        description += " Defaults to interval."
    return Field(default, ge=1, description=description, json_schema_extra=extra)


class RecurringSettings(_Section):
    interval: int = _job_interval("Seconds between the per-organisation jobs, unless set separately below.")
    reschedule_interval: int = _job_interval("Seconds between pushes of due schedules.", follows=True)
    new_plugins_interval: int = _job_interval(
        "Seconds between checks for newly enabled plugins.", follows=True
    )
    rank_interval: int = _job_interval("Seconds between re-rankings of queued tasks.", follows=True)
    sweep_interval: int = _job_interval("Seconds between sweeps for stalled tasks.", 30)
    prune_interval: int = _job_interval("Seconds between retention prunes.", 3600)
    organisations_refresh_interval: int = _job_interval(
        "Seconds between refreshes of the organisations.", 300
    )
    metrics_interval: int = _job_interval("Seconds between updates of the queue metrics.", 10)
    jitter: int = _number(5, "Up to this many seconds of random delay per job run.", unit="seconds")
    reschedule_batch_size: int = _number(500, "Due schedules handled per rescheduling transaction.", ge=1)
    schedule_claim_lease: int = _number(
        120,
        "Seconds a daemon holds a batch of due schedules it claimed; then another may plan them.",
        unit="seconds",
        ge=1,
    )

    @model_validator(mode="before")
    @classmethod
    def _follow_interval(cls, data: Any) -> Any:
        interval = data.get("interval") if isinstance(data, dict) else None
        if type(interval) is not int:  # a bad interval is reported once, on its own key
            return data
        return {**{key: interval for key in _FOLLOWS_INTERVAL}, **data}


class ClusterSettings(_Section):
    lease_duration: int = _number(
        30,
        "Seconds the daemon that runs the once-only jobs (stalled-task sweeps, retention, new-plugin "
        "enumeration, re-ranking) holds them per renewal; it renews every third of this. When it dies, "
        "another daemon on the same database, or the same one restarted, takes them over within twice this.",
        unit="seconds",
        ge=3,
    )


def _ranker(default: str) -> Any:
    return Field(default, description="How queued tasks are ordered: staleness, ended_at or created_at.")


class SchedulerSettings(_Section):
    grace_period: int = _number(
        86400, "Seconds after a run in which the same task is not run again.", unit="seconds"
    )
    dispatch_timeout: int = _number(
        600, "Seconds a popped task may stay dispatched before it is swept.", unit="seconds", ge=1
    )
    run_timeout: int = _number(
        1800, "Seconds a task may stay running before it is swept.", unit="seconds", ge=1
    )
    on_dispatch_expiry: Literal["requeue", "fail"] = Field(
        "requeue",
        description="What the sweep does with a popped task its runner never started (the pop answer was "
        "lost): requeue it (until max_attempts dispatches were lost), or fail it at once, for runners that "
        "hold popped tasks longer than dispatch_timeout.",
    )
    max_attempts: int = _number(
        3, "Dispatches a task may lose before the sweep fails it instead of queueing it again.", ge=1
    )
    maxsize: int = _number(0, "Most tasks queued at once per organisation; 0 is unbounded.")
    allow_replace: bool = Field(False, description="A push may replace a queued task with the same identity.")
    allow_updates: bool = Field(False, description="A push may update the data of a queued task.")
    allow_priority_updates: bool = Field(False, description="A push may change a queued task's priority.")
    ranker: RankerName = _ranker("staleness")
    deadline_jitter: int = _number(
        0, "Up to this many seconds of random delay added to each schedule's deadline.", unit="seconds"
    )


class BoefjeSchedulerSettings(SchedulerSettings):
    ranker: RankerName = _ranker("staleness")
    lookup_concurrency: int = _number(
        8, "Bytes and Octopoes look-ups a planning batch makes at once (each waits on the network).", ge=1
    )


class NormalizerSchedulerSettings(SchedulerSettings):
    ranker: RankerName = _ranker("ended_at")


class ReportSchedulerSettings(SchedulerSettings):
    ranker: RankerName = _ranker("created_at")


class SchedulersSettings(_Section):
    boefje: BoefjeSchedulerSettings = Field(
        default_factory=BoefjeSchedulerSettings, description="Boefje tasks: scans of objects."
    )
    normalizer: NormalizerSchedulerSettings = Field(
        default_factory=NormalizerSchedulerSettings, description="Normalizer tasks: parsing of raw files."
    )
    report: ReportSchedulerSettings = Field(
        default_factory=ReportSchedulerSettings, description="Report tasks: scheduled reports."
    )


class RetentionSettings(_Section):
    tasks_days: int = _number(30, "Days a finished task is kept.", unit="days", ge=1)
    history_days: int = _number(30, "Days schedule and status history is kept.", unit="days", ge=1)
    batch_size: int = _number(1000, "Rows deleted per pruning transaction.", ge=1)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Lowest level logged: DEBUG, INFO, WARNING or ERROR."
    )
    format: Literal["text", "json"] = Field("text", description="text for people, json for log collectors.")


class Settings(_Section):
    database: DatabaseSettings = Field(
        default_factory=DatabaseSettings, description="Where tasks are stored."
    )
    api: ApiSettings = Field(
        default_factory=ApiSettings, description="The HTTP API (wire-compatible with mula)."
    )
    amqp: AmqpSettings = Field(default_factory=AmqpSettings, description="Events from RabbitMQ.")
    katalogus: KatalogusSettings = Field(
        default_factory=KatalogusSettings, description="The plugin catalogue."
    )
    octopoes: OctopoesSettings = Field(default_factory=OctopoesSettings, description="The object graph.")
    bytes: BytesSettings = Field(default_factory=BytesSettings, description="The raw-data store.")
    catalogue: CatalogueSettings = Field(
        default_factory=CatalogueSettings,
        description="Static organisations and plugins, for running without a Katalogus.",
    )
    recurring: RecurringSettings = Field(default_factory=RecurringSettings, description="Background jobs.")
    cluster: ClusterSettings = Field(
        default_factory=ClusterSettings,
        description="Several daemons on one PostgreSQL database: which one runs the jobs that must run once.",
    )
    schedulers: SchedulersSettings = Field(
        default_factory=SchedulersSettings, description="Per-scheduler queue behaviour."
    )
    retention: RetentionSettings = Field(
        default_factory=RetentionSettings, description="Pruning of finished tasks."
    )
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="Log output.")

    _config_path: Path | None = PrivateAttr(default=None)

    @property
    def config_path(self) -> Path | None:
        """The file these settings were loaded from; None for built-in defaults or text."""
        return self._config_path

    def __eq__(self, other: object) -> bool:
        # Where settings were loaded from is not part of their value.
        return isinstance(other, Settings) and self.__dict__ == other.__dict__

    def scheduler(self, name: str) -> SchedulerSettings:
        if name not in SchedulerKind.__members__.values():
            raise NotFound(f"no scheduler named {name!r}")
        settings: SchedulerSettings = getattr(self.schedulers, str(name))
        return settings


def find_config(path: Path | None = None) -> Path | None:
    """The file to load: explicit path, then $KATSCHED_CONFIG, /etc/katsched/config.toml, ./config.toml."""
    if path is not None:
        return path
    if from_env := os.environ.get(ENV_VAR):
        return Path(from_env)
    for candidate in (SYSTEM_CONFIG_PATH, LOCAL_CONFIG_PATH):
        if candidate.exists():  # exists, not is_file: an unreadable candidate is an error, not a skip
            return candidate
    return None


def load_settings(path: Path | None = None) -> Settings:
    found = find_config(path)
    if found is None:
        return Settings()
    try:
        text = found.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{found}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{found}: cannot read: not UTF-8 text") from None
    settings = settings_from_toml(text, str(found))
    url = anchored_database_url(settings.database.url, found.absolute().parent)
    # Only a path the file writes is the file's: the default stays relative to the working directory.
    if url != settings.database.url and "url" in settings.database.model_fields_set:
        settings = settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})})
    settings._config_path = found
    return settings


def anchored_database_url(url: str, directory: Path) -> str:
    """`url` with a relative SQLite path made absolute against `directory`, the config file's directory, so
    that a command run from anywhere opens the database the file names."""
    scheme, separator, rest = url.partition(":///")
    if not separator or not scheme.startswith("sqlite"):
        return url
    path, question, query = rest.partition("?")
    if path in ("", ":memory:") or path.startswith(("/", "~", "file:")):
        return url
    return f"{scheme}:///{directory / path}{question}{query}"


def settings_from_toml(text: str, source: str) -> Settings:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: {toml_problem(str(error))}") from None
    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: {describe(error, Settings)}") from None


def redacted(settings: Settings) -> dict[str, Any]:
    """Settings as plain data, with every secret and every password inside a URL replaced by "***"."""
    return _redact_model(settings)


def _redact_model(model: BaseModel) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            result[name] = _redact_model(value)
        elif isinstance(value, list):
            result[name] = [_redact_model(v) if isinstance(v, BaseModel) else v for v in value]
        elif field_extra(info).get("secret") and value:
            result[name] = REDACTED
        elif isinstance(value, str):
            result[name] = redact_url(value)
        else:
            result[name] = value
    return result
