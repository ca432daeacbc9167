#!/usr/bin/python3
"""Alertmanager webhook receiver that keeps what it receives.

POST (any path): the body must be a JSON object (an Alertmanager webhook
notification). It is appended to the log file as one JSON line:
    {"received_at": <unix time, float>, "payload": <the body>}
GET /alerts: every line so far, as a JSON array, oldest first.
GET /healthz: "ok".

Standard library only; meant for the local environment and tests, not as a
production receiver.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    server_version = "alertmanager-webhook-log/1"
    log_file = ""
    lock = threading.Lock()

    def _answer(self, status, body, content_type="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY:
            self._answer(413, '{"error": "body missing or too large"}')
            return
        try:
            payload = json.loads(self.rfile.read(length))
        except ValueError:
            self._answer(400, '{"error": "body is not JSON"}')
            return
        if not isinstance(payload, dict):
            self._answer(400, '{"error": "body is not a JSON object"}')
            return
        line = json.dumps({"received_at": time.time(), "payload": payload}, separators=(",", ":"), sort_keys=True)
        with self.lock, open(self.log_file, "a", encoding="utf-8") as log:
            log.write(line + "\n")
        self._answer(200, '{"status": "logged"}')

    def do_GET(self):
        if self.path == "/healthz":
            self._answer(200, "ok\n", "text/plain")
            return
        if self.path.split("?")[0] not in ("/", "/alerts"):
            self._answer(404, '{"error": "not found"}')
            return
        entries = []
        with self.lock:
            try:
                with open(self.log_file, encoding="utf-8") as log:
                    entries = [json.loads(ln) for ln in log if ln.strip()]
            except FileNotFoundError:
                pass
        self._answer(200, json.dumps(entries))

    def log_message(self, fmt, *args):
        sys.stderr.write(f"{self.address_string()} {fmt % args}\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:9095", help="address:port to listen on")
    parser.add_argument("--file", required=True, help="JSON-lines file the notifications go to")
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    Handler.log_file = args.file
    server = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
