"""Log output: one line per event with stable keys, JSON for collectors, and never a secret."""

import io
import json
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from katsched.config import LoggingSettings, Settings
from katsched.logs import configure_logging, parse_event, secrets_of
from tests.integration.test_daemon_lifecycle import DaemonProcess, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_parse_event_reads_the_event_name_and_its_keys() -> None:
    assert parse_event("task_pushed task_id=1 scheduler=boefje org=acme") == {
        "event": "task_pushed",
        "task_id": "1",
        "scheduler": "boefje",
        "org": "acme",
    }
    assert parse_event('planner_deferred planner=boefje error="a b"') == {
        "event": "planner_deferred",
        "planner": "boefje",
        "error": "a b",
    }


def test_json_lines_carry_the_event_and_its_keys(restore_logging: None) -> None:
    stream = io.StringIO()
    configure_logging(LoggingSettings(level="INFO", format="json"), stream=stream)
    logging.getLogger("katsched.test").info("schedule_disabled schedule_id=%s reason=%s", "s1", "plugin_gone")
    document = json.loads(stream.getvalue())
    assert document["event"] == "schedule_disabled"
    assert (document["schedule_id"], document["reason"]) == ("s1", "plugin_gone")
    assert document["level"] == "INFO" and document["logger"] == "katsched.test"


def test_secrets_are_redacted_wherever_they_appear(restore_logging: None) -> None:
    settings = Settings.model_validate(
        {
            "api": {"token": "api-token-123"},
            "amqp": {"url": "amqp://kat:amqp%2Fpass@rabbit:5672/%2F"},
            "bytes": {"url": "http://bytes:8000", "password": "bytes-pass"},
            "database": {"url": "postgresql://kat:db-pass@db/katsched"},
        }
    )
    stream = io.StringIO()
    configure_logging(LoggingSettings(format="json"), secrets=secrets_of(settings), stream=stream)
    log = logging.getLogger("katsched.test")
    log.warning("leak token=api-token-123 url=amqp://kat:amqp/pass@rabbit db=db-pass bytes=bytes-pass")
    try:
        raise RuntimeError("connect to postgresql://kat:db-pass@db failed")
    except RuntimeError:
        log.exception("failed")
    output = stream.getvalue()
    for secret in ("api-token-123", "amqp/pass", "amqp%2Fpass", "db-pass", "bytes-pass"):
        assert secret not in output
    assert output.count("***") >= 5


def test_the_daemon_logs_json_when_asked(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "katsched.db"}"\n[logging]\nformat = "json"\n'
        f'[api]\nport = {free_port()}\ntoken = "do-not-log-me"\n'
    )
    daemon = DaemonProcess(config, tmp_path)
    try:
        daemon.wait_for("daemon_ready")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.kill()
    events = [json.loads(line) for line in daemon.log().splitlines()]
    ready = next(event for event in events if event.get("event") == "daemon_ready")
    assert ready["components"] == "api,recurring,wal-checkpoint"
    assert {"daemon_stopping", "daemon_stopped"} <= {event.get("event") for event in events}
    assert "do-not-log-me" not in daemon.log()
