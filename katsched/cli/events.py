"""`katsched events`: publish sample OpenKAT events, to check that RabbitMQ is wired to a running daemon."""

import json
import uuid
from typing import Annotated

import typer

from katsched.cli.common import ConfigOption, JsonOption, console, load, print_json

app = typer.Typer(help="Publish sample OpenKAT events to RabbitMQ.", no_args_is_help=True)
publish_test = typer.Typer(
    help="Publish one sample event, exactly as Octopoes or Bytes would, to the configured queue.",
    no_args_is_help=True,
)
app.add_typer(publish_test, name="publish-test")

OrgOption = Annotated[str, typer.Option("--org", "-o", help="Organisation code.")]
UrlOption = Annotated[
    str | None, typer.Option("--url", help="RabbitMQ URL (default: [amqp] url of the config file).")
]
QueueOption = Annotated[str | None, typer.Option("--queue", help="Queue (default: from the config file).")]


def _publish(url: str, queue: str, body: bytes, *, persistent: bool, as_json: bool, what: str) -> None:
    from katsched.intake.publish import Publisher, broker_address

    with Publisher(url) as publisher:
        publisher.declare(queue)
        publisher.publish(queue, body, persistent=persistent)
    if as_json:
        print_json({"queue": queue, "broker": broker_address(url), "body": json.loads(body)})
    else:
        console().print(
            f"published {what} to {queue} at {broker_address(url)}", soft_wrap=True, highlight=False
        )


@publish_test.command("mutation")
def mutation_command(
    org: OrgOption,
    ooi: Annotated[
        str,
        typer.Option(
            "--ooi",
            help="Object reference, e.g. 'Hostname|internet|example.com' (quoted: | is a pipe to the shell).",
        ),
    ] = "Hostname|internet|example.com",
    level: Annotated[int, typer.Option("--level", min=0, max=4, help="Scan level.")] = 2,
    operation: Annotated[str, typer.Option("--operation", help="create, update or delete.")] = "create",
    url: UrlOption = None,
    queue: QueueOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """A scan-profile mutation, as Octopoes publishes it (persistent)."""
    if operation not in ("create", "update", "delete"):
        raise typer.BadParameter("must be create, update or delete", param_hint="--operation")
    from katsched.intake.messages import sample_mutation

    amqp = load(config).amqp
    body = sample_mutation(org, ooi, level, operation=operation)
    what = f"{operation} mutation of {ooi} (level {level}, org {org})"
    _publish(
        url or amqp.url, queue or amqp.mutations_queue, body, persistent=True, as_json=as_json, what=what
    )


@publish_test.command("raw-file")
def raw_file_command(
    org: OrgOption,
    boefje: Annotated[
        str, typer.Option("--boefje", help="Id of the boefje that made the file.")
    ] = "dns-records",
    ooi: Annotated[
        str, typer.Option("--ooi", help="The boefje's input object.")
    ] = "Hostname|internet|example.com",
    mime_types: Annotated[
        list[str] | None, typer.Option("--mime-type", "-m", help="Mime type of the file; repeat for more.")
    ] = None,
    url: UrlOption = None,
    queue: QueueOption = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """A raw-file-received event, as Bytes publishes it (not persistent)."""
    from katsched.clock import SystemClock
    from katsched.intake.messages import sample_raw_file

    amqp = load(config).amqp
    mimes = mime_types or [f"boefje/{boefje}"]
    body = sample_raw_file(org, boefje, ooi, mimes, ended_at=SystemClock().now(), raw_file_id=uuid.uuid4())
    what = f"raw file of {boefje} on {ooi} ({', '.join(mimes)}, org {org})"
    _publish(
        url or amqp.url, queue or amqp.raw_files_queue, body, persistent=False, as_json=as_json, what=what
    )
