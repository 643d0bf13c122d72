"""packaging/katsched.service: the fields that make it a safe notify service, and `systemd-analyze verify`."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "packaging" / "katsched.service"
# README.md, "Run as a systemd service"; tests/integration/test_install.py installs it that way.
INSTALLED = "/opt/katsched/bin/katsched"


def parse(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections → key → every value given (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse(UNIT.read_text())


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values is not None, f"[{section}] {key} is missing"
    return values[-1]


def test_a_notify_service_run_by_its_own_user(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "ExecStart") == f"{INSTALLED} daemon --config /etc/katsched/config.toml"
    assert one(unit, "Service", "User") == "katsched"
    assert one(unit, "Service", "StateDirectory") == "katsched"
    assert one(unit, "Service", "WorkingDirectory") == "/var/lib/katsched"
    assert "HUP" in one(unit, "Service", "ExecReload")
    assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_restarts_on_failure_and_leaves_time_to_drain(unit: dict[str, dict[str, list[str]]]) -> None:
    from katsched.daemon import DRAIN_TIMEOUT

    assert one(unit, "Service", "Restart") == "on-failure"
    assert one(unit, "Service", "RestartSec")
    assert int(one(unit, "Service", "TimeoutStopSec")) > DRAIN_TIMEOUT
    assert int(one(unit, "Service", "WatchdogSec")) >= 10
    assert one(unit, "Service", "KillMode") == "mixed"


def test_hardening(unit: dict[str, dict[str, list[str]]]) -> None:
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert one(unit, "Service", key) == value, key
    assert set(one(unit, "Service", "RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd); fields checked above")
    # /opt/katsched is not installed on the machine that runs the tests: verify a copy that names the entry
    # point of this environment instead (tests/integration/test_install.py installs one as README.md says).
    entry_point = Path(sys.executable).with_name("katsched")
    assert entry_point.exists(), "the katsched entry point is not installed in this environment"
    copy = tmp_path / "katsched.service"
    copy.write_text(UNIT.read_text().replace(f"ExecStart={INSTALLED} ", f"ExecStart={entry_point} "))
    result = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "katsched.service" not in result.stderr, result.stderr
