"""TLS with real clients: openssl s_client and testssl.sh, against the
container's bridge address."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import CA, NAME

ALLOWED_TLS12_SUITES = {
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
}
TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}

# testssl.sh findings of MEDIUM or above that this scenario accepts, each for a
# stated reason (in the file, shared with the full stack's security checks),
# matched on id and text so that nothing else slips through.
ACCEPTED_FINDINGS = {
    finding_id: accepted["finding"]
    for finding_id, accepted in yaml.safe_load((Path(__file__).parents[1] / "testssl-accepted.yml").read_text()).items()
}


def s_client(host, ip, options):
    return host.run(f"openssl s_client -brief -connect {ip}:443 -servername {NAME} -CAfile {CA} {options} </dev/null")


@pytest.mark.parametrize("version", ["tls1", "tls1_1"])
def test_old_tls_versions_refused(host, ip, version):
    # SECLEVEL=0 lets this client offer TLS 1.0/1.1: a failure is the server's.
    res = s_client(host, ip, f"-{version} -cipher DEFAULT@SECLEVEL=0")
    assert res.rc != 0
    assert "Protocol version" not in res.stderr + res.stdout


@pytest.mark.parametrize(("version", "name"), [("tls1_2", "TLSv1.2"), ("tls1_3", "TLSv1.3")])
def test_tls12_and_tls13_accepted_and_verified(host, ip, version, name):
    res = s_client(host, ip, f"-{version}")
    assert res.rc == 0, res.stderr
    out = res.stderr + res.stdout
    assert f"Protocol version: {name}" in out
    assert "Verification: OK" in out


def test_only_ecdhe_aead_suites(host, ip):
    """Try every TLS 1.2 suite this OpenSSL knows, one at a time."""
    script = (
        "for c in $(openssl ciphers -s -tls1_2 'ALL:COMPLEMENTOFALL:@SECLEVEL=0' | tr ':' ' '); do "
        f'openssl s_client -connect {ip}:443 -servername {NAME} -tls1_2 -cipher "$c:@SECLEVEL=0" '
        '</dev/null >/dev/null 2>&1 && echo "$c"; done; true'
    )
    offered = set(host.check_output(script).split())
    assert offered, "no TLS 1.2 suite at all"
    assert offered <= ALLOWED_TLS12_SUITES, offered - ALLOWED_TLS12_SUITES
    for suite in offered:
        assert suite.startswith("ECDHE-"), suite  # no DHE, no static RSA
        assert "GCM" in suite or "CHACHA20" in suite, suite  # no CBC

    tls13 = set()
    for suite in sorted(TLS13_SUITES):
        if s_client(host, ip, f"-tls1_3 -ciphersuites {suite}").rc == 0:
            tls13.add(suite)
    assert tls13 == TLS13_SUITES


def test_session_cache_on_tickets_off(host):
    conf = host.check_output("nginx -T 2>/dev/null")
    assert "ssl_session_cache shared:brigade_tls:10m;" in conf
    assert "ssl_session_tickets off;" in conf
    assert "ssl_prefer_server_ciphers off;" in conf


def test_server_key_is_private(host):
    for key in ("/etc/ssl/brigade-nginx/server.key", "/etc/ssl/brigade-nginx/ca.key"):
        assert host.file(key).mode == 0o600
        assert host.file(key).user == "root"


def probe_failures(findings):
    """Checks testssl.sh could not complete (WARN), apart from the client's own
    missing GOST engine (nginx offers no GOST)."""
    return [f for f in findings if f["severity"] == "WARN" and f["id"] != "engine_problem"]


@pytest.fixture(scope="module")
def testssl(host, ip):
    # A probe that timed out on a busy machine (seen: sessionresumption_ticket,
    # "connect problem", with other scenarios running alongside) is a failed
    # measurement, not a finding: the scan runs again, up to three times, and
    # the last one must complete (test_testssl_no_medium_or_worse asserts it).
    for attempt in (1, 2, 3):
        host.run("rm -f /tmp/testssl.json")
        res = host.run(
            f"testssl --quiet --color 0 --warnings off --openssl-timeout 10 --add-ca {CA} "
            f"--jsonfile /tmp/testssl.json https://{ip}/"
        )
        findings = json.loads(host.file("/tmp/testssl.json").content_string)
        assert findings, res.stdout + res.stderr
        if not probe_failures(findings):
            break
        print(f"testssl.sh scan {attempt}: checks that did not complete: {probe_failures(findings)}")
    return findings


def test_testssl_no_medium_or_worse(testssl):
    severe = [f for f in testssl if f["severity"] in ("MEDIUM", "HIGH", "CRITICAL")]
    print("testssl.sh findings of MEDIUM or above:")
    for f in severe:
        print(f"  {f['severity']:8} {f['id']}: {f['finding']}")
    unexpected = [f for f in severe if ACCEPTED_FINDINGS.get(f["id"]) != f["finding"]]
    assert not unexpected, unexpected
    # The scan itself worked: no check ended in a warning, except this one about
    # the client: Debian's openssl has no GOST engine, and nginx offers no GOST.
    assert not probe_failures(testssl), probe_failures(testssl)


def test_testssl_protocols_and_trust(testssl):
    by_id = {f["id"]: f for f in testssl}
    for proto in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        assert by_id[proto]["finding"].startswith("not offered"), by_id[proto]
    for proto in ("TLS1_2", "TLS1_3"):
        assert by_id[proto]["finding"].startswith("offered"), by_id[proto]
    assert by_id["HSTS_time"]["severity"] == "OK"
    assert by_id["BREACH"]["severity"] == "OK"
    trust = [f for f in testssl if f["id"].startswith("cert_chain_of_trust")]
    assert trust
    assert all(f["severity"] == "OK" for f in trust), trust
