"""The one client factory, retry policy and error translation of `katsched.kat.http`, through httpx's
transport seam: every answer is scripted, nothing touches the network."""

from collections.abc import Callable, Iterator

import httpx
import pytest
from pydantic import TypeAdapter

from katsched import __version__
from katsched.backoff import Backoff
from katsched.errors import ServiceError, ServiceUnavailable
from katsched.kat.http import RetryPolicy, ServiceHttp, build_client

Script = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A transport that answers from a list of scripted responses (or exceptions) and keeps the requests."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self._answers: Iterator[httpx.Response | Exception] = iter(answers)
        self.requests: list[httpx.Request] = []
        self.pauses: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = next(self._answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def http(
        self, retry: RetryPolicy | None = None, base_url: str = "http://katalogus.test/api"
    ) -> ServiceHttp:
        client = build_client(base_url, timeout=1.0, transport=httpx.MockTransport(self))
        return ServiceHttp("katalogus", client, retry=retry or RetryPolicy(), sleep=self.pauses.append)


def ok(body: object = None) -> httpx.Response:
    return httpx.Response(200, json=body if body is not None else {})


def status(code: int, **headers: str) -> httpx.Response:
    return httpx.Response(code, json={"detail": "scripted"}, headers=headers)


def refused() -> httpx.ConnectError:
    return httpx.ConnectError("[Errno 111] Connection refused")


# -- build_client --------------------------------------------------------------------------------------------


def test_client_sends_user_agent_and_keeps_base_path() -> None:
    recorder = Recorder(ok())
    recorder.http().request("GET", "/v1/organisations")
    [request] = recorder.requests
    assert request.headers["User-Agent"] == f"katsched/{__version__}"
    assert request.url == "http://katalogus.test/api/v1/organisations"


def test_client_factory_options() -> None:
    client = build_client("http://x.test", timeout=3.5, user_agent="probe/1")
    try:
        assert client.timeout == httpx.Timeout(3.5)
        assert client.headers["User-Agent"] == "probe/1"
    finally:
        client.close()


def test_query_parameters_repeat_lists_and_leave_out_none() -> None:
    recorder = Recorder(ok())
    params = {"types": ["Hostname", "IPAddressV4"], "input_ooi": None, "descending": True, "limit": 1}
    recorder.http().request("GET", "/objects", params=params)
    assert recorder.requests[0].url.query == b"types=Hostname&types=IPAddressV4&descending=true&limit=1"


# -- RetryPolicy ---------------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=8, backoff=Backoff(initial=0.5, maximum=5.0, jitter=0.0))
    assert [policy.delay(retry) for retry in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_retry_after_may_only_lengthen_the_pause_up_to_the_cap() -> None:
    policy = RetryPolicy()  # the default: 0.5 s doubling, capped at 10 s
    assert policy.delay(1, retry_after=3.0) == 3.0
    assert policy.delay(3, retry_after=0.1) == 2.0
    assert policy.delay(1, retry_after=3600.0) == 10.0


def test_a_policy_needs_an_attempt() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


# -- ServiceHttp.request -------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [429, 500, 502, 503, 504])
def test_transient_status_is_retried_then_succeeds(code: int) -> None:
    recorder = Recorder(status(code), status(code), ok({"fine": True}))
    response = recorder.http().request("GET", "/v1/organisations")
    assert response is not None and response.json() == {"fine": True}
    assert len(recorder.requests) == 3
    assert recorder.pauses == [0.5, 1.0]


def test_retry_after_header_is_honoured() -> None:
    recorder = Recorder(status(429, **{"Retry-After": "3"}), ok())
    recorder.http().request("GET", "/v1/organisations")
    assert recorder.pauses == [3.0]


def test_transient_status_until_attempts_run_out() -> None:
    recorder = Recorder(*[status(503)] * 4)
    with pytest.raises(ServiceUnavailable) as caught:
        recorder.http().request("GET", "/v1/organisations")
    assert str(caught.value) == "katalogus: GET /api/v1/organisations answered 503 after 4 attempts"
    assert len(recorder.requests) == 4
    assert recorder.pauses == [0.5, 1.0, 2.0]


@pytest.mark.parametrize(
    "error",
    [refused(), httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), httpx.RemoteProtocolError("cut")],
    ids=lambda error: type(error).__name__,
)
def test_transport_failures_are_transient(error: Exception) -> None:
    recorder = Recorder(error, error)
    with pytest.raises(ServiceUnavailable, match=f"failed: {type(error).__name__} after 2 attempts"):
        recorder.http(RetryPolicy(attempts=2)).request("GET", "/v1/organisations")
    assert len(recorder.requests) == 2


def test_a_transport_failure_then_success() -> None:
    recorder = Recorder(refused(), ok([1]))
    response = recorder.http().request("GET", "/v1/organisations")
    assert response is not None and response.json() == [1]
    assert recorder.pauses == [0.5]


def test_404_is_absent_and_not_retried() -> None:
    recorder = Recorder(status(404))
    assert recorder.http().request("GET", "/v1/organisations/org1/plugins/nope") is None
    assert len(recorder.requests) == 1
    assert recorder.pauses == []


@pytest.mark.parametrize("code", [400, 401, 403, 409, 422])
def test_other_errors_are_translated_once_without_retry(code: int) -> None:
    recorder = Recorder(status(code))
    with pytest.raises(ServiceError) as caught:
        recorder.http().request("GET", "/v1/configs", params={"boefje_id": "dns"})
    assert type(caught.value) is ServiceError
    message = str(caught.value)
    assert message.startswith(f"katalogus: GET /api/v1/configs answered {code} ")
    assert "\n" not in message
    assert len(recorder.requests) == 1


def test_a_broken_setup_is_not_retried() -> None:
    recorder = Recorder(httpx.UnsupportedProtocol("ftp is not http"))
    with pytest.raises(ServiceError, match="failed: UnsupportedProtocol") as caught:
        recorder.http().request("GET", "/v1/organisations")
    assert not isinstance(caught.value, ServiceUnavailable)
    assert recorder.pauses == []


# -- decoding and health -------------------------------------------------------------------------------------


def test_get_as_validates_the_body() -> None:
    recorder = Recorder(ok({"a": 1, "b": 2}))
    assert recorder.http().get_as("/numbers", TypeAdapter(dict[str, int])) == {"a": 1, "b": 2}


def test_a_body_that_does_not_fit_is_a_service_error() -> None:
    recorder = Recorder(ok({"a": "one"}), httpx.Response(200, content=b"<html>"))
    http = recorder.http()
    with pytest.raises(
        ServiceError, match=r"katalogus: GET /api/numbers answered a body that does not fit: a: "
    ):
        http.get_as("/numbers", TypeAdapter(dict[str, int]))
    with pytest.raises(ServiceError, match="does not fit"):
        http.get_as("/numbers", TypeAdapter(dict[str, int]))


def test_get_as_absent_is_none() -> None:
    recorder = Recorder(status(404))
    assert recorder.http().get_as("/numbers", TypeAdapter(dict[str, int])) is None


@pytest.mark.parametrize(
    ("answer", "healthy"),
    [
        (ok({"healthy": True}), True),
        (ok({"healthy": False}), False),
        (ok([]), False),
        (httpx.Response(200, content=b"not json"), False),
        (status(503), False),
        (status(404), False),
        (refused(), False),
    ],
)
def test_health_never_raises_and_never_retries(answer: httpx.Response | Exception, healthy: bool) -> None:
    recorder = Recorder(answer)
    assert recorder.http().healthy("/health") is healthy
    assert len(recorder.requests) == 1
    assert recorder.pauses == []
