"""A file server on 127.0.0.1 for the download tests: HTTP Range, and faults on demand.

``LoopbackServer.add(path, content, **faults)`` serves ``content`` at ``path`` (the query string
is part of the path). Faults, each used up as it happens:

- ``statuses=[503, ...]``: answer the next requests with these statuses;
- ``cut_after=n``: announce the whole body, send ``n`` bytes, close the connection (once);
- ``ignore_range=True``: always answer 200 with the whole file;
- ``page=html``: answer with this web page instead (always);
- ``size_header=n``: announce ``n`` bytes as the file's size.

``requests`` records (path, Range header) of every request.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args):  # keep pytest's output clean
        pass

    def do_GET(self):  # http.server's name for it
        served = self.server.owner
        with served.lock:
            served.requests.append((self.path, self.headers.get("Range")))
            entry = served.files.get(self.path)
            if entry is None:
                self._reply(404, b"not found", "text/plain")
                return
            content, faults = entry
            if faults.get("statuses"):
                self._reply(faults["statuses"].pop(0), b"busy", "text/plain")
                return
            if "page" in faults:
                self._reply(200, faults["page"].encode(), "text/html; charset=utf-8")
                return
            cut = faults.pop("cut_after", None)
        total = faults.get("size_header", len(content))
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and not faults.get("ignore_range"):
            start = int(match[1])
            if start >= len(content):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{total}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{total}")
        else:
            self.send_response(200)
        body = content[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if cut is not None:
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _reply(self, status: int, body: bytes, content_type: str):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LoopbackServer


class LoopbackServer:
    """Started on an ephemeral port of 127.0.0.1; ``close()`` stops it."""

    def __init__(self):
        self.files: dict[str, tuple[bytes, dict]] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, path: str, content: bytes, **faults) -> str:
        """Serve ``content`` at ``path``; returns its URL."""
        self.files[path] = (content, faults)
        return self.base + path

    def requested(self, path: str) -> list[str | None]:
        """The Range headers of the requests made for ``path``."""
        return [range_ for requested, range_ in self.requests if requested == path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
