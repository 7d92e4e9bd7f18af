"""A local fake of the Chatwork API v2 message endpoint, a real HTTP server for tests.

``POST /v2/rooms/{room_id}/messages`` is served as Chatwork does it: the token in
``X-ChatWorkToken``, a form-encoded ``body``, ``{"message_id": "..."}`` back, ``{"errors": [...]}``
on failure; so is ``GET /v2/rooms/{room_id}`` (the room, with this account's ``role``), which
``platemask check`` calls. Tests can script the next answers (429 with rate-limit headers, 5xx) to exercise
retries. It listens on 127.0.0.1 only, on a free port, in a daemon thread.

    with FakeChatwork(token="t0ken") as chatwork:
        client = ChatworkClient(api_key="t0ken", room_id="42", api_url=chatwork.url)
        client.post_message("hello")
        assert chatwork.messages[0]["body"] == "hello"
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["FakeChatwork"]

log = logging.getLogger(__name__)

_MESSAGES_PATH = re.compile(r"^/v2/rooms/(?P<room_id>\d+)/messages$")
_ROOM_PATH = re.compile(r"^/v2/rooms/(?P<room_id>\d+)$")


@dataclass
class _Scripted:
    """One scripted answer, used ``times`` more times."""

    status: int | None  # None: answer as usual (after ``delay``)
    times: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0


class FakeChatwork:
    """A running fake Chatwork API; use as a context manager or call :meth:`close`.

    :param token: the API token the fake accepts; any other gets 401 ``Invalid API token``.
    :param first_message_id: the id given to the first accepted message, then counting up.
    :param role: this account's role in every room (``admin``, ``member`` or ``readonly``).
    """

    def __init__(self, token: str = "test-token", *, first_message_id: int = 1, role: str = "member") -> None:
        self.token = token
        self.role = role
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._messages: list[dict[str, Any]] = []
        self._script: deque[_Scripted] = deque()
        self._next_id = first_message_id
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="fake-chatwork",
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    # --- what tests read -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the fake listens on."""
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """API base URL to give the client (``CHATWORK_API_URL``), like ``https://api.chatwork.com/v2``."""
        return f"http://127.0.0.1:{self.port}/v2"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Accepted messages, oldest first: room_id, token, body, form, headers, message_id."""
        with self._lock:
            return [dict(item) for item in self._messages]

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request received, accepted or not, oldest first, with the ``status`` answered."""
        with self._lock:
            return [dict(item) for item in self._requests]

    # --- what tests script -----------------------------------------------------------------

    def fail_next(
        self, status: int, times: int = 1, headers: Mapping[str, str] | None = None, body: Any = None
    ) -> None:
        """Answer the next ``times`` message requests with ``status`` (and ``headers``), whatever they hold.

        ``body`` is sent as JSON; by default ``{"errors": ["<reason phrase>"]}``. Calls queue up
        in order, so ``fail_next(429); fail_next(500)`` answers 429, then 500, then normally.
        """
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        with self._lock:
            self._script.append(_Scripted(status, times, dict(headers or {}), body))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """Take the next ``times`` messages as usual, but answer only after ``seconds``.

        A client that gives up earlier has had its message posted all the same: the case in
        which sending again would post it twice.
        """
        if times < 1:
            raise ValueError(f"times must be at least 1, not {times}")
        with self._lock:
            self._script.append(_Scripted(None, times, delay=seconds))

    def close(self) -> None:
        """Stop the server and free its port; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeChatwork:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FakeChatwork(url={self.url!r}, messages={len(self._messages)})"

    # --- what the handler calls ------------------------------------------------------------

    def _answer(self, record: dict[str, Any]) -> tuple[int, dict[str, str], Any, float]:
        """Decide the answer to one parsed message request (and how long to wait) and record both."""
        with self._lock:
            scripted = self._script[0] if self._script else None
            if scripted is not None:
                scripted.times -= 1
                if scripted.times == 0:
                    self._script.popleft()
            delay = scripted.delay if scripted is not None else 0.0
            if scripted is not None and scripted.status is not None:
                status, headers = scripted.status, dict(scripted.headers)
                payload = scripted.body if scripted.body is not None else _errors(status)
            elif record["token"] != self.token:
                status, headers, payload = 401, {}, {"errors": ["Invalid API token"]}
            elif not record["body"]:
                status, headers, payload = 400, {}, {"errors": ["Parameter body is required"]}
            else:
                status, headers = 200, {}
                message_id = str(self._next_id)
                self._next_id += 1
                payload = {"message_id": message_id}
                self._messages.append({**record, "message_id": message_id})
            self._requests.append({**record, "status": status})
        return status, headers, payload, delay


def _errors(status: int) -> dict[str, list[str]]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = f"HTTP {status}"
    return {"errors": [phrase]}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeChatwork


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        match = _MESSAGES_PATH.match(urlsplit(self.path).path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if match is None:
            self._send(404, {}, {"errors": ["Resource not found"]})
            return
        form = {
            key: values[-1]
            for key, values in parse_qs(raw.decode("utf-8"), keep_blank_values=True, encoding="utf-8").items()
        }
        record = {
            "room_id": match["room_id"],
            "token": self.headers.get("X-ChatWorkToken"),
            "body": form.get("body", ""),
            "form": form,
            "headers": dict(self.headers.items()),
        }
        status, headers, payload, delay = self.server.fake._answer(record)
        time.sleep(delay)
        self._send(status, headers, payload)

    def do_GET(self) -> None:
        match = _ROOM_PATH.match(urlsplit(self.path).path)
        fake = self.server.fake
        if match is None:
            self._send(404, {}, {"errors": ["Resource not found"]})
        elif self.headers.get("X-ChatWorkToken") != fake.token:
            self._send(401, {}, {"errors": ["Invalid API token"]})
        else:
            room_id = int(match["room_id"])
            self._send(200, {}, {"room_id": room_id, "name": f"room {room_id}", "type": "group", "role": fake.role})

    def _send(self, status: int, headers: Mapping[str, str], payload: Any) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes to stderr; keep test output clean but findable with --log-level.
        log.debug("fake chatwork: " + format, *args)
