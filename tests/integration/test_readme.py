"""README.md works as written: its terminal session runs line by line after its own set-up (`uv run katsched`
is this environment's katsched here), object references are quoted, and it points nowhere outside the repo."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def shell_blocks(section: str) -> list[str]:
    text = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", text, re.DOTALL)


def test_the_terminal_session_runs_line_by_line(tmp_path: Path) -> None:
    setup = [line for line in shell_blocks("Run the daemon")[1].splitlines() if " daemon" not in line]
    script = "\n".join([*setup, shell_blocks("From a terminal")[0]])
    # `uv run katsched ARGS` → `python -m katsched ARGS`, stopping at the first line that fails.
    python = sys.executable
    shim = f'uv() {{ [ "$1" = run ] && [ "$2" = katsched ] && shift 2 && "{python}" -m katsched "$@"; }}\n'
    result = subprocess.run(
        ["bash", "-e", "-c", shim + script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "80", "KATSCHED_CONFIG": str(tmp_path / "config.toml")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "is now running" in result.stdout and "cancelled" in result.stdout
    assert (tmp_path / "katsched.db").exists()  # where config init put it


def test_object_references_are_quoted_and_links_stay_in_the_repo() -> None:
    unquoted = re.findall(r"[^'\"|\w]Hostname\|[^'\"`]*", README)
    assert unquoted == []
    assert "../" not in README
    for target in re.findall(r"\]\(([^)]+)\)", README):
        assert (Path(__file__).resolve().parents[2] / target).exists(), target
