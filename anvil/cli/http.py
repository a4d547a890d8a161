"""The HTTP helper every client command goes through: base URL, bearer token, problem details.

Commands talk to the API like any user: ANVIL_API_URL and ANVIL_TOKEN (or --api-url/--token,
anvil/cli/options.py). An API problem becomes its detail on stderr and exit code 2.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import typer


class ApiError(Exception):
    """The API refused a request or could not be reached; ``retryable`` when waiting may help."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


@dataclass
class Api:
    """The thin HTTP helper every client command goes through: base URL, auth header, problem details."""

    base_url: str
    token: str | None
    timeout_s: float = 10.0
    _http: httpx.Client | None = field(default=None, repr=False)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One JSON request; the decoded answer, or ApiError."""
        accept = {"Accept": "application/json, application/problem+json"}
        try:
            response = self._client().request(
                method, path, json=body, params=params, headers=self._headers({**accept, **(headers or {})})
            )
        except httpx.HTTPError as exc:
            raise self._failed(path, exc) from exc
        _check(response)
        return response.json() if response.content else None

    def upload(
        self,
        path: str,
        *,
        files: dict[str, tuple[str, bytes, str]],
        data: dict[str, str],
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One multipart/form-data POST (a report and its form fields); the decoded answer, or ApiError."""
        accept = {"Accept": "application/json, application/problem+json", **(headers or {})}
        try:
            # A large report takes the server a while to read: more time than a JSON call.
            timeout = max(self.timeout_s, 120.0)
            response = self._client().post(
                path, files=files, data=data, headers=self._headers(accept), timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise self._failed(path, exc) from exc
        _check(response)
        return response.json() if response.content else None

    def download(self, path: str) -> bytes:
        """The raw body of a GET (e.g. a JUnit report)."""
        try:
            response = self._client().get(path, headers=self._headers({}))
        except httpx.HTTPError as exc:
            raise self._failed(path, exc) from exc
        _check(response)
        return response.content

    @contextmanager
    def stream(
        self, path: str, *, headers: dict[str, str], read_timeout_s: float
    ) -> Iterator[httpx.Response]:
        """A streamed GET (Server-Sent Events); a transport failure, also while reading, is an ApiError."""
        timeout = httpx.Timeout(self.timeout_s, read=read_timeout_s)
        try:
            with self._client().stream(
                "GET", path, headers=self._headers(headers), timeout=timeout
            ) as response:
                if response.is_error:
                    response.read()
                    _check(response)
                yield response
        except httpx.HTTPError as exc:
            raise self._failed(path, exc) from exc

    def close(self) -> None:
        if self._http is not None:
            self._http.close()

    def _client(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.base_url.rstrip("/"), timeout=self.timeout_s)
        return self._http

    def _headers(self, headers: dict[str, str]) -> dict[str, str]:
        if self.token:
            return {**headers, "Authorization": f"Bearer {self.token}"}
        return headers

    def _failed(self, path: str, exc: httpx.HTTPError) -> ApiError:
        """A transport failure as an ApiError; all of them may pass if one waits."""
        if isinstance(exc, httpx.ConnectError):
            return ApiError(
                f"cannot reach the Anvil API at {self.base_url} ({exc}); "
                "is it running? Set ANVIL_API_URL or --api-url to point elsewhere",
                retryable=True,
            )
        if isinstance(exc, httpx.TimeoutException):
            return ApiError(f"the Anvil API at {self.base_url} did not answer in time", retryable=True)
        return ApiError(f"request to {self.base_url}{path} failed: {exc}", retryable=True)


def _check(response: httpx.Response) -> None:
    if response.is_error:
        raise ApiError(
            problem_message(response), status=response.status_code, retryable=response.status_code == 503
        )


def problem_message(response: httpx.Response) -> str:
    """One readable message from an RFC 9457 problem-details body (or whatever the server sent)."""
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict) or "detail" not in problem:
        return f"HTTP {response.status_code}: {response.text.strip()[:500] or response.reason_phrase}"
    message = f"{problem.get('title') or 'HTTP error'} ({response.status_code}): {problem['detail']}"
    if problem.get("field") and str(problem["field"]) not in str(problem["detail"]):
        message += f" [field: {problem['field']}]"
    for extra in (problem.get("errors") or [])[1:]:
        message += f"\n  {extra.get('field')}: {extra.get('message')}"
    if response.status_code == 401:
        message += "\n  (set ANVIL_TOKEN or --token; `anvil dev` writes one to .anvil/token)"
    return message


def default_token(token: str | None) -> str | None:
    """The given token, else the one the standalone supervisor wrote for this directory."""
    if token:
        return token
    path = Path(os.environ.get("ANVIL_DATA_DIR", ".anvil")) / "token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def make_api(api_url: str, token: str | None) -> Api:
    return Api(api_url, default_token(token))


@contextmanager
def exit_on_api_error() -> Iterator[None]:
    """Turn an API problem into its detail on stderr and exit code 2."""
    try:
        yield
    except ApiError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
