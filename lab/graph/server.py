"""HTTPS on loopback: a threading HTTP/1.1 server (keep-alive) whose TLS handshake happens in the
connection's own thread, so a slow client never stalls the accept loop."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lab.graph.service import Service

#: Bodies larger than this are not read: the connection is closed after the 413.
_DRAIN_LIMIT = 256 * 1024 * 1024


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], service: Service, context: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.service = service
        self.context = context
        self.base_url = ""
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            wrapped = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            self.shutdown_request(request)
            return
        with self._connections_lock:
            self._connections.add(wrapped)
        try:
            super().process_request_thread(wrapped, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(wrapped)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-answer is no news; anything else is already a 500 kept in
        internal_errors (the service layer catches it), so nothing is printed."""

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class names it)
        """Silent: a test's output stays readable (and bearer tokens never reach a log)."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._send(
                411,
                {
                    "error": {
                        "code": "LengthRequired",
                        "message": "A Content-Length header is required on the request.",
                    }
                },
                close=True,
            )
            return
        if length > _DRAIN_LIMIT:
            self._send(
                413,
                {
                    "error": {
                        "code": "RequestEntityTooLarge",
                        "message": "The request size exceeds the maximum limit.",
                    }
                },
                close=True,
            )
            return
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        reply = self.server.service.handle(self.command, self.path, headers, body, self.server.base_url)
        if reply.drop:
            # The item exists; the client never hears so (the duplicate trap).
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if reply.json is not None:
            data = json.dumps(reply.json).encode()
            content_type = "application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8"
        else:
            data = reply.body or b""
            content_type = reply.content_type
        self.send_response(reply.status)
        if data or reply.status not in (201, 204):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send(self, status: int, body: dict[str, Any], *, close: bool) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)


def make_server(host: str, service: Service, context: ssl.SSLContext) -> _Server:
    server = _Server((host, 0), service, context)
    port = server.server_address[1]
    server.base_url = f"https://{host}:{port}"
    return server
