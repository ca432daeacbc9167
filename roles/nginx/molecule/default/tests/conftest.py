"""Helpers for the nginx scenario: real requests, made inside the container
against its own bridge address, with the scenario's CA as the trust anchor."""

import json
import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field

import pytest

NAME = "brigade.test"
CA = "/etc/ssl/brigade-nginx/ca.crt"
BACKEND_A = "127.0.0.2:5000"
BACKEND_B = "127.0.0.3:5000"
FAIL_TIMEOUT = 4  # nginx_upstream_fail_timeout in molecule.yml
ACCESS_LOG = "/var/log/nginx/brigade-access.log"

# Every header the role promises on every HTTPS answer, errors included.
SECURITY_HEADERS = {
    "strict-transport-security": "max-age=63072000",
    "content-security-policy": None,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "permissions-policy": None,
    "cross-origin-opener-policy": "same-origin",
}


@dataclass
class Answer:
    status: int
    headers: dict = field(default_factory=dict)  # lower-case name -> list of values
    body: str = ""

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> dict:
        return json.loads(self.body)


def parse_curl_output(raw: str) -> Answer:
    """curl -i output: status line, headers, blank line, body."""
    head, _, body = raw.partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return Answer(status, headers, body)


@pytest.fixture(scope="module")
def ip(host) -> str:
    return host.check_output("hostname -I").split()[0]


@pytest.fixture(scope="module")
def request_(host, ip):
    """request_(path, method=..., headers=..., scheme=..., data=...) -> Answer."""

    def do(path, method="GET", headers=None, scheme="https", data=None, extra=""):
        args = [
            "curl",
            "-sS",
            "-i",
            "--max-time",
            "30",
            "-X",
            method,
            "--resolve",
            f"{NAME}:443:{ip}",
            "--resolve",
            f"{NAME}:80:{ip}",
            "--cacert",
            CA,
        ]
        for name, value in (headers or {}).items():
            args += ["-H", f"{name}: {value}"]
        if data is not None:
            args += ["--data-binary", data]
        cmd = " ".join(shlex.quote(a) for a in args) + f" {extra} " + shlex.quote(f"{scheme}://{NAME}{path}")
        res = host.run(cmd)
        assert res.rc == 0, f"{cmd}: {res.stderr}"
        return parse_curl_output(res.stdout)

    return do


def assert_security_headers(answer: Answer) -> None:
    for name, value in SECURITY_HEADERS.items():
        got = answer.headers.get(name)
        assert got, f"{name} missing on a {answer.status} answer: {answer.headers}"
        assert len(got) == 1, f"{name} sent {len(got)} times: {got}"
        if value is not None:
            assert got[0] == value, f"{name}: {got[0]!r}"
    assert "'unsafe-inline'" not in answer.header("content-security-policy")
    assert "default-src 'self'" in answer.header("content-security-policy")


def backend_hits(host, backend: str) -> dict:
    """Requests a stand-in backend has seen, by "METHOD /path"."""
    return json.loads(host.check_output(f"curl -sS http://{backend}/__hits"))


def log_entries(host, request_ids) -> dict:
    """Access-log entries (parsed JSON) by request id."""
    wanted = set(request_ids)
    found = {}
    for line in host.file(ACCESS_LOG).content_string.splitlines():
        entry = json.loads(line)
        if entry["request_id"] in wanted:
            found[entry["request_id"]] = entry
    return found


def run_playbook(playbook: str, extra_vars: dict) -> subprocess.CompletedProcess:
    """Run one of the scenario's playbooks against the instance, as Molecule
    does, without the scenario's own setup. `.output` is stdout and stderr."""
    scenario = os.environ["MOLECULE_SCENARIO_DIRECTORY"]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(extra_vars, handle)
    try:
        res = subprocess.run(
            [
                "ansible-playbook",
                "-i",
                os.environ["MOLECULE_INVENTORY_FILE"],
                "--skip-tags",
                "scenario_setup",
                "-e",
                f"@{handle.name}",
                os.path.join(scenario, playbook),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        res.output = res.stdout + res.stderr
        return res
    finally:
        os.unlink(handle.name)


@pytest.fixture
def config_checksums(host):
    """Checksums of every file under /etc/nginx, to prove nothing changed."""

    def take() -> str:
        return host.check_output("cd /etc/nginx && find . -type f | sort | xargs sha256sum")

    return take


@pytest.fixture
def master_pid(host):
    return lambda: host.check_output("cat /run/nginx.pid").strip()
