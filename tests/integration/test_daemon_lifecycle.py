"""`katsched daemon` as a process: start on the embedded default, serve the API, stop on a signal, reload on
SIGHUP, refuse to run a component it cannot build. The helpers here are shared by the other daemon tests."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory

from katsched.config import ApiSettings
from katsched.store.migrate import MIGRATIONS

pytestmark = pytest.mark.integration

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()
DEFAULT_PORT = ApiSettings().port
DEADLINE = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(0.02)


class DaemonProcess:
    """`python -m katsched daemon` with its stderr collected line by line on a thread of the test."""

    def __init__(
        self, config: Path | None, cwd: Path, env: dict[str, str] | None = None, *extra: str
    ) -> None:
        command = [sys.executable, "-m", "katsched", "daemon", *extra]
        if config is not None:
            command += ["--config", str(config)]
        self.process = subprocess.Popen(
            command, cwd=cwd, stderr=subprocess.PIPE, text=True, env=env or dict(os.environ)
        )
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="daemon-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self.lines.append(line)

    def log(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def wait_for(self, fragment: str, timeout: float = DEADLINE) -> str:
        def logged() -> bool:
            if self.process.poll() is not None and fragment not in self.log():
                self._reader.join(5)
                if fragment not in self.log():
                    pytest.fail(
                        f"the daemon exited ({self.process.returncode}) without {fragment!r}:\n{self.log()}"
                    )
            return fragment in self.log()

        wait_until(logged, f"the daemon logs {fragment!r}", timeout)
        return next(line for line in self.log().splitlines() if fragment in line)

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = DEADLINE) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def quiet_config(tmp_path: Path, extra: str = "") -> Path:
    """The test's own SQLite file and the API on a free port (never the default 8004 other processes use)."""
    text = f'[database]\nurl = "sqlite:///{tmp_path / "katsched.db"}"\n[api]\nport = {free_port()}\n{extra}'
    return write_config(tmp_path / "config.toml", text)


def default_port_free() -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", DEFAULT_PORT))
        except OSError:
            return False
    return True


def http_json(url: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_daemon_starts_on_sqlite_and_stops_cleanly(tmp_path: Path, signum: int) -> None:
    daemon = DaemonProcess(quiet_config(tmp_path), tmp_path)
    try:
        assert f"revision={HEAD}" in daemon.wait_for("daemon_ready")
        daemon.signal(signum)
        assert daemon.wait() == 0
    finally:
        daemon.kill()
    assert (tmp_path / "katsched.db").exists()
    assert "daemon_stopped clean=true exit=0" in daemon.log()


def test_daemon_without_a_config_serves_the_api_on_a_sqlite_file_in_the_working_directory(
    tmp_path: Path,
) -> None:
    """The embedded default: no config file, no Katalogus, Octopoes, Bytes, RabbitMQ; store, jobs and API."""
    if not default_port_free():
        pytest.skip(f"port {DEFAULT_PORT} is taken by another process on this machine")
    env_free = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    daemon = DaemonProcess(None, tmp_path, env_free)
    try:
        # the log's checkpoints run on a thread of their own on a SQLite file
        assert "components=api,recurring,wal-checkpoint" in daemon.wait_for("daemon_ready")
        assert http_json(f"http://127.0.0.1:{DEFAULT_PORT}/health")["healthy"] is True
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.kill()
    assert (tmp_path / "katsched.db").exists()


def test_the_api_takes_pushes_and_stops_with_the_daemon(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path / "config.toml", f"[api]\nport = {port}\n")
    daemon = DaemonProcess(config, tmp_path)
    try:
        assert "components=api,recurring" in daemon.wait_for("daemon_ready")
        data = {
            "boefje": {"id": "dns-records"},
            "input_ooi": "Hostname|internet|a.example",
            "organization": "o1",
        }
        pushed = http_json(
            f"http://127.0.0.1:{port}/schedulers/boefje/push",
            {"priority": 1, "organisation": "o1", "data": data},
        )
        assert pushed["status"] == "queued"
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.kill()
    assert "component_stopped name=api clean=true" in daemon.log()


def test_sighup_reloads_what_is_safe_and_names_what_needs_a_restart(tmp_path: Path) -> None:
    config = quiet_config(tmp_path)
    base = config.read_text()
    daemon = DaemonProcess(config, tmp_path)
    try:
        daemon.wait_for("daemon_ready")
        changed = base.replace("[api]\n", "[api]\nmax_body_bytes = 9\n")
        write_config(config, changed + '[logging]\nlevel = "DEBUG"\n[recurring]\nsweep_interval = 5\n')
        daemon.signal(signal.SIGHUP)
        assert "restart_needed_for=api" in daemon.wait_for("config_reloaded")
        write_config(config, base + "[recurring]\nsweep_interval = 0\n")
        daemon.signal(signal.SIGHUP)
        assert "recurring.sweep_interval" in daemon.wait_for("config_reload_failed")
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    finally:
        daemon.kill()


def test_a_component_that_cannot_be_built_stops_the_daemon_with_the_reason(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "config.toml",
        f'[database]\nurl = "sqlite:///{tmp_path / "katsched.db"}"\n'
        "[api]\nenabled = false\n"
        '[amqp]\nenabled = true\nurl = "amqp://guest:secret-password@127.0.0.1:5672/%2F?heartbeat=abc"\n',
    )
    daemon = DaemonProcess(config, tmp_path)
    try:
        assert daemon.wait() == 1
    finally:
        daemon.kill()
    reason = next(line for line in daemon.log().splitlines() if "daemon_failed" in line)
    assert "intake-scan_profile_mutations cannot start" in reason and "heartbeat" in reason
    assert "secret-password" not in daemon.log()
