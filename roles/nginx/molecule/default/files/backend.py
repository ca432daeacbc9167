#!/usr/bin/env python3
"""A stand-in for the Brigade app in the nginx scenario (stdlib only).

    backend.py ID ADDRESS PORT

Answers every request with JSON naming this backend, so tests can see where
nginx sent it, plus a few paths that misbehave on purpose:

  /api/v1/menu          a counter that goes up on every request that gets here
  /api/v1/slow          answers once /run/brigade-release exists (at most 100 s)
  /api/v1/flaky         backend "b" answers 502 (nginx may retry a GET there)
  /__hits               per method and path, how many requests got here
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

BACKEND_ID, ADDRESS, PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
RELEASE = "/run/brigade-release"
HITS: dict[str, int] = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keepalive towards nginx

    def _answer(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        key = f"{self.command} {url.path}"
        with LOCK:
            HITS[key] = HITS.get(key, 0) + 1
            count = HITS[key]

        if url.path == "/__hits":
            with LOCK:
                self._send(200, dict(HITS))
            return
        if url.path == "/api/v1/slow":
            deadline = time.time() + 100
            while not os.path.exists(RELEASE) and time.time() < deadline:
                time.sleep(0.2)
        status = 502 if url.path == "/api/v1/flaky" and BACKEND_ID == "b" else 200
        self._send(
            status,
            {
                "backend": BACKEND_ID,
                "method": self.command,
                "path": url.path,
                "count": count,
                "peer": "{}:{}".format(*self.client_address[:2]),
                "headers": {k.lower(): v for k, v in self.headers.items()},
            },
        )

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        # Headers nginx must replace with its own.
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.send_header("X-Powered-By", "backend.py")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _answer

    def log_message(self, fmt: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True


if __name__ == "__main__":
    Server((ADDRESS, PORT), Handler).serve_forever()
