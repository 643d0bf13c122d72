"""The one exception tree of katsched.

Adapters translate library errors into these classes once, at the boundary; the CLI maps each branch to a
one-line message and an exit code (see ``katsched.cli``), the HTTP API to a status code.

A bug is not translated: a SQL statement that does not compile, a missing column, a programming error in
our code propagates as the library raised it, with its traceback, and fails its unit of work loudly (API 500,
a dead-lettered message, an ERROR line from a recurring job). Only what is on purpose is a `KatschedError`.

    KatschedError
    ├── ConfigError            a config file that cannot be used
    ├── StorageError           the database cannot be used as it is (no file, schema behind, no driver)
    │   ├── StorageUnavailable   transient: cannot connect, connection lost, locked past the busy timeout
    │   └── InvalidValue         the database refuses a value (out of range, NUL, a constraint): 400
    ├── WouldWait              asked not to wait, it would have had to (the API's event loop hands it on)
    ├── StartupError           the daemon or API cannot start (port in use, …): exit 1 before READY
    ├── ServiceError           a KAT service (Katalogus, Octopoes, Bytes) failed
    │   └── ServiceUnavailable   transient: refused, timed out, 5xx
    ├── MessageError           a RabbitMQ message that cannot be decoded
    ├── SourceError            a database to import from that katsched cannot read (`db import-mula`)
    └── QueueError             a queue operation was refused
        ├── NotFound             no such task, schedule or scheduler
        ├── InvalidItem          data or priority not valid for the scheduler
        ├── QueueFull            maxsize reached
        ├── NotAllowed           push policy forbids the push (a duplicate is queued)
        ├── InvalidTransition    a status change the transition table forbids
        └── FilterError          a malformed filter
"""

import uuid


class KatschedError(Exception):
    """Root of every error katsched raises on purpose."""


class ConfigError(KatschedError):
    """A configuration file is missing, unreadable or invalid."""


class StorageError(KatschedError):
    """The database could not complete an operation."""


class StorageUnavailable(StorageError):
    """Transient: the database cannot be reached, the connection was lost, or it stayed locked for longer
    than the busy timeout. Retry later: requeue the message, answer 503, defer the job."""


class WouldWait(KatschedError):
    """An operation was asked not to wait, and it would have had to: for the write lock (SQLite), for a free
    connection to the database, or for an answer of a KAT service. Only a caller that asked not to wait
    sees it, and does the operation again where waiting is allowed (the API: on a thread)."""


class InvalidValue(StorageError):
    """The database refuses a value it was given (a number out of range, a NUL character, a constraint
    such as a missing referenced row): retrying will not help; the caller must change it (400,
    dead-letter)."""


class StartupError(KatschedError):
    """The daemon or the API cannot start: a port in use, an unusable database. Fatal, before READY."""


class ServiceError(KatschedError):
    """A KAT service answered with an error."""


class ServiceUnavailable(ServiceError):
    """A KAT service could not be reached or failed transiently; the work is deferred."""


class MessageError(KatschedError):
    """A message body that cannot be decoded into its model."""


class SourceError(KatschedError):
    """The database to import from is not one this import understands (schema revision, tables)."""


class QueueError(KatschedError):
    """A queue operation was refused."""


class NotFound(QueueError):
    """The task, schedule or scheduler does not exist."""


class InvalidItem(QueueError):
    """The pushed task is not valid for its scheduler."""


class QueueFull(QueueError):
    """The queue has reached its maxsize."""


class NotAllowed(QueueError):
    """The push policy forbids this push."""

    # The queued task the push duplicates, when there is one: the CLI names it; the API keeps mula's wording.
    twin_id: uuid.UUID | None = None


class InvalidTransition(QueueError):
    """The transition table forbids this status change."""


class FilterError(QueueError):
    """A filter expression is malformed."""
