"""Event intake: RabbitMQ consumers that turn OpenKAT's events into tasks (SPEC §5)."""

from katsched.intake.amqp import ConsumerState, ConsumerStats, QueueConsumer
from katsched.intake.messages import (
    BATCH_SIZE,
    Batch,
    Handler,
    decode_mutation,
    decode_raw_file,
    mutation_batches,
    mutation_handler,
    raw_file_handler,
    sample_mutation,
    sample_raw_file,
)
from katsched.intake.publish import Publisher

__all__ = [
    "BATCH_SIZE",
    "Batch",
    "ConsumerState",
    "ConsumerStats",
    "Handler",
    "Publisher",
    "QueueConsumer",
    "decode_mutation",
    "decode_raw_file",
    "mutation_batches",
    "mutation_handler",
    "raw_file_handler",
    "sample_mutation",
    "sample_raw_file",
]
