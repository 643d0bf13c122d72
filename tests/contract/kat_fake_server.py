"""A loopback HTTP server that speaks the wire format of Katalogus, Octopoes and Bytes (reference §6).

One server, three services, each under its own path prefix (`KATALOGUS`, `OCTOPOES`, `BYTES`) so that the
clients' handling of a base URL with a path is exercised too. The state is plain and settable; failures can be
injected (an error status or a delay for the next N requests under a path), and every request is counted.

    with KatFakeServer() as server:
        server.add_organisation(Organisation(id="org1"))
        client = KatalogusClient(ServiceHttp("katalogus", build_client(server.katalogus_url, timeout=1)), ...)

HTTP/1.1 with keep-alive and Nagle off, so that it is fast enough for benchmarks.
"""

import contextlib
import functools
import json
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from katsched.backoff import Backoff
from katsched.clock import Clock
from katsched.core.models import OOI, BoefjeConfig, BoefjeMeta, Organisation, Plugin
from katsched.kat.bytes import BytesClient
from katsched.kat.http import RetryPolicy, ServiceHttp, build_client
from katsched.kat.katalogus import KatalogusClient
from katsched.kat.octopoes import OctopoesClient

KATALOGUS = "/katalogus"
OCTOPOES = "/octopoes"
BYTES = "/bytes-api"

Query = dict[str, list[str]]
_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")  # a route's named group, shown as {name}
Answer = tuple[int, Any]


@dataclass
class _Fault:
    path_prefix: str
    remaining: int
    status: int | None
    delay: float


class KatState:
    """What the three services hold; mutate it through the methods, which take the lock."""

    def __init__(self, username: str = "katsched", password: str = "secret") -> None:
        self.lock = threading.Lock()
        self.username = username
        self.password = password
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.organisations: dict[str, Organisation] = {}
            self.plugins: dict[str, dict[str, Plugin]] = {}
            self.configs: list[BoefjeConfig] = []
            self.objects: dict[str, dict[str, OOI]] = {}
            self.boefje_metas: list[BoefjeMeta] = []
            self.tokens: set[str] = set()
            self.faults: list[_Fault] = []
            self.requests: Counter[tuple[str, str]] = Counter()

    # -- contents --------------------------------------------------------------------------------------------

    def add_organisation(self, organisation: Organisation) -> None:
        with self.lock:
            self.organisations[organisation.id] = organisation
            self.plugins.setdefault(organisation.id, {})
            self.objects.setdefault(organisation.id, {})

    def add_plugin(self, organisation_id: str, plugin: Plugin) -> None:
        with self.lock:
            self.plugins.setdefault(organisation_id, {})[plugin.id] = plugin

    def remove_plugin(self, organisation_id: str, plugin_id: str) -> None:
        with self.lock:
            self.plugins.get(organisation_id, {}).pop(plugin_id, None)

    def add_config(self, config: BoefjeConfig) -> None:
        with self.lock:
            self.configs.append(config)

    def add_object(self, organisation_id: str, ooi: OOI) -> None:
        with self.lock:
            self.objects.setdefault(organisation_id, {})[ooi.primary_key] = ooi

    def add_boefje_meta(self, meta: BoefjeMeta) -> None:
        with self.lock:
            self.boefje_metas.append(meta)

    def revoke_tokens(self) -> None:
        """Every token handed out so far now gets 401, as after Bytes' token lifetime."""
        with self.lock:
            self.tokens.clear()

    # -- failure injection and counting ----------------------------------------------------------------------

    def fail_next(self, count: int, status: int = 500, path_prefix: str = "") -> None:
        with self.lock:
            self.faults.append(_Fault(path_prefix, count, status, 0.0))

    def delay_next(self, count: int, seconds: float, path_prefix: str = "") -> None:
        with self.lock:
            self.faults.append(_Fault(path_prefix, count, None, seconds))

    def hits(self, path: str, method: str = "GET") -> int:
        """Requests received for the full path (prefix included, query excluded)."""
        with self.lock:
            return self.requests[(method, path)]

    def total_hits(self) -> int:
        with self.lock:
            return sum(self.requests.values())

    def hits_by_endpoint(self) -> Counter[str]:
        """Requests received per endpoint, named by its route (`GET /octopoes/{org}/object`), so that the
        requests for many organisations or objects add up under one name; an unknown path counts as is."""
        with self.lock:
            counted = list(self.requests.items())
        found: Counter[str] = Counter()
        for (method, path), count in counted:
            route = next((p.pattern for m, p, _ in ROUTES if m == method and p.fullmatch(path)), path)
            found[method + " " + _GROUP.sub(r"{\1}", route)] += count
        return found

    def clear_hits(self) -> None:
        with self.lock:
            self.requests.clear()

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self.lock:
            self.requests[(method, path)] += 1
            for fault in self.faults:
                if fault.remaining > 0 and path.startswith(fault.path_prefix):
                    fault.remaining -= 1
                    return fault
            return None


# -- the services ------------------------------------------------------------------------------------------


def _dump(model: Any, **extra: Any) -> dict[str, Any]:
    """A model as the service sends it: its fields plus keys of the service's own that we must ignore."""
    return {**model.model_dump(mode="json"), **extra}


def _flag(query: Query, key: str) -> bool | None:
    values = query.get(key)
    return None if not values else values[0].lower() == "true"


def _one(query: Query, key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _katalogus_organisations(state: KatState, args: dict[str, str], query: Query) -> Answer:
    return 200, {org.id: _dump(org, deduplicate=False) for org in state.organisations.values()}


def _katalogus_plugins(state: KatState, args: dict[str, str], query: Query) -> Answer:
    org = args["org"]
    if org not in state.organisations:
        return 404, {"detail": "Unknown organisation"}
    kind, consumes = _one(query, "plugin_type"), set(query.get("consumes", []))
    found = []
    for plugin in state.plugins.get(org, {}).values():
        taken = {plugin.consumes} if isinstance(plugin.consumes, str) else set(plugin.consumes)
        if kind is not None and plugin.type != kind:
            continue
        if plugin.type == "boefje" and (plugin.scan_level or 0) < 0:
            continue  # the Katalogus hides boefjes with a negative scan level from lists
        if consumes and not consumes & taken:
            continue
        found.append(_dump(plugin, static=True))
    return 200, found


def _katalogus_plugin(state: KatState, args: dict[str, str], query: Query) -> Answer:
    plugin = state.plugins.get(args["org"], {}).get(args["plugin"])
    return (404, {"detail": "Plugin not found"}) if plugin is None else (200, _dump(plugin, static=True))


def _katalogus_configs(state: KatState, args: dict[str, str], query: Query) -> Answer:
    org, boefje, enabled = _one(query, "organisation_id"), _one(query, "boefje_id"), _flag(query, "enabled")
    with_duplicates = bool(_flag(query, "with_duplicates")) and org is not None and boefje is not None
    answer = []
    for config in state.configs:
        if (org and config.organisation_id != org) or (boefje and config.boefje_id != boefje):
            continue
        if enabled is not None and config.enabled != enabled:
            continue
        twins = [
            _dump(other)
            for other in state.configs
            if with_duplicates
            and other.boefje_id == config.boefje_id
            and other.organisation_id != config.organisation_id
            and other.enabled
            and other.settings == config.settings
        ]
        answer.append({**_dump(config), "duplicates": twins})
    return 200, answer


def _ooi(ooi: OOI) -> dict[str, Any]:
    body = _dump(ooi, user_id=None)
    if body["scan_profile"] is not None:
        body["scan_profile"]["user_id"] = None
    return body


def _bad_valid_time(query: Query) -> Answer | None:
    """Octopoes requires a valid_time on every object query; check ours parses as an aware datetime."""
    try:
        if datetime.fromisoformat(_one(query, "valid_time") or "").tzinfo is not None:
            return None
    except ValueError:
        pass
    return 422, {"detail": "valid_time must be an aware ISO 8601 datetime"}


def _octopoes_objects(state: KatState, args: dict[str, str], query: Query) -> Answer:
    org = args["org"]
    if bad := _bad_valid_time(query):
        return bad
    if org not in state.objects:
        return 404, {"detail": "Unknown client"}
    types, levels = set(query.get("types", [])), {int(level) for level in query.get("scan_level", [])}
    found = [
        ooi
        for _, ooi in sorted(state.objects[org].items())
        if (not types or ooi.object_type in types)
        and (not levels or (ooi.scan_profile is not None and ooi.scan_profile.level in levels))
    ]
    offset, limit = int(_one(query, "offset") or 0), int(_one(query, "limit") or 50)
    return 200, {"count": len(found), "items": [_ooi(ooi) for ooi in found[offset : offset + limit]]}


def _octopoes_object(state: KatState, args: dict[str, str], query: Query) -> Answer:
    if bad := _bad_valid_time(query):
        return bad
    ooi = state.objects.get(args["org"], {}).get(_one(query, "reference") or "")
    return (404, {"detail": "Object not found"}) if ooi is None else (200, _ooi(ooi))


def _octopoes_object_clients(state: KatState, args: dict[str, str], query: Query) -> Answer:
    if bad := _bad_valid_time(query):
        return bad
    reference = _one(query, "reference") or ""
    clients = query.get("clients", [])
    return 200, {
        org: _ooi(state.objects[org][reference]) for org in clients if reference in state.objects.get(org, {})
    }


def _healthy(state: KatState, args: dict[str, str], query: Query) -> Answer:
    return 200, {"service": "fake", "healthy": True, "version": "0", "additional": None, "results": []}


def _bytes_login(state: KatState, form: Query) -> Answer:
    if _one(form, "username") != state.username or _one(form, "password") != state.password:
        return 401, {"detail": "Incorrect username or password"}
    token = uuid.uuid4().hex
    state.tokens.add(token)
    return 200, {"access_token": token, "token_type": "bearer", "expires_at": "2099-01-01T00:00:00+00:00"}


def _bytes_boefje_meta(state: KatState, args: dict[str, str], query: Query) -> Answer:
    """Bytes' runs of an organisation, each filter optional: without `boefje_id` the runs of every boefje
    (on `input_ooi`), newest first when `descending`; `limit` defaults to 1 as in Bytes."""
    boefje, ooi, org = _one(query, "boefje_id"), _one(query, "input_ooi"), _one(query, "organization")
    if org is None:
        return 422, {"detail": [{"loc": ["query", "organization"], "msg": "Field required"}]}
    found = [
        meta
        for meta in state.boefje_metas
        if (boefje is None or meta.boefje.id == boefje)
        and (ooi is None or meta.input_ooi == ooi)
        and meta.organization == org
    ]
    found.sort(key=lambda meta: meta.started_at.timestamp() if meta.started_at else float("-inf"))
    if _flag(query, "descending"):
        found.reverse()
    offset, limit = int(_one(query, "offset") or 0), int(_one(query, "limit") or 1)
    return 200, [_dump(meta, runnable_hash=None) for meta in found[offset : offset + limit]]


Handler = Callable[[KatState, dict[str, str], Query], Answer]
_ORG, _PLUGIN = r"(?P<org>[^/]+)", r"(?P<plugin>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    ("GET", re.compile(pattern), handler)
    for pattern, handler in [
        (f"{KATALOGUS}/health", _healthy),
        (f"{KATALOGUS}/v1/organisations", _katalogus_organisations),
        (f"{KATALOGUS}/v1/organisations/{_ORG}/plugins", _katalogus_plugins),
        (f"{KATALOGUS}/v1/organisations/{_ORG}/plugins/{_PLUGIN}", _katalogus_plugin),
        (f"{KATALOGUS}/v1/configs", _katalogus_configs),
        (f"{OCTOPOES}/object-clients", _octopoes_object_clients),
        (f"{OCTOPOES}/{_ORG}/health", _healthy),
        (f"{OCTOPOES}/{_ORG}/objects", _octopoes_objects),
        (f"{OCTOPOES}/{_ORG}/object", _octopoes_object),
        (f"{BYTES}/health", _healthy),
        (f"{BYTES}/bytes/boefje_meta", _bytes_boefje_meta),
    ]
]


def _bearer_ok(state: KatState, header: str | None) -> bool:
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and token in state.tokens


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    disable_nagle_algorithm = True  # headers and body go out at once, without a 40 ms delayed-ACK stall
    server: "_Server"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # a client that gave up (timeout) while we were delaying
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean; `KatState.hits` is the record

    def _serve(self, method: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = state._take_fault(method, url.path)
        if fault is not None and fault.status is not None:
            self._send(fault.status, {"detail": "injected failure"})
            return
        if fault is not None:
            time.sleep(fault.delay)  # simulates a slow service; the client's timeout is under test
        with state.lock:
            status, answer = self._route(state, method, url.path, parse_qs(url.query), body)
        self._send(status, answer)

    def _route(self, state: KatState, method: str, path: str, query: Query, body: bytes) -> Answer:
        if method == "POST" and path == f"{BYTES}/token":
            return _bytes_login(state, parse_qs(body.decode()))
        if path.startswith(f"{BYTES}/bytes/") and not _bearer_ok(state, self.headers.get("Authorization")):
            return 401, {"detail": "Invalid token"}
        for route_method, pattern, handler in ROUTES:
            match = pattern.fullmatch(path)
            if match is not None and route_method == method:
                return handler(
                    state, {key: unquote(value) for key, value in match.groupdict().items()}, query
                )
        return 404, {"detail": "Not Found"}

    def _send(self, status: int, answer: Any) -> None:
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: KatState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state


class KatFakeServer(KatState):
    """The three services on 127.0.0.1, on a free port, served from a background thread."""

    def __init__(self, username: str = "katsched", password: str = "secret") -> None:
        super().__init__(username, password)
        self._server = _Server(self)
        # A short poll interval, so that closing the server does not wait half a second.
        serve = functools.partial(self._server.serve_forever, poll_interval=0.02)
        self._thread = threading.Thread(target=serve, name="kat-fake-server", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.katalogus_url = self.url + KATALOGUS
        self.octopoes_url = self.url + OCTOPOES
        self.bytes_url = self.url + BYTES

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "KatFakeServer":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def refused_url() -> str:
    """A loopback URL on which nothing listens, so that connecting is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


FAST_RETRY = RetryPolicy(attempts=3, backoff=Backoff(initial=0.01, maximum=0.04, jitter=0.0))


@dataclass
class KatClients:
    """The three real clients, connected to a `KatFakeServer`; backoff pauses are recorded, not slept."""

    katalogus: KatalogusClient
    octopoes: OctopoesClient
    bytes: BytesClient
    pauses: list[float] = field(default_factory=list)

    def close(self) -> None:
        for client in (self.katalogus, self.octopoes, self.bytes):
            client.close()


def connect(
    server: KatFakeServer,
    clock: Clock,
    *,
    cache_ttl: float = 30.0,
    retry: RetryPolicy = FAST_RETRY,
    timeout: float = 2.0,
    page_size: int = 1000,
) -> KatClients:
    pauses: list[float] = []

    def http(service: str, url: str) -> ServiceHttp:
        return ServiceHttp(service, build_client(url, timeout=timeout), retry=retry, sleep=pauses.append)

    return KatClients(
        katalogus=KatalogusClient(http("katalogus", server.katalogus_url), clock=clock, cache_ttl=cache_ttl),
        octopoes=OctopoesClient(http("octopoes", server.octopoes_url), page_size=page_size),
        bytes=BytesClient(
            http("bytes", server.bytes_url), username=server.username, password=server.password
        ),
        pauses=pauses,
    )
