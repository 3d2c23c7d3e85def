"""HTTP for the ``openai`` backend: one httpx client, retries with backoff, errors turned into one line.

What is retried, and why: a refused or reset connection and HTTP 429/503 say "not now", so the request is
sent again after a backoff (``Retry-After`` when the server gives one). A 4xx says the request itself is
wrong (bad key, unknown model, prompt too long): retrying cannot help, so it is a ``UserError`` naming the
status and the server's message. Other 5xx answers, a read timeout and a stream that breaks after it began
belong to one sample: ``SampleFailed``, the run goes on and ``--resume`` retries the sample.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError
from harness.types import SampleFailed

EXTRA_HINT = "pip install 'tinylm-harness[serve]'"
RETRY_STATUSES = (429, 503)
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
RETRY_AFTER_CAP_S = 120.0


def import_httpx() -> Any:
    """httpx, or one line naming the extra that brings it."""
    try:
        import httpx
        import httpx_sse  # noqa: F401  (the stream parser; checked here so the error names the extra once)
    except ImportError:
        raise UserError(f"served models need the [serve] extra: {EXTRA_HINT}") from None
    return httpx


@dataclass(frozen=True)
class ClientSettings:
    """``--model-option`` values of the backend, validated by ``OpenAIBackend.check_options``."""

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0
    retries: int = 5
    api_key: str | None = None


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form; an HTTP date is ignored), capped."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S) if seconds == seconds else None


def backoff_s(attempt: int) -> float:
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)


def error_message(response: Any) -> str:
    """The server's own words for an error answer: OpenAI's ``{"error": {"message"}}`` or the body, short."""
    try:
        body = response.read().decode("utf-8", "replace")
    except Exception:  # the body is a courtesy; the status line is the error
        return response.reason_phrase or ""
    try:
        data = json.loads(body)
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message", error.get("detail", body)) if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = body
    return " ".join(str(message).split())[:300]


class Client:
    """A thread-safe connection pool to one server, with the retry and error policy above."""

    def __init__(self, label: str, base_url: str, settings: ClientSettings) -> None:
        httpx = import_httpx()
        self.httpx, self.label, self.settings = httpx, label, settings
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        timeout = httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
        self.http = httpx.Client(base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout, limits=limits)

    def close(self) -> None:
        self.http.close()

    def _fail(self, response: Any, during_load: bool) -> None:
        """Raise for a non-2xx answer that is not retried."""
        message = error_message(response)
        status = response.status_code
        if 400 <= status < 500:
            hint = {
                401: "set the API key variable (--model-option api_key_env=NAME, default OPENAI_API_KEY)",
                403: "the API key is not allowed this; check it",
                404: "check the URL (it ends in /v1) and the model name ('/v1/models' lists them)",
            }.get(status, "fix the request or the server's settings")
            raise UserError(f"model {self.label}: the server answered {status}: {message}; {hint}")
        text = f"the server answered {status}: {message}"
        if during_load:
            raise UserError(f"model {self.label}: {text}; check the server's log")
        raise SampleFailed(text)

    @contextmanager
    def send(self, method: str, path: str, body: Any = None, stream: bool = False, during_load: bool = False):
        """The 2xx response to ``method path``, after retries; ``stream`` leaves the body unread."""
        httpx = self.httpx
        attempt = 0
        while True:
            request = self.http.build_request(method, path, json=body)
            wait = None
            try:
                response = self.http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                # nothing of the answer arrived: the request can be sent again as it was
                if attempt >= self.settings.retries:
                    what = f"cannot reach {self.http.base_url} ({exc.__class__.__name__}: {exc})"
                    if during_load:
                        raise UserError(
                            f"model {self.label}: {what}; is the server running? ('harness serve SPEC' starts one)"
                        ) from None
                    raise SampleFailed(what) from None
            except httpx.TimeoutException as exc:
                what = f"no answer within --model-option read_timeout={self.settings.read_timeout_s} ({exc.__class__.__name__})"
                if during_load:
                    raise UserError(f"model {self.label}: {what}") from None
                raise SampleFailed(what) from None
            else:
                if response.status_code < 300:
                    try:
                        if not stream:
                            response.read()
                        yield response
                    finally:
                        response.close()
                    return
                if response.status_code not in RETRY_STATUSES or attempt >= self.settings.retries:
                    try:
                        self._fail(response, during_load)
                    finally:
                        response.close()
                wait = retry_after_s(response.headers.get("retry-after"))
                response.close()
            time.sleep(backoff_s(attempt) if wait is None else wait)
            attempt += 1

    def get_json(self, path: str, during_load: bool = True) -> Any:
        with self.send("GET", path, during_load=during_load) as response:
            return self._json(response, path)

    def post_json(self, path: str, body: Any, during_load: bool = False) -> Any:
        with self.send("POST", path, body, during_load=during_load) as response:
            return self._json(response, path)

    def _json(self, response: Any, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise SampleFailed(f"{path}: the answer is not JSON") from None

    def try_post_json(self, path: str, body: Any) -> Any | None:
        """``post_json`` for optional endpoints, probed at load: ``None`` where the server has no such path."""
        try:
            response = self.http.post(path, json=body)
        except self.httpx.HTTPError as exc:
            raise UserError(f"model {self.label}: {path} failed ({exc.__class__.__name__}: {exc})") from None
        if response.status_code in (404, 405, 501):
            return None
        if response.status_code >= 300:
            self._fail(response, during_load=True)
        return self._json(response, path)

    def events(self, response: Any) -> Iterator[Any]:
        """The SSE events of a streamed answer, each with its arrival time (``perf_counter_ns``)."""
        from httpx_sse import EventSource, SSEError

        httpx = self.httpx
        try:
            for event in EventSource(response).iter_sse():
                yield time.perf_counter_ns(), event.data
        except SSEError as exc:
            raise SampleFailed(f"not an event stream: {exc}") from None
        except httpx.TimeoutException:
            raise SampleFailed(
                f"the stream stalled: no data within --model-option read_timeout={self.settings.read_timeout_s}"
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.StreamError) as exc:
            raise SampleFailed(f"the stream broke ({exc.__class__.__name__}: {exc})") from None
