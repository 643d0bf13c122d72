"""`katsched daemon` on the embedded default: opens the store, says it is ready, exits 0 on SIGTERM."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def start_daemon(config_file: Path, cwd: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "katsched", "daemon", "--config", str(config_file)]
    return subprocess.Popen(command, cwd=cwd, stderr=subprocess.PIPE, text=True)


def wait_for_line(process: subprocess.Popen[str], fragment: str) -> str:
    assert process.stderr is not None
    for line in process.stderr:
        if fragment in line:
            return line
    raise AssertionError(f"the daemon ended without logging {fragment!r}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_daemon_starts_on_sqlite_and_stops_cleanly(config_file: Path, tmp_path: Path, signum: int) -> None:
    daemon = start_daemon(config_file, tmp_path)
    try:
        assert "revision=0001" in wait_for_line(daemon, "daemon_ready")
        daemon.send_signal(signum)
        assert daemon.wait(timeout=30) == 0
    finally:
        daemon.kill()
    assert (tmp_path / "katsched.db").exists()


def test_daemon_without_a_config_uses_a_sqlite_file_in_the_working_directory(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "katsched", "daemon"]
    env_free = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    daemon = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True, env=env_free)
    try:
        wait_for_line(daemon, "daemon_ready")
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        daemon.kill()
    assert (tmp_path / "katsched.db").exists()
