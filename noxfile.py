"""The entry point for checks: `uvx nox` runs tests, lint and typecheck; `uvx nox -s bench` the benchmarks."""

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
DEV = nox.project.dependency_groups(PYPROJECT, "dev")


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The whole test suite: unit, contract and integration (needs RabbitMQ and PostgreSQL on 127.0.0.1)."""
    session.install("-e", ".[postgres]", *DEV)
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "katsched", "tests", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", "katsched", "tests", "bench", "noxfile.py")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[postgres]", *DEV)
    session.run("mypy", "katsched")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks: each prints its rates next to a reference measured in the same run."""
    session.install("-e", ".[postgres]", *DEV)
    for script in session.posargs or ["bench/store.py"]:
        session.run("python", script)
