"""Configuration changes, run as ansible-playbook against the instance: the
rolling-update hook, a bad configuration, and bad input stopped in preflight."""

import json
import time

import pytest
from conftest import FAIL_TIMEOUT, run_playbook

UPSTREAM = "/etc/nginx/conf.d/brigade-upstream.conf"


@pytest.fixture(autouse=True)
def healthy_backends(host):
    host.run("systemctl start brigade-backend-a brigade-backend-b")
    time.sleep(FAIL_TIMEOUT + 1)


def slow_requests_received(host):
    """How many /api/v1/slow requests the two stand-in backends have received."""
    total = 0
    for address in ("127.0.0.2", "127.0.0.3"):
        hits = json.loads(host.check_output(f"curl -sS http://{address}:5000/__hits"))
        total += hits.get("GET /api/v1/slow", 0)
    return total


def start_slow_requests(host, ip, count):
    """Requests the backends hold until /run/brigade-release exists. Returns
    once the backends hold them, so that they are in flight in nginx (on a
    busy machine curl can take more than a second to get there)."""
    host.run("rm -f /run/brigade-release")
    before = slow_requests_received(host)
    for n in range(count):
        host.run(
            f"rm -f /tmp/slow{n}.*; (curl -sS -o /tmp/slow{n}.body -w '%{{http_code}}' "
            f"--resolve brigade.test:443:{ip} --cacert /etc/ssl/brigade-nginx/ca.crt "
            f"https://brigade.test/api/v1/slow > /tmp/slow{n}.code 2>&1; "
            f"touch /tmp/slow{n}.done) >/dev/null 2>&1 &"
        )
    deadline = time.monotonic() + 30
    while slow_requests_received(host) < before + count:
        assert time.monotonic() < deadline, "the slow requests did not reach the backends within 30 s"
        time.sleep(0.2)


def wait_done(host, count, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if all(host.file(f"/tmp/slow{n}.done").exists for n in range(count)):
            return [host.file(f"/tmp/slow{n}.code").content_string.strip() for n in range(count)]
        time.sleep(0.5)
    raise AssertionError("slow requests did not finish")


def key_material(host):
    """The first line of the server key's base64 body: must never be logged."""
    return host.file("/etc/ssl/brigade-nginx/server.key").content_string.splitlines()[1]


def backends_seen(request_, count=10):
    return {request_("/api/v1/ping").json()["backend"] for _ in range(count)}


def test_rolling_hook_marks_one_backend_down(host, ip, request_, config_checksums, master_pid):
    pid = master_pid()
    others = host.check_output(
        "cd /etc/nginx && find . -type f ! -path ./conf.d/brigade-upstream.conf | sort | xargs sha256sum"
    )
    start_slow_requests(host, ip, 2)  # one on each backend, in flight during the reload

    # The hook waits for the requests in flight on the old workers; these are
    # held, so it gives up after its drain timeout and says so.
    res = run_playbook("rolling.yml", {"down": ["127.0.0.3"], "nginx_upstream_drain_timeout": 3})
    assert res.returncode != 0
    assert "still serve requests after 3 s" in res.output
    assert not host.file("/tmp/slow0.done").exists

    assert host.file(UPSTREAM).contains("server 127.0.0.3:5000 .* down;")
    assert not host.file(UPSTREAM).contains("server 127.0.0.2:5000 .* down;")
    assert backends_seen(request_) == {"a"}
    # A graceful reload: same master, nothing else touched, in-flight requests finish.
    assert master_pid() == pid
    assert (
        host.check_output(
            "cd /etc/nginx && find . -type f ! -path ./conf.d/brigade-upstream.conf | sort | xargs sha256sum"
        )
        == others
    )
    # The requests that were in flight when nginx reloaded, on b as well, finish.
    host.run("touch /run/brigade-release")
    assert wait_done(host, 2, 30) == ["200", "200"]
    served = {json.loads(host.file(f"/tmp/slow{n}.body").content_string)["backend"] for n in range(2)}
    assert served == {"a", "b"}
    # With nothing in flight any more, the same call succeeds and changes nothing.
    res = run_playbook("rolling.yml", {"down": ["127.0.0.3"]})
    assert res.returncode == 0, res.output
    assert "changed=0" in res.stdout

    res = run_playbook("rolling.yml", {"down": []})
    assert res.returncode == 0, res.output
    assert not host.file(UPSTREAM).contains(" down;")
    assert backends_seen(request_) == {"a", "b"}


def test_rolling_hook_unchanged_is_a_no_op(host):
    assert run_playbook("rolling.yml", {"down": []}).returncode == 0
    res = run_playbook("rolling.yml", {"down": []})
    assert res.returncode == 0, res.output
    assert "changed=0" in res.stdout


def test_rolling_hook_keeps_one_backend(host, config_checksums):
    before = config_checksums()
    res = run_playbook("rolling.yml", {"down": ["127.0.0.2", "127.0.0.3"]})
    assert res.returncode != 0
    assert "would leave no backend in service" in res.output
    assert config_checksums() == before


def test_bad_config_fails_and_old_config_keeps_serving(host, request_, master_pid):
    pid = master_pid()
    assert request_("/api/v1/ping").status == 200
    res = run_playbook("converge.yml", {"nginx_client_max_body_size": "10zebras"})
    assert res.returncode != 0
    assert "`nginx -t` rejected the new configuration" in res.output
    assert '"client_max_body_size" directive invalid value' in res.output
    # Still serving, from the same master, and the files are the good ones again.
    assert request_("/api/v1/ping").status == 200
    assert request_("/").status == 200
    assert master_pid() == pid
    assert host.run("nginx -t").rc == 0
    assert host.run("grep -r 10zebras /etc/nginx").rc == 1


def test_reload_the_master_refuses_fails_loudly(host, request_, master_pid):
    """A configuration `nginx -t` accepts but the running master refuses (a rate
    limit zone whose key changed): systemctl reload reports success, the reload
    script does not, and the previous configuration keeps serving."""
    site = "/etc/nginx/conf.d/brigade-site.conf"
    pid = master_pid()
    host.run(f"cp {site} /tmp/site.good")
    try:
        changed = host.run(
            f"sed -i 's/limit_req_zone $brigade_api_limit_key/limit_req_zone $binary_remote_addr/' {site}"
        )
        assert changed.rc == 0
        assert host.run("nginx -t").rc == 0
        res = host.run("/usr/local/sbin/brigade-nginx-reload")
        assert res.rc == 1, (res.stdout, res.stderr)
        assert "keeps serving the previous one" in res.stderr
        assert 'uses the "$binary_remote_addr" key' in res.stderr
        assert request_("/api/v1/ping").status == 200
        assert master_pid() == pid
    finally:
        host.run(f"cp /tmp/site.good {site}")
    assert host.run("/usr/local/sbin/brigade-nginx-reload").rc == 0


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"nginx_http2": "maybe"}, "nginx_http2"),
        ({"nginx_upstream_servers": []}, "nginx_upstream_servers is empty"),
        ({"nginx_upstream_down": "127.0.0.3"}, "must both be lists"),
        ({"nginx_proxy_next_upstream": ["error", "non_idempotent"]}, "would replay a POST"),
        ({"nginx_cors_allowed_origins": ["*"]}, "exact origin"),
    ],
)
def test_bad_input_stops_in_preflight(config_checksums, extra_vars, message):
    before = config_checksums()
    res = run_playbook("converge.yml", extra_vars)
    assert res.returncode != 0
    assert message in res.output, res.output[-3000:]
    assert config_checksums() == before


def test_certificate_not_matching_key_stops_in_preflight(host, config_checksums):
    before = config_checksums()
    res = run_playbook(
        "converge.yml",
        {
            "nginx_tls_source": "vault",
            # The CA's certificate with the server's key: a pair that does not match.
            "nginx_tls_certificate_pem": host.file("/etc/ssl/brigade-nginx/ca.crt").content_string,
            "nginx_tls_private_key_pem": host.file("/etc/ssl/brigade-nginx/server.key").content_string,
        },
    )
    assert res.returncode != 0
    assert "nginx_tls_certificate_pem does not match nginx_tls_private_key_pem" in res.output
    assert key_material(host) not in res.output
    assert config_checksums() == before


def test_vault_certificate_installs_and_serves(host, request_):
    """The production path, with the scenario's own pair standing in for the vault's."""
    res = run_playbook(
        "converge.yml",
        {
            "nginx_tls_source": "vault",
            "nginx_tls_certificate_pem": host.file("/etc/ssl/brigade-nginx/server.crt").content_string,
            # The scenario's CA stands in for an intermediate: a chain turns stapling on.
            "nginx_tls_chain_pem": host.file("/etc/ssl/brigade-nginx/ca.crt").content_string,
            "nginx_tls_private_key_pem": host.file("/etc/ssl/brigade-nginx/server.key").content_string,
        },
    )
    assert res.returncode == 0, res.output[-3000:]
    assert key_material(host) not in res.output
    fullchain = host.file("/etc/ssl/brigade-nginx/fullchain.pem").content_string
    assert fullchain.count("BEGIN CERTIFICATE") == 2
    assert host.file("/etc/ssl/brigade-nginx/server.key").mode == 0o600
    site = host.file("/etc/nginx/conf.d/brigade-site.conf")
    assert site.contains("ssl_certificate /etc/ssl/brigade-nginx/fullchain.pem;")
    assert site.contains("ssl_stapling on;")
    assert site.contains("ssl_trusted_certificate /etc/ssl/brigade-nginx/chain.pem;")
    assert request_("/api/v1/ping").status == 200
