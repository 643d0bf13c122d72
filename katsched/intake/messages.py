"""The two event bodies OpenKAT publishes (reference §5.1): decoding, handlers, and samples for operators.

Decoding is strict about what the planners need and lenient about the rest: extra keys are ignored, because
Octopoes and Bytes add fields of their own over time. A body that cannot be used raises `MessageError` with a
one-line reason that names the field, and the consumer moves it to the dead-letter queue.
"""

import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from katsched.core.models import MutationOperation, RawDataReceivedEvent, ScanProfileMutation
from katsched.errors import MessageError

Handler = Callable[[bytes], object]
"""Decodes one message body and does its work; returns once the work is committed.

Raises `MessageError` for a body that can never be processed and `InvalidValue` for a value the database
refuses (both dead-lettered), `ServiceError` or `StorageUnavailable` for a transient failure (requeued with
backoff). Anything else is a bug: dead-lettered with an ERROR line and its traceback."""

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

# Past ~100 mutations a batch gains little (the commit is already shared by 300 tasks) and only holds its
# messages longer; below it, commits and index page writes dominate the cost of a message.
BATCH_SIZE = 100


@dataclass(frozen=True)
class Batch(Generic[T]):
    """Handles up to `size` waiting messages at once: each body is decoded on its own (`decode` raises
    `MessageError` for poison, which is dead-lettered alone), then the sound ones are planned together by one
    `plan` call, which commits them (one transaction instead of one per message) before they are all acked.
    `plan` must be idempotent, as a handler is: a batch that fails is requeued, or retried one by one."""

    decode: Callable[[bytes], T]
    plan: Callable[[Sequence[T]], object]
    size: int = BATCH_SIZE

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError("a batch holds at least one message")


def single(handler: Handler) -> Batch[bytes]:
    """A per-message handler as a batch of one, so that the workers know one kind of work."""

    def plan(bodies: Sequence[bytes]) -> object:
        return handler(bodies[0])

    return Batch(decode=_identity, plan=plan, size=1)


def _identity(body: bytes) -> bytes:
    return body


_REASON_LIMIT = 300


class MutationPlanner(Protocol):
    def plan_for_mutation(self, mutation: ScanProfileMutation) -> object: ...


class MutationBatchPlanner(Protocol):
    def plan_for_mutations(self, mutations: Sequence[ScanProfileMutation]) -> object: ...


class RawFilePlanner(Protocol):
    def plan_for_raw_file(self, event: RawDataReceivedEvent) -> object: ...


def one_line(text: str, limit: int = _REASON_LIMIT) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def quoted(text: str) -> str:
    """`text` in double quotes, as one token of a `key=value` log line."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reason(error: ValidationError) -> str:
    first = error.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return one_line(f"invalid JSON: {first['msg']}")
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = error.error_count() - 1
    suffix = f" (and {more} more)" if more else ""
    return one_line(f"{where}: {first['msg']}{suffix}")


def _decode(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as error:
        raise MessageError(_reason(error)) from None
    except UnicodeDecodeError:
        raise MessageError("body is not UTF-8") from None


def decode_mutation(body: bytes) -> ScanProfileMutation:
    """A scan-profile mutation as Octopoes publishes it; create and update must carry the object."""
    mutation = _decode(ScanProfileMutation, body)
    if mutation.operation is not MutationOperation.DELETE and mutation.value is None:
        raise MessageError(f"value: required for operation {mutation.operation.value}")
    return mutation


def decode_raw_file(body: bytes) -> RawDataReceivedEvent:
    """A raw-file-received event as Bytes publishes it."""
    return _decode(RawDataReceivedEvent, body)


def mutation_handler(planner: MutationPlanner) -> Handler:
    def handle(body: bytes) -> object:
        return planner.plan_for_mutation(decode_mutation(body))

    return handle


def mutation_batches(planner: MutationBatchPlanner, size: int = BATCH_SIZE) -> Batch[ScanProfileMutation]:
    """Mutations planned `size` at a time, for a planner that can (see `Batch`)."""
    return Batch(decode=decode_mutation, plan=planner.plan_for_mutations, size=size)


def raw_file_handler(planner: RawFilePlanner) -> Handler:
    def handle(body: bytes) -> object:
        return planner.plan_for_raw_file(decode_raw_file(body))

    return handle


# Samples, in the exact shapes the producers publish, for `katsched events publish-test` and the tests.


def sample_mutation(
    organisation: str,
    reference: str,
    level: int,
    *,
    operation: str = "create",
    scan_profile_type: str = "declared",
) -> bytes:
    """A ScanProfileMutation body as Octopoes' EventManager builds it; `value` is null for a delete."""
    object_type = reference.split("|", 1)[0]
    value = {
        "primary_key": reference,
        "object_type": object_type,
        "scan_profile": {
            "scan_profile_type": scan_profile_type,
            "reference": reference,
            "level": level,
            "user_id": None,
        },
    }
    document = {
        "operation": operation,
        "primary_key": reference,
        "value": None if operation == "delete" else value,
        "client_id": organisation,
    }
    return json.dumps(document).encode()


def sample_raw_file(
    organisation: str,
    boefje_id: str,
    input_ooi: str,
    mime_types: Sequence[str],
    *,
    ended_at: datetime,
    raw_file_id: uuid.UUID | None = None,
    boefje_meta_id: uuid.UUID | None = None,
) -> bytes:
    """A RawFileReceived body as Bytes' RabbitMQEventManager builds it."""
    started = ended_at.isoformat()
    boefje_meta = {
        "id": str(boefje_meta_id or uuid.uuid4()),
        "started_at": started,
        "ended_at": started,
        "boefje": {"id": boefje_id, "version": None},
        "input_ooi": input_ooi,
        "arguments": {},
        "organization": organisation,
        "runnable_hash": None,
        "environment": {},
    }
    raw_data = {
        "id": str(raw_file_id or uuid.uuid4()),
        "boefje_meta": boefje_meta,
        "mime_types": [{"value": mime} for mime in mime_types],
        "secure_hash": None,
        "signing_provider_url": None,
        "hash_retrieval_link": None,
    }
    document = {
        "event_id": "raw_file_received",
        "created_at": started,
        "organization": organisation,
        "raw_data": raw_data,
    }
    return json.dumps(document).encode()
