"""The service install of README.md ("Run as a systemd service") into a temporary prefix instead of
/opt/katsched: the service user (here `nobody`, through setpriv, when the tests run as root) can run it."""

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_cli_read_only import as_unprivileged

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def readme_install_lines() -> list[str]:
    """The first three lines of the service install block: export, venv, pip install."""
    block = README.split("## Run as a systemd service", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return block.splitlines()[:3]


@pytest.fixture
def prefix() -> Iterator[Path]:
    """A directory outside root's 0700 pytest tree, so that `nobody` can reach it, as /opt is."""
    path = Path(tempfile.mkdtemp(prefix="katsched-opt-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, **kwargs)  # type: ignore[call-overload]


def test_readme_install_gives_a_program_the_service_user_can_run(prefix: Path) -> None:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH; README.md's install needs it")
    lines = readme_install_lines()
    assert "uv export" in lines[0] and " venv " in lines[1] and " pip install " in lines[2], lines
    requirements = prefix / "requirements.txt"
    venv = prefix / "katsched"
    # README's three lines, with the prefix for /opt/katsched and without sudo (we are already the admin).
    for line in lines:
        line = line.replace('sudo "$(command -v uv)"', uv).replace(
            "/tmp/katsched-requirements.txt", str(requirements)
        )
        line = line.replace("/opt/katsched", str(venv)).replace("uv export", f"{uv} export", 1)
        done = run(["sh", "-c", line], cwd=REPO)
        assert done.returncode == 0, (line, done.stderr)
    program = venv / "bin" / "katsched"
    assert not list(venv.rglob("pytest")), "the dev tools are not part of the service install"
    config = prefix / "config.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{prefix / "state" / "katsched.db"}"\n')
    config.chmod(0o644)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(prefix), "LANG": "C.UTF-8"}
    version = run(as_unprivileged([str(program), "--version"]), env=env, cwd=prefix)
    assert version.returncode == 0, version.stderr
    assert re.fullmatch(r"katsched \d+\.\d+\.\d+\S*\n", version.stdout)
    check = run(
        as_unprivileged([str(program), "config", "check", "--config", str(config)]), env=env, cwd=prefix
    )
    assert (check.returncode, check.stdout) == (0, f"ok: {config}\n"), check.stderr
    postgres = prefix / "postgres.toml"
    postgres.write_text('[database]\nurl = "postgresql://kat@127.0.0.1/katsched"\n')
    postgres.chmod(0o644)
    driver = run(as_unprivileged([str(program), "config", "check", "-c", str(postgres)]), env=env, cwd=prefix)
    assert driver.returncode == 0, driver.stderr  # the postgres extra is installed
    assert program.read_text().splitlines()[0] == f"#!{venv}/bin/python"  # its own virtualenv's interpreter
