"""The admin API over httpx; every failure leaves this module as a one-line `CliError`."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx

from cli.errors import CliError

Json = Any
TIMEOUT_SECONDS = 30.0
NO_CREDENTIALS = (
    "no token: pass --token, set TOKEN (or ADMIN_TOKEN), "
    "or add `token:` to ~/.config/proxy-client/config.yml"
)


ACT_AS = "X-Act-As-Token"
"""The header with which the admin token acts as another token (`oauthproxy.api.auth.ACT_AS`)."""


def api_path(*segments: str) -> str:
    """A path under the admin API with each segment (a name typed by the user) escaped."""
    return "/api/v1/" + "/".join(quote(segment, safe="") for segment in segments)


def error_message(response: httpx.Response) -> str:
    """`<detail> (field: <field>)` from the API's JSON error body, or the status and text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("detail"):
        field = body.get("field")
        return f"{body['detail']} (field: {field})" if field else str(body["detail"])
    text = " ".join(response.text.split())[:200]
    return f"HTTP {response.status_code} {response.reason_phrase}" + (f": {text}" if text else "")


class ApiClient:
    def __init__(self, http: httpx.Client, token: str | None, acting_as: str | None = None) -> None:
        self._http = http
        self._token = token
        self._acting_as = acting_as

    def with_token(self, token: str) -> ApiClient:
        """A client of the same gateway (same connection pool) that authenticates with `token`."""
        return ApiClient(self._http, token)

    def acting_as(self, name: str) -> ApiClient:
        """This client (the admin token's) acting as the token `name`, suspended or not
        (`X-Act-As-Token`): what it creates is that token's."""
        return ApiClient(self._http, self._token, name)

    @property
    def has_token(self) -> bool:
        """A token to authenticate with was given (or found)."""
        return self._token is not None

    def _headers(self, auth: bool) -> dict[str, str]:
        if not auth:
            return {}
        if self._token is None:
            raise CliError(NO_CREDENTIALS)
        headers = {"Authorization": f"Bearer {self._token}"}
        if self._acting_as is not None:
            headers[ACT_AS] = self._acting_as
        return headers

    def _send(self, method: str, path: str, body: Json, auth: bool) -> httpx.Response:
        url = str(self._http.base_url).rstrip("/")
        try:
            return self._http.request(method, path, json=body, headers=self._headers(auth))
        except httpx.ConnectError:
            raise CliError(
                f"cannot reach the gateway at {url} — is it running? (just run)"
            ) from None
        except httpx.TimeoutException:
            raise CliError(f"the gateway at {url} did not answer in time") from None
        except httpx.HTTPError as error:
            raise CliError(f"request to {url} failed: {error}") from None

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Json = None,
        auth: bool = True,
        also_accept: Collection[int] = (),
    ) -> Json:
        """The response's JSON; an error status (unless in `also_accept`) raises `CliError`."""
        return self.answer(method, path, body=body, auth=auth, also_accept=also_accept)[0]

    def answer(
        self,
        method: str,
        path: str,
        *,
        body: Json = None,
        auth: bool = True,
        also_accept: Collection[int] = (),
    ) -> tuple[Json, httpx.Headers]:
        """As `request`, with the response's headers (some answers say more in them)."""
        response = self._send(method, path, body, auth)
        if response.is_error and response.status_code not in also_accept:
            raise CliError(error_message(response))
        try:
            return response.json(), response.headers
        except ValueError:
            raise CliError(
                f"{response.request.url} answered HTTP {response.status_code} without JSON; "
                "is the base URL the gateway's admin API?"
            ) from None

    def text(self, path: str) -> str:
        """A plain-text answer (`/metrics`); an error status raises `CliError`."""
        response = self._send("GET", path, None, True)
        if response.is_error:
            raise CliError(error_message(response))
        return response.text

    def lines(self, path: str) -> Iterator[str]:
        """A text response's lines as they come (a followed log), until the server ends it."""
        url = str(self._http.base_url).rstrip("/")
        try:
            with self._http.stream(
                "GET", path, headers=self._headers(True), timeout=None
            ) as response:
                if response.is_error:
                    response.read()
                    raise CliError(error_message(response))
                yield from response.iter_lines()
        except httpx.ConnectError:
            raise CliError(
                f"cannot reach the gateway at {url} — is it running? (just run)"
            ) from None
        except httpx.HTTPError as error:
            raise CliError(f"request to {url} failed: {error}") from None

    def get(self, path: str) -> Json:
        return self.request("GET", path)

    def post(self, path: str, body: Json) -> Json:
        return self.request("POST", path, body=body)

    def put(self, path: str, body: Json) -> Json:
        return self.request("PUT", path, body=body)

    def delete(self, path: str) -> Json:
        return self.request("DELETE", path)


@contextmanager
def open_api_client(base_url: str, token: str | None) -> Iterator[ApiClient]:
    with httpx.Client(base_url=base_url, timeout=TIMEOUT_SECONDS) as http:
        yield ApiClient(http, token)
