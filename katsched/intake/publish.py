"""Publishing as Octopoes and Bytes do (default exchange, queue name as routing key), for operators checking
their wiring (`katsched events publish-test`), for the tests and for the benchmark."""

import contextlib
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import pika
import pika.exceptions

from katsched.errors import ServiceError, ServiceUnavailable
from katsched.intake._connection import connection_parameters, describe_error


def broker_address(url: str) -> str:
    """The AMQP URL without its credentials and query, for messages and logs."""
    parts = urlsplit(url)
    scheme = parts.scheme or "amqp"
    port = parts.port or (5671 if scheme == "amqps" else 5672)
    return f"{scheme}://{parts.hostname or 'localhost'}:{port}{parts.path or '/'}"


class Publisher:
    """A connection for publishing. `confirm=True` waits for the broker to hold each message."""

    def __init__(
        self, url: str, *, confirm: bool = True, connection_name: str = "katsched publisher"
    ) -> None:
        self._url = url
        self._parameters = connection_parameters(url, connection_name)
        self._confirm = confirm
        self._connection: Any = None
        self._channel: Any = None

    def __enter__(self) -> "Publisher":
        try:
            self._connection = pika.BlockingConnection(self._parameters)
            self._channel = self._connection.channel()
            if self._confirm:
                self._channel.confirm_delivery()
        except pika.exceptions.AMQPError as error:
            raise ServiceUnavailable(
                f"RabbitMQ at {broker_address(self._url)}: {describe_error(error)}"
            ) from None
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None and self._connection.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError):
                self._connection.close()
        self._connection = None

    def declare(self, queue: str) -> None:
        """Makes sure the queue exists, durable, as the consumers declare it."""
        try:
            self._channel.queue_declare(queue=queue, durable=True)
        except pika.exceptions.ChannelClosedByBroker as error:
            raise ServiceError(f"queue {queue}: {describe_error(error)}") from None

    def publish(self, queue: str, body: bytes, *, persistent: bool = True) -> None:
        properties = pika.BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent if persistent else pika.DeliveryMode.Transient,
        )
        try:
            self._channel.basic_publish(exchange="", routing_key=queue, body=body, properties=properties)
        except pika.exceptions.AMQPError as error:
            raise ServiceUnavailable(f"publishing to {queue}: {describe_error(error)}") from None
