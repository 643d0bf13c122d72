"""The entry point for checks: `uvx nox` runs tests, lint and typecheck; `uvx nox -s bench` the benchmarks.

Every session installs the versions locked in uv.lock (`uv sync --locked` into the session's virtualenv), so
the checks run against exactly what `uv run katsched daemon` installs, plus the `dev` group's tools."""

import nox

nox.options.default_venv_backend = "uv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True


def sync(session: nox.Session, *selection: str) -> None:
    """Install the locked versions of `selection` (uv sync options) into the session's virtualenv."""
    session.run_install(
        "uv",
        "sync",
        "--locked",
        *selection,
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        external=True,
    )


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The whole test suite: unit, contract and integration (needs RabbitMQ and PostgreSQL on 127.0.0.1)."""
    sync(session, "--extra", "postgres", "--group", "dev")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    sync(session, "--only-group", "dev")
    session.run("ruff", "check", "katsched", "tests", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", "katsched", "tests", "bench", "noxfile.py")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    sync(session, "--extra", "postgres", "--group", "dev")
    session.run("mypy", "katsched")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks: each prints its rates next to a reference measured in the same run."""
    sync(session, "--extra", "postgres", "--group", "dev")
    for script in session.posargs or ["bench/store.py", "bench/cli.py"]:
        session.run("python", script)
