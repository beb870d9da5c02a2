"""Connections kept open between requests, as S3 and every AWS endpoint keep them.

werkzeug's development server, which moto's ThreadedMotoServer runs, answers every request with
``Connection: close``: http.server cannot tell where a request body it did not read ends, so
werkzeug drains the socket for 10 ms after each answer and closes it. Every request then costs a
new TCP connection and a new server thread, on the client and in moto: about a millisecond of
moto's CPU per request on the lab's two shared cores, more than a small object's bytes cost.
AWS keeps connections alive, and every SDK (botocore's pool, awscli, rclone) reuses them.

Here a request whose body length is known (a ``Content-Length``, or no body) on an HTTP/1.1
connection the client did not ask to close is answered without ``Connection: close``; after the
answer the handler reads exactly the body bytes the application left unread, so the next request
line is where http.server expects it, and the connection waits for it. Anything else (chunked
request bodies, HTTP/1.0, a client's ``Connection: close``, an error after the answer began)
keeps werkzeug's behaviour. An idle connection is closed after ``IDLE_TIMEOUT_S``, as S3 closes
idle ones. Answers are the same bytes but for the ``Connection`` header.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

IDLE_TIMEOUT_S = 60.0
DRAIN_BLOCK = 1 << 20

_request = threading.local()


def body_length(headers: Any) -> int | None:
    """The request body's length when it is known without reading it, else None."""
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        return None
    value = headers.get("Content-Length")
    if value is None:
        return 0
    try:
        length = int(value.strip())
    except ValueError:
        return None
    return length if length >= 0 else None


def may_keep_alive(request_version: str, headers: Any) -> bool:
    if request_version != "HTTP/1.1":
        return False
    tokens = {token.strip().lower() for token in (headers.get("Connection") or "").split(",")}
    return "close" not in tokens and body_length(headers) is not None


class CountingReader:
    """The connection's reader, counting what the application takes of the body."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.taken = 0

    def counted(self, data: bytes) -> bytes:
        self.taken += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        return self.counted(self.raw.read(size))

    def read1(self, size: int = -1) -> bytes:
        return self.counted(self.raw.read1(size))

    def readinto(self, buffer: Any) -> int:
        count = self.raw.readinto(buffer)
        self.taken += count or 0
        return count

    def readline(self, size: int = -1) -> bytes:
        return self.counted(self.raw.readline(size))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class NothingToDrain:
    """Stands in for werkzeug's after-answer socket drain while the body is drained exactly."""

    def register(self, *_: Any, **__: Any) -> None:
        return None

    def select(self, *_: Any, **__: Any) -> list:
        return []

    def close(self) -> None:
        return None


class Selectors:
    """``werkzeug.serving.selectors`` for the drain: nothing to select while a connection is kept."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def DefaultSelector(self) -> Any:  # noqa: N802 - the name werkzeug calls
        if getattr(_request, "keeping", False):
            return NothingToDrain()
        return self.real.DefaultSelector()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def apply() -> None:
    from werkzeug import serving

    handler = serving.WSGIRequestHandler
    original_run_wsgi = handler.run_wsgi
    original_send_header = handler.send_header
    serving.selectors = Selectors(serving.selectors)
    handler.timeout = IDLE_TIMEOUT_S
    original_setup = handler.setup

    def setup(self: Any) -> None:
        original_setup(self)
        # An answer goes out as two writes (headers, then body); on a kept connection Nagle's
        # algorithm would hold the second until the client's delayed ACK of the first, 40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    handler.setup = setup

    def send_header(self: Any, keyword: str, value: str) -> None:
        if getattr(_request, "keeping", False) and keyword.lower() == "connection" and value.lower() == "close":
            return
        original_send_header(self, keyword, value)

    def run_wsgi(self: Any) -> None:
        if not may_keep_alive(self.request_version, self.headers):
            return original_run_wsgi(self)
        length = body_length(self.headers) or 0
        reader = CountingReader(self.rfile)
        self.rfile = reader
        _request.keeping = True
        try:
            original_run_wsgi(self)
        finally:
            _request.keeping = False
            self.rfile = reader.raw
        if self.close_connection:
            return None
        remaining = length - reader.taken
        while remaining > 0:
            data = self.rfile.read(min(remaining, DRAIN_BLOCK))
            if not data:
                self.close_connection = True
                break
            remaining -= len(data)
        return None

    handler.send_header = send_header
    handler.run_wsgi = run_wsgi
