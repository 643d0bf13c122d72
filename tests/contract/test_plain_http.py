"""The plain-HTTP transport of the KAT clients against a loopback socket server that answers exactly as each
test scripts it: keep-alive, servers that close connections, malformed and slow answers, chunked gzip."""

import gzip
import socket
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

import httpx
import pytest

from katsched.kat.http import build_client
from katsched.kat.plain_http import PlainHttpTransport

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
# One connection's behaviour: given the socket and the request number (over all connections), answer or not;
# return False to close the connection.
Script = Callable[[socket.socket, int], bool]


class ScriptedServer:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            reader = connection.makefile("rb")
            while True:
                head = _read_head(reader)
                if head is None:
                    return
                reader.read(_content_length(head))
                with self._lock:
                    self.requests.append(head[0])
                    number = len(self.requests)
                if not self.script(connection, number):
                    return

    def close(self) -> None:
        self.listener.close()


def _content_length(head: list[bytes]) -> int:
    lengths = [int(line.split(b":")[1]) for line in head if line.lower().startswith(b"content-length:")]
    return sum(lengths)


def _read_head(reader: BinaryIO) -> list[bytes] | None:
    lines: list[bytes] = []
    while True:
        line = reader.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            return lines
        lines.append(line.rstrip(b"\r\n"))


@pytest.fixture
def serve() -> Iterator[Callable[[Script], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def client_for(server: ScriptedServer, timeout: float = 5.0) -> httpx.Client:
    return build_client(server.url, timeout=timeout)


def answer_ok(connection: socket.socket, _number: int) -> bool:
    connection.sendall(OK)
    return True


def test_an_http_service_gets_the_plain_transport_and_an_https_one_httpx_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    plain, tls = build_client("http://bytes:8002", timeout=1), build_client("https://bytes:8002", timeout=1)
    assert isinstance(plain._transport, PlainHttpTransport)
    assert not isinstance(tls._transport, PlainHttpTransport)


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_a_proxy_in_the_environment_keeps_httpx_transport_which_routes_through_it(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "http://proxy.internal:3128")
    client = build_client("http://bytes.internal:8002", timeout=1)
    routed = client._transport_for_url(httpx.URL("http://bytes.internal:8002/bytes/boefje_meta"))
    assert not isinstance(routed, PlainHttpTransport)
    assert isinstance(routed, httpx.HTTPTransport) and routed is not client._transport  # the proxy's


def test_requests_share_one_kept_alive_connection(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(answer_ok)
    with client_for(server) as client:
        answers = [client.get("/bytes/boefje_meta", params={"limit": n}).json() for n in range(20)]
    assert answers == [{"ok": True}] * 20
    assert server.connections == 1
    assert server.requests[3] == b"GET /bytes/boefje_meta?limit=3 HTTP/1.1"


class AnswerThenClose:
    """Answers keep-alive, then closes the connection (a server's idle timeout), and says when."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def __call__(self, connection: socket.socket, number: int) -> bool:
        self.closed.clear()
        connection.sendall(OK)
        connection.close()
        self.closed.set()
        return False


def test_an_idle_connection_the_server_closed_is_not_used_again(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    script = AnswerThenClose()
    server = serve(script)
    with client_for(server) as client:
        for _ in range(3):
            # a POST is never sent twice, so it must not go out on the closed connection
            assert client.post("/token", data={"username": "u"}).status_code == 200
            assert script.closed.wait(5)
    assert server.requests == [b"POST /token HTTP/1.1"] * 3
    assert server.connections == 3


def test_a_get_the_server_dropped_on_a_reused_connection_is_sent_once_more(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    server = serve(lambda connection, number: number != 2 and answer_ok(connection, number))
    with client_for(server) as client:
        assert client.get("/first").status_code == 200
        assert client.get("/second").status_code == 200  # dropped unanswered, repeated on a new connection
    assert server.requests == [b"GET /first HTTP/1.1", b"GET /second HTTP/1.1", b"GET /second HTTP/1.1"]
    assert server.connections == 2


def test_a_post_the_server_dropped_is_not_repeated(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(lambda connection, number: number != 2 and answer_ok(connection, number))
    with client_for(server) as client:
        assert client.get("/first").status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="closed the connection"):
            client.post("/token", data={"username": "u"})
    assert server.requests == [b"GET /first HTTP/1.1", b"POST /token HTTP/1.1"]


def test_a_malformed_answer_is_a_protocol_error(serve: Callable[[Script], ScriptedServer]) -> None:
    def garbage(connection: socket.socket, _number: int) -> bool:
        connection.sendall(b"HTTP/1.1 two hundred\r\n\r\n")
        return False

    refused = pytest.raises(httpx.RemoteProtocolError, match="BadStatusLine")
    with client_for(serve(garbage)) as client, refused:
        client.get("/health")


def test_an_answer_that_does_not_come_is_a_read_timeout(serve: Callable[[Script], ScriptedServer]) -> None:
    silent = threading.Event()

    def never(_connection: socket.socket, _number: int) -> bool:
        silent.wait(10)
        return False

    server = serve(never)
    try:
        with client_for(server, timeout=0.2) as client, pytest.raises(httpx.ReadTimeout):
            client.get("/health")
    finally:
        silent.set()


def test_a_refused_connection_is_a_connect_error() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    with build_client(f"http://127.0.0.1:{port}", timeout=1) as client, pytest.raises(httpx.ConnectError):
        client.get("/health")


def test_a_chunked_gzip_answer_is_decoded(serve: Callable[[Script], ScriptedServer]) -> None:
    body = gzip.compress(b'[{"id":"dns-records"}]')

    def chunked(connection: socket.socket, _number: int) -> bool:
        halves = [body[:10], body[10:]]
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in halves) + b"0\r\n\r\n"
        head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
        connection.sendall(head + chunks)
        return True

    with client_for(serve(chunked)) as client:
        assert client.get("/v1/organisations/o1/plugins").json() == [{"id": "dns-records"}]


def test_concurrent_requests_use_at_most_max_connections(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(answer_ok)
    transport = PlainHttpTransport(max_connections=2)
    with httpx.Client(base_url=server.url, transport=transport, timeout=5) as client:

        def ten() -> None:
            for _ in range(10):
                client.get("/bytes/boefje_meta").raise_for_status()

        threads = [threading.Thread(target=ten) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(server.requests) == 60
    assert server.connections <= 2  # the others waited for a connection instead of opening one


def test_a_request_that_finds_no_free_connection_in_time_is_a_pool_timeout(
    serve: Callable[[Script], ScriptedServer],
) -> None:
    arrived, answering = threading.Event(), threading.Event()

    def slow(connection: socket.socket, number: int) -> bool:
        arrived.set()
        return answering.wait(10) and answer_ok(connection, number)

    server = serve(slow)
    transport = PlainHttpTransport(max_connections=1)
    with httpx.Client(base_url=server.url, transport=transport, timeout=httpx.Timeout(5, pool=0.1)) as client:
        first = threading.Thread(target=lambda: client.get("/slow"))
        first.start()
        try:
            assert arrived.wait(5)  # the one connection is taken
            with pytest.raises(httpx.PoolTimeout):
                client.get("/waits")
        finally:
            answering.set()
            first.join()
