"""`katsched db`: the schema."""

import typer

from katsched.cli.common import ConfigOption, console, open_engine
from katsched.config import load_settings
from katsched.store.migrate import current_revision

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade_command(config: ConfigOption = None) -> None:
    """Apply every pending migration (the daemon also does this when it starts)."""
    settings = load_settings(config)
    engine = open_engine(settings)
    console.print(f"database at revision {current_revision(engine)}")
