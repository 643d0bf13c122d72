"""Bytes over HTTP: the boefjes' past runs (implements `katsched.core.ports.RawDataIndex`)."""

import threading
from collections.abc import Callable, Collection, Generator, Iterable
from typing import TYPE_CHECKING

import httpx
from pydantic import BaseModel, TypeAdapter

from katsched.core.models import BoefjeMeta
from katsched.core.ports import RawDataIndex
from katsched.errors import ServiceError
from katsched.kat.http import Params, ServiceHttp, is_transient_status

_METAS = TypeAdapter(list[BoefjeMeta])

# `last_runs` asks for a page of an object's runs, this many per boefje it wants. Bytes lists them newest
# first across every boefje, so one boefje that ran often can push the others off a full page; those are then
# asked for one by one. Most objects asked about are new (our history covers the rest): their page is empty.
RUNS_PER_BOEFJE = 10


class _Token(BaseModel):
    access_token: str


_TOKEN = TypeAdapter(_Token)


class BytesLogin(httpx.Auth):
    """Bearer-token auth for Bytes: log in (`POST /token`) before the first request, and log in again and
    repeat the request once when Bytes answers 401 (the token expired).

    Runs inside each attempt of `ServiceHttp.request`, so a transient login failure is retried by the same
    policy as any other request; a refused login is a `ServiceError` that names the credentials.
    """

    requires_response_body = True  # to read the token out of the login response

    def __init__(self, login_request: Callable[[], httpx.Request]) -> None:
        self._login_request = login_request
        self._lock = threading.Lock()  # the token is shared by every thread using the client
        self._token: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._current()
        if token is None:
            login = yield self._login_request()
            token = self._accept(login)
            if token is None:  # a transient login failure: hand it to the retry policy
                return
        request.headers["Authorization"] = f"bearer {token}"
        response = yield request
        if response.status_code != httpx.codes.UNAUTHORIZED:
            return
        login = yield self._login_request()
        token = self._accept(login)
        if token is None:
            return
        request.headers["Authorization"] = f"bearer {token}"
        yield request

    def _current(self) -> str | None:
        with self._lock:
            return self._token

    def _accept(self, login: httpx.Response) -> str | None:
        if is_transient_status(login.status_code):
            return None
        if not login.is_success:
            raise ServiceError(
                f"bytes: {login.request.method} {login.request.url.path} answered {login.status_code} "
                f"{login.reason_phrase}: check the Bytes user name and password"
            )
        try:
            token = _TOKEN.validate_json(login.content).access_token
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ServiceError(f"bytes: {login.request.url.path} answered without an access_token") from exc
        with self._lock:
            self._token = token
        return token


class BytesClient:
    """Bytes (SPEC §6): logs in with user name and password, then asks for boefje runs."""

    def __init__(self, http: ServiceHttp, *, username: str, password: str) -> None:
        self._http = http
        form = {"username": username, "password": password}
        self._auth = BytesLogin(lambda: http.client.build_request("POST", "/token", data=form))

    def close(self) -> None:
        self._http.close()

    def healthy(self) -> bool:
        return self._http.healthy("/health")

    def last_run(self, boefje_id: str, input_ooi: str | None, organization: str) -> BoefjeMeta | None:
        # Without an object the key is left out rather than sent empty (as mula did): Bytes then matches
        # every run of the boefje, which for a boefje that takes no object are all runs without one.
        params = {
            "boefje_id": boefje_id,
            "input_ooi": input_ooi,
            "organization": organization,
            "limit": 1,
            "descending": True,
        }
        metas = self._http.get_as("/bytes/boefje_meta", _METAS, params, auth=self._auth)
        return metas[0] if metas else None

    def last_runs(
        self, input_ooi: str | None, organization: str, boefje_ids: Collection[str]
    ) -> dict[str, BoefjeMeta]:
        wanted = set(boefje_ids)
        if input_ooi is None or len(wanted) < 2:
            # Without an object a page would list every run in the organisation; one boefje needs no page.
            return self._one_by_one(wanted, input_ooi, organization)
        limit = RUNS_PER_BOEFJE * len(wanted)
        params: Params = {
            "input_ooi": input_ooi,
            "organization": organization,
            "limit": limit,
            "descending": True,
        }
        metas = self._http.get_as("/bytes/boefje_meta", _METAS, params, auth=self._auth) or []
        found = _first_per_boefje(metas, wanted)
        if len(metas) >= limit:  # a full page: the boefjes not on it may have older runs beyond it
            found |= self._one_by_one(wanted - found.keys(), input_ooi, organization)
        return found

    def _one_by_one(
        self, boefje_ids: Collection[str], input_ooi: str | None, organization: str
    ) -> dict[str, BoefjeMeta]:
        runs = {
            boefje_id: self.last_run(boefje_id, input_ooi, organization) for boefje_id in sorted(boefje_ids)
        }
        return {boefje_id: meta for boefje_id, meta in runs.items() if meta is not None}


def _first_per_boefje(metas: Iterable[BoefjeMeta], wanted: Collection[str]) -> dict[str, BoefjeMeta]:
    """The first run of each wanted boefje in Bytes' order (newest first): what `last_run` answers for it."""
    found: dict[str, BoefjeMeta] = {}
    for meta in metas:
        if meta.boefje.id in wanted and meta.boefje.id not in found:
            found[meta.boefje.id] = meta
    return found


if TYPE_CHECKING:  # mypy proves that the client implements the port

    def _is_an_index(client: BytesClient) -> RawDataIndex:
        return client
