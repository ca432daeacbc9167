"""Load balancing over the two stand-in backends (127.0.0.2 and 127.0.0.3):
spread, keepalive, safe retries, passive health checks."""

import time
import uuid

import pytest
from conftest import BACKEND_A, BACKEND_B, FAIL_TIMEOUT, assert_security_headers, backend_hits, log_entries


@pytest.fixture(autouse=True)
def healthy_backends(host):
    """Both backends running, and nginx no longer holding an old failure."""
    host.run("systemctl start brigade-backend-a brigade-backend-b")
    time.sleep(FAIL_TIMEOUT + 1)
    yield
    host.run("systemctl start brigade-backend-a brigade-backend-b")


def test_requests_spread_over_both_backends(request_):
    seen = [request_("/api/v1/ping").json()["backend"] for _ in range(12)]
    assert set(seen) == {"a", "b"}, seen
    assert min(seen.count("a"), seen.count("b")) >= 4, seen


def test_keepalive_connections_to_backends(request_):
    peers = [request_("/api/v1/ping").json()["peer"] for _ in range(10)]
    # Ten requests over far fewer upstream connections: they are reused.
    assert len(set(peers)) <= 4, peers


def test_get_retried_post_never_replayed(host, request_):
    before = {b: backend_hits(host, b) for b in (BACKEND_A, BACKEND_B)}
    posts = [request_("/api/v1/flaky", method="POST", data="{}").status for _ in range(4)]
    after = {b: backend_hits(host, b) for b in (BACKEND_A, BACKEND_B)}
    sent = sum(after[b].get("POST /api/v1/flaky", 0) - before[b].get("POST /api/v1/flaky", 0) for b in after)
    assert sent == 4, "a POST reached more than one backend"
    assert 502 in posts, posts  # the ones b answered with 502 were passed on, not replayed

    time.sleep(FAIL_TIMEOUT + 1)
    before = after
    gets = [request_("/api/v1/flaky") for _ in range(4)]
    after = {b: backend_hits(host, b) for b in (BACKEND_A, BACKEND_B)}
    assert [g.status for g in gets] == [200] * 4
    assert {g.json()["backend"] for g in gets} == {"a"}
    retried = after[BACKEND_B].get("GET /api/v1/flaky", 0) - before[BACKEND_B].get("GET /api/v1/flaky", 0)
    assert retried >= 1, "no GET went to b first and was retried on a"


def test_stopped_backend_is_taken_out(host, request_):
    host.run_expect([0], "systemctl stop brigade-backend-b")
    ids = [f"lb-{uuid.uuid4().hex}" for _ in range(12)]
    answers = [request_("/api/v1/ping", headers={"X-Request-ID": rid}) for rid in ids]
    assert [a.status for a in answers] == [200] * 12
    assert {a.json()["backend"] for a in answers} == {"a"}

    time.sleep(0.5)
    entries = log_entries(host, ids)
    tried_b = [rid for rid in ids if BACKEND_B in entries[rid]["upstream_addr"]]
    # b was tried, failed, and the GET went on to a ("127.0.0.3:5000, 127.0.0.2:5000")...
    assert tried_b, [entries[rid]["upstream_addr"] for rid in ids]
    assert entries[tried_b[0]]["upstream_addr"] == f"{BACKEND_B}, {BACKEND_A}"
    # ...until max_fails (2) took it out: after that, only a.
    assert len(tried_b) <= 2
    assert all(entries[rid]["upstream_addr"] == BACKEND_A for rid in ids[-6:])

    host.run_expect([0], "systemctl start brigade-backend-b")
    time.sleep(FAIL_TIMEOUT + 1)
    back = {request_("/api/v1/ping").json()["backend"] for _ in range(6)}
    assert back == {"a", "b"}, "b did not come back after fail_timeout"


def test_no_backend_at_all_is_the_api_json_503_with_security_headers(host, request_):
    host.run_expect([0], "systemctl stop brigade-backend-a brigade-backend-b")
    answer = request_("/api/v1/ping")
    # nginx's own 502 becomes the API's error shape, a 503 to retry.
    assert answer.status == 503
    assert answer.header("Content-Type").startswith("application/json")
    assert answer.header("Retry-After") == "5"
    assert answer.json()["error"] == "service_unavailable"
    assert answer.json()["request_id"] == answer.header("X-Request-ID")
    assert_security_headers(answer)
