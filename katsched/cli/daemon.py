"""`katsched daemon`: run the scheduler until SIGTERM or SIGINT."""

import typer

from katsched.cli.common import ConfigOption


def daemon_command(config: ConfigOption = None) -> None:
    """Run the scheduler in the foreground (as a systemd service does)."""
    from katsched.daemon import run

    raise typer.Exit(run(config))
