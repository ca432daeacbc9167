"""The webhook log receiver (files/alertmanager-webhook-log.py), run here."""

import json
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "files" / "alertmanager-webhook-log.py"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def receiver(tmp_path):
    port = free_port()
    log = tmp_path / "alerts.jsonl"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--listen", f"127.0.0.1:{port}", "--file", str(log)], stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(50):
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield base, log
    proc.terminate()
    proc.wait(timeout=5)


def post(url, body):
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_notifications_are_logged_and_served_back(receiver):
    base, log = receiver
    first = {"status": "firing", "receiver": "critical", "alerts": [{"labels": {"alertname": "InstanceDown"}}]}
    second = dict(first, status="resolved")
    before = time.time()
    assert post(f"{base}/alerts", json.dumps(first).encode()) == 200
    assert post(f"{base}/alerts", json.dumps(second).encode()) == 200
    lines = log.read_text().splitlines()
    assert [json.loads(ln)["payload"] for ln in lines] == [first, second]
    with urllib.request.urlopen(f"{base}/alerts", timeout=5) as answer:
        served = json.load(answer)
    assert [e["payload"] for e in served] == [first, second]
    assert all(e["received_at"] >= before for e in served)


def test_bodies_that_are_not_json_objects_are_refused(receiver):
    base, log = receiver
    assert post(f"{base}/alerts", b"not json") == 400
    assert post(f"{base}/alerts", b"[1, 2]") == 400
    assert not log.exists()
