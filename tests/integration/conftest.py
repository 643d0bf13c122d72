import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "katsched.db"}"\n')
    return path


@pytest.fixture
def katsched(config_file: Path) -> Run:
    """Runs the real command line, as a user would, against the test's own SQLite file."""

    def run(
        *args: str, stdin: str | None = None, config: bool = True, columns: int = 80
    ) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "katsched", *args]
        if config:
            command += ["--config", str(config_file)]
        env = {**os.environ, "COLUMNS": str(columns)}
        return subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=60, check=False, env=env
        )

    return run
