"""Log output: one line per event, `event_name key=value …`, as text for people or JSON for collectors.

Every line passes a redactor that replaces the configured secrets (API token, passwords, passwords inside
URLs) with `***`, whatever the code that logged it forgot. On a terminal the text goes through rich.
"""

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from rich.console import Console
from rich.logging import RichHandler

from katsched.config import LoggingSettings, Settings

REDACTED = "***"
_EVENT = re.compile(r"^([a-z][a-z0-9_.]*)(?:\s|$)")
_PAIR = re.compile(r"(\w+)=(\"[^\"]*\"|\S+)")
# Libraries that narrate every step at INFO; their warnings still come through.
QUIET_LOGGERS = ("alembic", "apscheduler", "pika", "httpx", "httpcore", "uvicorn.access", "uvicorn.error")


def secrets_of(settings: Settings) -> list[str]:
    """The values no log line may show: tokens, passwords, and passwords written inside URLs."""
    found = [settings.api.token, settings.bytes.password]
    urls = (
        settings.database.url,
        settings.amqp.url,
        settings.katalogus.url,
        settings.octopoes.url,
        settings.bytes.url,
    )
    for url in urls:
        password = _url_password(url)
        if password:
            found += [password, unquote(password)]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def _url_password(url: str) -> str | None:
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return None
    userinfo, at, _host = netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return None
    return userinfo.split(":", 1)[1]


class Redactor:
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = [secret for secret in secrets if secret]

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor, fmt: str | None = None) -> None:
        super().__init__(fmt)
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """`{"at", "level", "logger", "event", <key>: <value>…, "message"}` on one line."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        message = self.redact(record.getMessage())
        at = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        document: dict[str, Any] = {"at": at, "level": record.levelname, "logger": record.name}
        document.update(parse_event(message))
        document["message"] = message
        if record.exc_info:
            document["traceback"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(document, ensure_ascii=False)


def parse_event(message: str) -> dict[str, str]:
    """`task_pushed task_id=1 org=acme` → `{"event": "task_pushed", "task_id": "1", "org": "acme"}`."""
    fields: dict[str, str] = {}
    event = _EVENT.match(message)
    if event:
        fields["event"] = event.group(1)
    for key, value in _PAIR.findall(message):
        if key not in ("at", "level", "logger", "event", "message"):
            fields[key] = value.strip('"')
    return fields


def configure_logging(
    settings: LoggingSettings, *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> None:
    """Replace the root handler; safe to call again (SIGHUP) with new settings."""
    output = stream or sys.stderr
    redact = Redactor(secrets)
    handler: logging.Handler
    if settings.format == "json":
        handler = logging.StreamHandler(output)
        handler.setFormatter(JsonFormatter(redact))
    elif output.isatty():
        console = Console(file=output)
        handler = RichHandler(console=console, show_path=False, markup=False, rich_tracebacks=False)
        handler.setFormatter(TextFormatter(redact, "%(message)s"))
    else:
        handler = logging.StreamHandler(output)
        handler.setFormatter(TextFormatter(redact, "%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    quiet = logging.DEBUG if settings.level == "DEBUG" else logging.WARNING
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
