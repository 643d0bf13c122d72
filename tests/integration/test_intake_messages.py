"""Decoding the two event bodies, and the backoff: no broker needed, but part of the intake suite."""

import json
from datetime import UTC, datetime

import pytest

from katsched.core.models import MutationOperation
from katsched.errors import ConfigError, MessageError
from katsched.intake import (
    QueueConsumer,
    decode_mutation,
    decode_raw_file,
    sample_mutation,
    sample_raw_file,
)
from tests.integration.test_intake_planners import BYTES_EVENT, OCTOPOES_MUTATION

pytestmark = [pytest.mark.amqp, pytest.mark.integration]


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def reason_for(decode: object, raw: bytes) -> str:
    assert callable(decode)
    with pytest.raises(MessageError) as caught:
        decode(raw)
    return str(caught.value)


def test_octopoes_mutations_decode_with_their_extra_fields() -> None:
    mutation = decode_mutation(body(OCTOPOES_MUTATION))
    assert mutation.operation is MutationOperation.CREATE
    assert mutation.client_id == "org1"
    assert mutation.value is not None and mutation.value.scan_profile is not None
    assert mutation.value.scan_profile.level == 2
    deleted = decode_mutation(body(dict(OCTOPOES_MUTATION, operation="delete", value=None)))
    assert deleted.operation is MutationOperation.DELETE and deleted.value is None


def test_bytes_events_decode() -> None:
    event = decode_raw_file(body(BYTES_EVENT))
    assert event.organization == "org1"
    assert event.raw_data.boefje_meta.boefje.id == "dns-records"
    assert event.raw_data.mime_types == [{"value": "boefje/dns-records"}, {"value": "dns-records"}]


def test_the_samples_are_what_the_decoders_expect() -> None:
    mutation = decode_mutation(
        sample_mutation("org2", "IPAddressV4|internet|10.0.0.1", 4, operation="update")
    )
    assert mutation.value is not None and mutation.value.object_type == "IPAddressV4"
    assert (
        decode_mutation(sample_mutation("org2", "Hostname|internet|x", 0, operation="delete")).value is None
    )
    when = datetime(2026, 11, 28, 12, tzinfo=UTC)
    event = decode_raw_file(
        sample_raw_file("org2", "nmap", "IPAddressV4|internet|10.0.0.1", ["a", "b"], ended_at=when)
    )
    assert event.raw_data.boefje_meta.ended_at == when


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        (b"{not json", "invalid JSON: "),
        (b"\xff\xfe", "invalid JSON: "),
        (b"[]", "body: Input should be an object"),
        (
            body(dict(OCTOPOES_MUTATION, operation="rename")),
            "operation: Input should be 'create', 'update' or",
        ),
        (body({k: v for k, v in OCTOPOES_MUTATION.items() if k != "client_id"}), "client_id: Field required"),
        (body(dict(OCTOPOES_MUTATION, value=None)), "value: required for operation create"),
        (
            body(dict(OCTOPOES_MUTATION, operation="update", value=None)),
            "value: required for operation update",
        ),
        (body({"value": None}), "operation: Field required (and 2 more)"),
    ],
)
def test_a_bad_mutation_is_refused_with_a_reason_that_names_the_field(document: bytes, reason: str) -> None:
    assert reason_for(decode_mutation, document).startswith(reason)


def test_a_wrong_scan_level_is_named_by_its_path() -> None:
    document = json.loads(body(OCTOPOES_MUTATION))
    document["value"]["scan_profile"]["level"] = "high"
    assert reason_for(decode_mutation, body(document)).startswith("value.scan_profile.level: Input should be")


def test_a_bad_raw_file_event_is_refused_with_a_reason_that_names_the_field() -> None:
    document = json.loads(body(BYTES_EVENT))
    document["raw_data"]["boefje_meta"]["id"] = "not-a-uuid"
    assert reason_for(decode_raw_file, body(document)).startswith("raw_data.boefje_meta.id: Input should be")
    del document["raw_data"]
    assert reason_for(decode_raw_file, body(document)) == "raw_data: Field required"


def test_a_reason_is_one_short_line() -> None:
    document = dict(OCTOPOES_MUTATION, client_id={"x" * 1000: "\n" * 50})
    reason = reason_for(decode_mutation, body(document))
    assert "\n" not in reason and len(reason) <= 300


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("amqp://guest:guest@127.0.0.1:notaport/", "Port could not be cast"),
        ("amqp://127.0.0.1/?heartbeat=soon", "Invalid heartbeat value"),
        ("amqp://127.0.0.1/?colour=blue", "Unknown URL parameter: 'colour'"),
    ],
)
def test_a_url_pika_cannot_read_is_a_config_error_before_any_connection(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"^\[amqp\] url: ") as caught:
        QueueConsumer(url, "scan_profile_mutations", lambda _body: None)
    assert problem in str(caught.value)
