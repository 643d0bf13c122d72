"""pika at the edge: connection parameters, and its errors as one line (shared by consumer and publisher)."""

import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pika
import pika.exceptions

from katsched.errors import ConfigError
from katsched.intake.messages import one_line

BLOCKED_CONNECTION_TIMEOUT = 60.0  # a broker in a resource alarm blocks publishers; reconnect, don't hang


def connection_parameters(url: str, connection_name: str) -> Any:
    """pika parameters for `url`; a URL pika cannot read is a configuration error, found before any I/O."""
    try:
        parameters = pika.URLParameters(url)
    except Exception as error:
        raise ConfigError(f"[amqp] url: {one_line(str(error))}") from None
    parameters.client_properties = {"connection_name": connection_name}
    if "blocked_connection_timeout" not in parse_qs(urlsplit(url).query):
        parameters.blocked_connection_timeout = BLOCKED_CONNECTION_TIMEOUT
    return parameters


def mismatch(queue: str, reply_text: str) -> str:
    return (
        f"queue {queue} exists with other arguments ({one_line(reply_text)}); katsched never deletes a "
        "queue: re-create it durable and without arguments, or configure another queue name"
    )


def describe_error(error: BaseException) -> str:
    """One line naming the error and its cause."""
    if isinstance(error, pika.exceptions.AMQPError):
        return one_line(repr(error))  # pika's str() is often empty; its repr names the cause
    text = one_line(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def quietly(action: Callable[[], object]) -> None:
    """Best effort while tearing down: the connection may already be gone."""
    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
        action()
