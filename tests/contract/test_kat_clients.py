"""What only the real KAT clients do: caching, login, retries, failures; over loopback to our fake server."""

import threading
from collections.abc import Iterator

import pytest

from katsched.backoff import Backoff
from katsched.core.models import Organisation
from katsched.errors import ServiceError, ServiceUnavailable, WouldWait
from katsched.kat.bytes import BytesClient
from katsched.kat.http import RetryPolicy, ServiceHttp, build_client
from katsched.kat.katalogus import KatalogusClient
from katsched.kat.octopoes import OctopoesClient
from katsched.testing import FakeClock

from .kat_fake_server import BYTES, KATALOGUS, OCTOPOES, KatClients, KatFakeServer, connect, refused_url
from .test_kat_ports import NOW, boefje, meta, normalizer, ooi

PLUGINS = f"{KATALOGUS}/v1/organisations/org1/plugins"
BOEFJE_META = f"{BYTES}/bytes/boefje_meta"
TOKEN = f"{BYTES}/token"


@pytest.fixture(scope="module")
def server() -> Iterator[KatFakeServer]:
    with KatFakeServer() as server:
        yield server


@pytest.fixture
def kat(server: KatFakeServer, clock: FakeClock) -> Iterator[KatClients]:
    server.reset()
    for org_id in ("org1", "org2"):
        server.add_organisation(Organisation(id=org_id))
        server.add_plugin(org_id, boefje("dns-records", ["Hostname"]))
        server.add_plugin(org_id, normalizer("kat_dns_normalize", ["boefje/dns-records"]))
    clients = connect(server, clock, cache_ttl=30)
    yield clients
    clients.close()


def lookups(kat: KatClients, org: str = "org1") -> None:
    kat.katalogus.plugins(org)
    kat.katalogus.boefjes_consuming(org, "Hostname")
    kat.katalogus.normalizers_for_mime(org, "boefje/dns-records")
    kat.katalogus.enabled_boefjes(org)
    kat.katalogus.plugin(org, "dns-records")
    kat.katalogus.plugin(org, "missing")


# -- the Katalogus cache -------------------------------------------------------------------------------------


def test_many_lookups_cost_one_request_per_organisation(server: KatFakeServer, kat: KatClients) -> None:
    lookups(kat)
    lookups(kat)
    lookups(kat, "org2")
    assert server.hits(PLUGINS) == 1
    assert server.hits(f"{KATALOGUS}/v1/organisations/org2/plugins") == 1
    assert server.total_hits() == 2


def test_the_cache_expires_after_its_ttl(server: KatFakeServer, kat: KatClients, clock: FakeClock) -> None:
    lookups(kat)
    server.add_plugin("org1", boefje("nmap", ["IPAddressV4"]))
    clock.advance(seconds=29.9)
    assert kat.katalogus.plugin("org1", "nmap") is None
    assert server.hits(PLUGINS) == 1
    clock.advance(seconds=0.1)
    assert kat.katalogus.plugin("org1", "nmap") is not None
    lookups(kat)
    assert server.hits(PLUGINS) == 2


def test_a_lookup_that_may_not_wait_answers_from_a_fresh_cache_only(
    server: KatFakeServer, kat: KatClients, clock: FakeClock
) -> None:
    """`plugin(..., wait=False)` (the API's push on its event loop) never sends a request: WouldWait before
    the first fetch and once the cache has expired; the answer itself once a fresh cache holds it."""
    with pytest.raises(WouldWait, match="not cached"):
        kat.katalogus.plugin("org1", "dns-records", wait=False)
    assert server.total_hits() == 0
    kat.katalogus.plugins("org1")
    found = kat.katalogus.plugin("org1", "dns-records", wait=False)
    assert found is not None and found.id == "dns-records"
    assert kat.katalogus.plugin("org1", "missing", wait=False) is None
    clock.advance(seconds=30)
    with pytest.raises(WouldWait):
        kat.katalogus.plugin("org1", "dns-records", wait=False)
    assert server.hits(PLUGINS) == 1


def test_without_cache_a_lookup_that_may_not_wait_sends_nothing(
    server: KatFakeServer, clock: FakeClock
) -> None:
    server.reset()
    clients = connect(server, clock, cache_ttl=0)
    try:
        with pytest.raises(WouldWait, match="every plugin lookup is a request"):
            clients.katalogus.plugin("org1", "dns-records", wait=False)
    finally:
        clients.close()
    assert server.total_hits() == 0


def test_concurrent_lookups_share_one_fetch(server: KatFakeServer, kat: KatClients) -> None:
    server.delay_next(1, 0.2, PLUGINS)  # hold the first fetch open while the others arrive
    start = threading.Barrier(8)
    answers: list[int] = []

    def look() -> None:
        start.wait()
        answers.append(len(kat.katalogus.plugins("org1")))

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert answers == [2] * 8
    assert server.hits(PLUGINS) == 1


def test_failures_are_not_cached(server: KatFakeServer, kat: KatClients) -> None:
    server.fail_next(3, 503, PLUGINS)
    with pytest.raises(ServiceUnavailable):
        kat.katalogus.plugins("org1")
    assert len(kat.katalogus.plugins("org1")) == 2
    assert server.hits(PLUGINS) == 4


def test_without_cache_each_lookup_asks_with_query(server: KatFakeServer, clock: FakeClock) -> None:
    server.reset()
    server.add_organisation(Organisation(id="org1"))
    server.add_plugin("org1", boefje("dns-records", ["Hostname"]))
    clients = connect(server, clock, cache_ttl=0)
    try:
        lookups(clients)
        lookups(clients)
    finally:
        clients.close()
    assert server.hits(PLUGINS) == 8
    assert server.hits(f"{PLUGINS}/dns-records") == 2
    assert server.hits(f"{PLUGINS}/missing") == 2


def test_an_absent_route_is_an_empty_answer(server: KatFakeServer, clock: FakeClock) -> None:
    katalogus = KatalogusClient(
        ServiceHttp("katalogus", build_client(server.url + "/elsewhere", timeout=2)), clock=clock
    )
    try:
        assert katalogus.organisations() == []
        assert katalogus.configs("dns-records") == []
    finally:
        katalogus.close()


# -- Bytes login ---------------------------------------------------------------------------------------------


def test_bytes_logs_in_once_and_reuses_the_token(server: KatFakeServer, kat: KatClients) -> None:
    run = meta("dns-records", "Hostname|internet|a.example", "org1", started_hours_ago=1)
    server.add_boefje_meta(run)
    for _ in range(3):
        assert kat.bytes.last_run("dns-records", "Hostname|internet|a.example", "org1") == run
    assert server.hits(TOKEN, "POST") == 1
    assert server.hits(BOEFJE_META) == 3


def test_bytes_logs_in_again_after_401(server: KatFakeServer, kat: KatClients) -> None:
    run = meta("dns-records", "Hostname|internet|a.example", "org1", started_hours_ago=1)
    server.add_boefje_meta(run)
    assert kat.bytes.last_run("dns-records", "Hostname|internet|a.example", "org1") == run
    server.revoke_tokens()
    assert kat.bytes.last_run("dns-records", "Hostname|internet|a.example", "org1") == run
    assert server.hits(TOKEN, "POST") == 2
    assert server.hits(BOEFJE_META) == 3  # the one refused with 401 was repeated once
    assert kat.pauses == []


def test_bytes_repeats_only_once_after_401(server: KatFakeServer, kat: KatClients) -> None:
    server.fail_next(2, 401, BOEFJE_META)
    with pytest.raises(ServiceError, match="bytes: GET /bytes-api/bytes/boefje_meta answered 401") as caught:
        kat.bytes.last_run("dns-records", None, "org1")
    assert not isinstance(caught.value, ServiceUnavailable)
    assert server.hits(TOKEN, "POST") == 2
    assert server.hits(BOEFJE_META) == 2


def test_bytes_wrong_password_is_a_service_error(server: KatFakeServer) -> None:
    server.reset()
    bytes_client = BytesClient(
        ServiceHttp("bytes", build_client(server.bytes_url, timeout=2)), username="katsched", password="wrong"
    )
    try:
        with pytest.raises(ServiceError, match=r"bytes: POST /bytes-api/token answered 401 .*password"):
            bytes_client.last_run("dns-records", None, "org1")
    finally:
        bytes_client.close()
    assert server.hits(TOKEN, "POST") == 1
    assert server.hits(BOEFJE_META) == 0


def test_bytes_transient_login_failure_is_retried(server: KatFakeServer, kat: KatClients) -> None:
    server.fail_next(1, 503, TOKEN)
    assert kat.bytes.last_run("dns-records", None, "org1") is None
    assert server.hits(TOKEN, "POST") == 2
    assert kat.pauses == [0.01]


# -- Bytes: the last runs of an object -----------------------------------------------------------------------


def test_bytes_last_runs_of_an_object_cost_one_request(server: KatFakeServer, kat: KatClients) -> None:
    reference = "Hostname|internet|a.example"
    dns = meta("dns-records", reference, "org1", started_hours_ago=1)
    server.add_boefje_meta(dns)
    server.add_boefje_meta(meta("nmap", "Hostname|internet|b.example", "org1", started_hours_ago=1))
    assert kat.bytes.last_runs(reference, "org1", ["dns-records", "nmap", "whois"]) == {"dns-records": dns}
    assert server.hits(BOEFJE_META) == 1
    assert kat.bytes.last_runs(reference, "org1", []) == {}
    assert server.hits(BOEFJE_META) == 1


def test_bytes_last_runs_asks_one_by_one_for_boefjes_beyond_a_full_page(
    server: KatFakeServer, kat: KatClients
) -> None:
    reference = "Hostname|internet|a.example"
    for hours in range(100):
        server.add_boefje_meta(meta("nmap", reference, "org1", started_hours_ago=hours))
    old = meta("dns-records", reference, "org1", started_hours_ago=1000)
    server.add_boefje_meta(old)
    runs = kat.bytes.last_runs(reference, "org1", ["dns-records", "nmap", "whois"])
    assert runs["dns-records"] == old and runs.keys() == {"dns-records", "nmap"}
    assert server.hits(BOEFJE_META) == 3  # the page (30 runs of nmap), then dns-records and whois alone


# -- retries and failures ------------------------------------------------------------------------------------


def test_transient_errors_are_retried_with_backoff(server: KatFakeServer, kat: KatClients) -> None:
    server.fail_next(2, 500, f"{OCTOPOES}/org1/object")
    found = kat.octopoes.get_object("org1", "Hostname|internet|a.example", valid_time=NOW)
    assert found is None
    assert server.hits(f"{OCTOPOES}/org1/object") == 3
    assert kat.pauses == [0.01, 0.02]


def test_500_until_retries_run_out_is_service_unavailable(server: KatFakeServer, kat: KatClients) -> None:
    server.fail_next(10, 500)
    with pytest.raises(ServiceUnavailable) as caught:
        kat.katalogus.organisations()
    assert str(caught.value) == "katalogus: GET /katalogus/v1/organisations answered 500 after 3 attempts"
    assert server.hits(f"{KATALOGUS}/v1/organisations") == 3
    assert kat.pauses == [0.01, 0.02]


def test_client_errors_are_not_retried(server: KatFakeServer, kat: KatClients) -> None:
    server.fail_next(1, 422, f"{OCTOPOES}/org1/objects")
    with pytest.raises(ServiceError, match="octopoes: GET /octopoes/org1/objects answered 422") as caught:
        list(kat.octopoes.objects("org1", ["Hostname"], valid_time=NOW))
    assert not isinstance(caught.value, ServiceUnavailable)
    assert server.hits(f"{OCTOPOES}/org1/objects") == 1
    assert kat.pauses == []


def test_refused_connection_is_service_unavailable(clock: FakeClock) -> None:
    pauses: list[float] = []
    retry = RetryPolicy(attempts=3, backoff=Backoff(initial=0.01, jitter=0.0))
    octopoes = OctopoesClient(
        ServiceHttp("octopoes", build_client(refused_url(), timeout=2), retry=retry, sleep=pauses.append)
    )
    with pytest.raises(
        ServiceUnavailable, match="octopoes: GET /org1/object failed: ConnectError after 3 attempts"
    ):
        octopoes.get_object("org1", "Hostname|internet|a.example", valid_time=NOW)
    assert pauses == [0.01, 0.02]
    assert octopoes.healthy("org1") is False
    assert pauses == [0.01, 0.02]  # a health check answers at once, without retrying


def test_a_slow_service_times_out_and_is_retried(server: KatFakeServer, clock: FakeClock) -> None:
    server.reset()
    server.add_organisation(Organisation(id="org1"))
    # The server sleeps well past the client's timeout; the client gives up at the timeout, so the test
    # takes about four timeouts, and a timeout with headroom keeps undelayed requests clear of it.
    server.delay_next(1, 2.0, f"{KATALOGUS}/v1/organisations")
    clients = connect(server, clock, timeout=0.25)
    try:
        assert [org.id for org in clients.katalogus.organisations()] == ["org1"]
        server.delay_next(3, 2.0, f"{KATALOGUS}/v1/organisations")
        with pytest.raises(ServiceUnavailable, match="ReadTimeout after 3 attempts"):
            clients.katalogus.organisations()
    finally:
        clients.close()
    assert clients.pauses == [0.01, 0.01, 0.02]


# -- Octopoes paging and health ------------------------------------------------------------------------------


def test_objects_are_fetched_page_by_page(server: KatFakeServer, clock: FakeClock) -> None:
    server.reset()
    server.add_organisation(Organisation(id="org1"))
    for name in "abcde":
        server.add_object("org1", ooi(f"Hostname|internet|{name}.example", 2))
    clients = connect(server, clock, page_size=2)
    try:
        pages = clients.octopoes.objects("org1", ["Hostname"], [1, 2], valid_time=NOW)
        first = next(pages)
        assert first.primary_key == "Hostname|internet|a.example"
        assert server.hits(f"{OCTOPOES}/org1/objects") == 1  # lazily: one page so far
        assert len([first, *pages]) == 5
    finally:
        clients.close()
    assert server.hits(f"{OCTOPOES}/org1/objects") == 3


def test_health(server: KatFakeServer, kat: KatClients) -> None:
    assert kat.katalogus.healthy() is True
    assert kat.bytes.healthy() is True
    assert kat.octopoes.healthy("org1") is True
    server.fail_next(1, 503, f"{BYTES}/health")
    assert kat.bytes.healthy() is False
    assert kat.pauses == []
