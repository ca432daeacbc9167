"""HTTP behaviour: redirects, headers, static files, CORS, limits, cache, logs,
metrics. Requests go through nginx with curl, inside the container."""

import json
import time
import uuid

from conftest import ACCESS_LOG, BACKEND_A, BACKEND_B, CA, NAME, assert_security_headers, backend_hits


def test_services_run(host):
    for unit in ("nginx", "prometheus-nginx-exporter", "logrotate.timer"):
        assert host.service(unit).is_enabled, unit
        assert host.service(unit).is_running, unit
    assert host.run("nginx -t").rc == 0


def test_plain_http_redirects_to_https(request_):
    answer = request_("/menu/today?lang=fr", scheme="http")
    assert answer.status == 301
    assert answer.header("location") == f"https://{NAME}/menu/today?lang=fr"


def test_acme_challenge_served_over_http(host, request_):
    token = uuid.uuid4().hex
    path = f"/var/www/acme/.well-known/acme-challenge/{token}"
    host.run(f"echo {token}.key > {path}")
    try:
        answer = request_(f"/.well-known/acme-challenge/{token}", scheme="http")
    finally:
        host.run(f"rm -f {path}")
    assert answer.status == 200
    assert answer.body.strip() == f"{token}.key"


def test_http_sent_to_the_https_port_redirects(host, ip):
    out = host.check_output(f"curl -sS -i --resolve {NAME}:443:{ip} http://{NAME}:443/x")
    assert out.startswith("HTTP/1.1 301")
    assert f"Location: https://{NAME}/x" in out


def test_404_carries_security_headers(request_):
    answer = request_("/no/such/page")
    assert answer.status == 404
    assert_security_headers(answer)


def test_backend_502_carries_security_headers(request_):
    # Backend b answers 502 itself on this path; a POST is never retried.
    statuses = set()
    for _ in range(4):
        answer = request_("/api/v1/flaky", method="POST", data="{}")
        statuses.add(answer.status)
        assert_security_headers(answer)
    assert 502 in statuses


def test_server_tokens_off_and_backend_headers_replaced(request_):
    answer = request_("/api/v1/ping")
    assert answer.status == 200
    assert answer.header("server") == "nginx"
    assert "x-powered-by" not in answer.headers
    assert answer.headers["x-frame-options"] == ["DENY"]  # backend sent SAMEORIGIN
    assert_security_headers(answer)


def test_index_short_cache_no_compression(request_):
    answer = request_("/", headers={"Accept-Encoding": "gzip"})
    assert answer.status == 200
    assert "<h1>Brigade</h1>" in answer.body
    assert answer.header("cache-control") == "public, max-age=60, must-revalidate"
    assert "content-encoding" not in answer.headers
    assert_security_headers(answer)


def test_hashed_assets_immutable_and_gzipped(request_):
    for path in ("/assets/app.3f9a1b2c.css", "/assets/app.5e7d0c4a.js"):
        answer = request_(path, headers={"Accept-Encoding": "gzip"}, extra="-D - -o /dev/null")
        assert answer.status == 200, path
        assert answer.header("cache-control") == "public, max-age=31536000, immutable"
        assert answer.header("content-encoding") == "gzip", path
        assert_security_headers(answer)


def test_cors_preflight_from_unlisted_origin_refused(request_):
    answer = request_(
        "/api/v1/orders",
        method="OPTIONS",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert answer.status == 403
    assert "access-control-allow-origin" not in answer.headers
    assert "access-control-allow-credentials" not in answer.headers
    assert_security_headers(answer)


def test_cors_preflight_from_listed_origin(request_):
    origin = "https://admin.brigade.test"
    answer = request_(
        "/api/v1/orders",
        method="OPTIONS",
        headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
    )
    assert answer.status == 204
    assert answer.headers["access-control-allow-origin"] == [origin]
    assert answer.header("access-control-allow-credentials") == "true"
    assert "POST" in answer.header("access-control-allow-methods")
    assert_security_headers(answer)


def test_cors_simple_requests(request_):
    listed = request_("/api/v1/ping", headers={"Origin": "https://admin.brigade.test"})
    assert listed.headers["access-control-allow-origin"] == ["https://admin.brigade.test"]
    unlisted = request_("/api/v1/ping", headers={"Origin": "https://evil.example"})
    assert unlisted.status == 200
    assert "access-control-allow-origin" not in unlisted.headers
    assert "access-control-allow-credentials" not in unlisted.headers


def test_auth_burst_gets_429(request_):
    answers = [request_("/api/v1/auth/login", method="POST", data="{}") for _ in range(10)]
    statuses = [a.status for a in answers]
    assert statuses[0] == 200
    assert 429 in statuses, statuses
    limited = next(a for a in answers if a.status == 429)
    assert_security_headers(limited)
    # The looser API limit is not touched by the same burst.
    assert request_("/api/v1/ping").status == 200


def test_body_size_limit(request_):
    # Over HTTP/1.1 curl asks first (Expect: 100-continue), so nginx can refuse
    # before the body travels.
    answer = request_("/api/v1/orders", method="POST", data="@/usr/bin/python3", extra="--http1.1")
    assert answer.status == 413
    assert_security_headers(answer)


def test_slow_client_timeouts_configured(host):
    conf = host.check_output("nginx -T 2>/dev/null")
    for line in ("client_header_timeout 10s;", "client_body_timeout 10s;", "send_timeout 10s;"):
        assert line in conf


def test_request_id_passed_to_backend_and_logged(host, request_):
    rid = f"test-{uuid.uuid4().hex}"
    answer = request_("/api/v1/ping", headers={"X-Request-ID": rid})
    assert answer.json()["headers"]["x-request-id"] == rid
    assert answer.header("x-request-id") == rid

    answer = request_("/api/v1/ping")
    generated = answer.json()["headers"]["x-request-id"]
    assert len(generated) == 32
    assert int(generated, 16) >= 0
    assert answer.header("x-request-id") == generated

    time.sleep(0.2)
    entry = json.loads(host.check_output(f"grep -F '\"{generated}\"' {ACCESS_LOG} | tail -n 1"))
    for key in ("request_time", "upstream_response_time", "upstream_addr", "upstream_status", "status"):
        assert key in entry, key
    assert entry["upstream_addr"] in ("127.0.0.2:5000", "127.0.0.3:5000")
    assert entry["status"] == 200


def test_forwarded_headers_are_nginx_own(request_):
    answer = request_("/api/v1/ping", headers={"X-Forwarded-For": "6.6.6.6"})
    seen = answer.json()["headers"]
    assert "6.6.6.6" not in seen["x-forwarded-for"]
    assert seen["x-forwarded-proto"] == "https"


def menu_fetches(host):
    """GET /api/v1/menu requests that reached a backend, both together."""
    return sum(backend_hits(host, b).get("GET /api/v1/menu", 0) for b in (BACKEND_A, BACKEND_B))


def test_microcache_public_menu(host, ip):
    # 20 requests in well under two seconds, from inside the container.
    burst = (
        f"for i in $(seq 20); do curl -sS -o /dev/null -D - --resolve {NAME}:443:{ip} --cacert {CA} "
        f"https://{NAME}/api/v1/menu | tr -d '\\r' | sed -n 's/^x-cache-status: //p'; done"
    )
    before = menu_fetches(host)
    started = time.time()
    statuses = host.check_output(burst).split()
    elapsed = time.time() - started
    fetched = menu_fetches(host) - before
    assert len(statuses) == 20
    assert statuses.count("HIT") >= 10, statuses
    # About one backend request per second (nginx counts validity in whole seconds).
    assert fetched <= elapsed + 2, (fetched, elapsed, statuses)

    # Once the entry has outlived its second, the next requests refresh it.
    time.sleep(2.5)
    before = menu_fetches(host)
    host.check_output(burst.replace("seq 20", "seq 2"))
    time.sleep(0.5)  # a background refresh may still be on its way
    assert menu_fetches(host) - before >= 1, "cached for more than about a second"


def test_microcache_never_holds_authenticated_answers(host, request_):
    auth = {"Authorization": "Bearer secret-token"}
    before = menu_fetches(host)
    answers = [request_("/api/v1/menu", headers=auth) for _ in range(3)]
    assert [a.header("x-cache-status") for a in answers] == ["BYPASS"] * 3
    assert menu_fetches(host) - before == 3  # every one went to a backend
    # A public request right after never gets an authenticated answer.
    time.sleep(2.5)
    request_("/api/v1/menu", headers=auth)
    public = request_("/api/v1/menu")
    assert "authorization" not in public.json()["headers"]
    cookie = request_("/api/v1/menu", headers={"Cookie": "session=abc"})
    assert cookie.header("x-cache-status") == "BYPASS"
    assert "cookie" in cookie.json()["headers"]


def test_stub_status_on_loopback_only(host, ip):
    assert "Active connections" in host.check_output("curl -sS http://127.0.0.1:8080/stub_status")
    assert host.run(f"curl -sS --max-time 3 http://{ip}:8080/stub_status").rc != 0


def test_exporter_on_private_address(host, ip):
    metrics = host.check_output(f"curl -sS http://{ip}:9113/metrics")
    assert "nginx_up 1" in metrics
    assert "nginx_connections_accepted" in metrics
    assert host.run("curl -sS --max-time 3 http://127.0.0.1:9113/metrics").rc != 0


def test_logs_rotate(host, request_):
    host.run(f"rm -f {ACCESS_LOG}.1")
    res = host.run("logrotate --force /etc/logrotate.d/nginx")
    assert res.rc == 0, res.stderr
    assert host.file(f"{ACCESS_LOG}.1").exists
    rid = f"rotate-{uuid.uuid4().hex}"
    request_("/api/v1/ping", headers={"X-Request-ID": rid})
    time.sleep(0.5)
    # nginx reopened its logs: the new request is in the new file.
    assert rid in host.file(ACCESS_LOG).content_string
