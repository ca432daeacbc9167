"""Data at rest: every file on the hosts that holds a vault value is one the
roles meant to write, with the owner and mode they meant, and none of them is
world-readable.

Each host searches its own files for every vault value (as is, and
URL-encoded, as in a DSN). The values travel to the host on the SSH session's
standard input, never on a command line, and only the names of the secrets
found come back."""

from __future__ import annotations

import base64
import fnmatch
import json
import textwrap
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.stacklib import HOSTS, Hidden, run_playbook, ssh, vault

# Where secrets could be written: configuration, installed software, homes.
SCAN_ROOTS = ["/etc", "/opt", "/usr/local", "/srv", "/home", "/root"]

# What the roles write, per inventory group: path -> (owner, group, mode,
# secrets it must hold, why this owner and mode).
EXPECTED = {
    "app": {
        "/opt/brigade/releases/*/service.env": (
            "brigade-api",
            "brigade-api",
            0o600,
            {"vault_postgresql_app_password", "vault_redis_app_password", "vault_app_secret_key"},
            "each release's environment: systemd reads it as root, the service user owns it",
        ),
        "/etc/brigade-api/deploy.env": (
            "root",
            "root",
            0o600,
            {"vault_postgresql_migrator_password", "vault_app_admin_password"},
            "migration owner and first admin: only the deploy-time commands, run as root, read it",
        ),
    },
    "cache": {
        "/etc/redis/brigade-admin.auth": (
            "root",
            "root",
            0o600,
            {"vault_redis_admin_password"},
            "the admin password for root's redis-cli wrapper",
        ),
        "/etc/default/prometheus-redis-exporter": (
            "root",
            "root",
            0o600,
            {"vault_redis_exporter_password"},
            "an EnvironmentFile: systemd reads it as root before starting the exporter",
        ),
    },
    "db": {
        "/etc/prometheus-postgres-exporter/password": (
            "root",
            "prometheus",
            0o640,
            {"vault_postgresql_monitor_password"},
            "the exporter, running as prometheus, reads the file itself: group read",
        ),
    },
    "monitoring": {
        "/etc/grafana/grafana.ini": (
            "root",
            "grafana",
            0o640,
            {"vault_grafana_admin_password", "vault_grafana_secret_key"},
            "Grafana, running as grafana, reads its configuration: group read (only if Grafana is installed)",
        ),
        # The local environment's pgBackRest repository host is the monitoring host.
        "/etc/pgbackrest.conf": (
            "root",
            "pgbackrest",
            0o640,
            {"vault_backup_pgbackrest_cipher_pass"},
            "the repository's cipher passphrase: pgBackRest, running as pgbackrest, reads it: group read",
        ),
    },
}
# Files holding secrets that are not vault values: the TLS private keys.
PRIVATE_KEYS = {"lb": ["/etc/ssl/brigade-nginx/server.key", "/etc/ssl/brigade-nginx/ca.key"]}

SCANNER = textwrap.dedent(
    """
    import grp, json, os, pwd, stat, sys
    needles = [(n, v.encode()) for n, vs in json.load(sys.stdin).items() for v in vs]
    found, scanned = [], 0
    for root in sys.argv[1:]:
        for top, dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(top, name)
                try:
                    st = os.lstat(path)
                    if not stat.S_ISREG(st.st_mode) or st.st_size > 4 << 20:
                        continue
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                scanned += 1
                names = sorted({n for n, v in needles if v in data})
                if names:
                    found.append({"path": path, "mode": stat.S_IMODE(st.st_mode), "names": names,
                                  "owner": pwd.getpwuid(st.st_uid).pw_name, "group": grp.getgrgid(st.st_gid).gr_name})
    print(json.dumps({"scanned": scanned, "found": found}))
    """
)


def _needles() -> dict[str, list[str]]:
    return {
        name: sorted({value, urllib.parse.quote(value, safe="")}) for name, value in vault().items() if len(value) >= 8
    }


def _scan(host: str) -> dict:
    code = base64.b64encode(SCANNER.encode()).decode()
    command = f"sudo -n python3 -c 'import base64; exec(base64.b64decode(\"{code}\"))' {' '.join(SCAN_ROOTS)}"
    res = ssh(host, command, timeout=180, input=Hidden(json.dumps(_needles())))
    assert res.returncode == 0, f"{host}: {res.stderr[-2000:]}"
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def scans() -> dict[str, dict]:
    assert _needles(), "the local vault holds no secrets: nothing would be checked"
    hosts = sorted(HOSTS)
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        return dict(zip(hosts, pool.map(_scan, hosts), strict=True))


def _expected(host: str) -> dict[str, tuple]:
    files: dict[str, tuple] = {}
    for group in HOSTS[host]["groups"]:
        files.update(EXPECTED.get(group, {}))
    return files


def _grafana_installed(host: str) -> bool:
    res = ssh(host, "dpkg-query -W -f='${Status}' grafana 2>/dev/null || true")
    return "ok installed" in res.stdout


def test_no_world_readable_file_holds_a_vault_value(scans):
    print(f"searched {', '.join(SCAN_ROOTS)} on each host for {len(_needles())} vault values")
    exposed = []
    for host, scan in sorted(scans.items()):
        print(f"  {host}: {scan['scanned']} files read, {len(scan['found'])} hold a vault value")
        for f in scan["found"]:
            print(f"    {f['mode']:04o} {f['owner']}:{f['group']} {f['path']}: {', '.join(f['names'])}")
            if f["mode"] & 0o007:
                exposed.append((host, f["path"], f"{f['mode']:04o}", f["names"]))
    assert all(scan["scanned"] > 150 for scan in scans.values()), "suspiciously few files read"
    assert not exposed, f"readable by others: {exposed}"


def test_secrets_are_where_the_roles_put_them_with_their_owner_and_mode(scans):
    problems = []
    checked = 0
    for host, scan in sorted(scans.items()):
        expected = _expected(host)
        if "/etc/grafana/grafana.ini" in expected and not _grafana_installed(host):
            print(f"{host}: Grafana is not installed (its package was unreachable): grafana.ini not checked")
            del expected["/etc/grafana/grafana.ini"]
        found = {f["path"]: f for f in scan["found"]}
        for path in sorted(p for p in found if not any(fnmatch.fnmatchcase(p, pattern) for pattern in expected)):
            problems.append(f"{host}: {path} holds {found[path]['names']}, which no role is meant to write")
        for pattern, (owner, group, mode, names, why) in sorted(expected.items()):
            matches = [f for path, f in sorted(found.items()) if fnmatch.fnmatchcase(path, pattern)]
            if not matches:
                problems.append(f"{host}: {pattern} holds none of {sorted(names)}: is the table above out of date?")
                continue
            for f in matches:
                path = f["path"]
                checked += 1
                got = (f["owner"], f["group"], f["mode"])
                print(f"{host}: {path} {got[0]}:{got[1]} {got[2]:04o} ({why})")
                if got != (owner, group, mode):
                    problems.append(
                        f"{host}: {path} is {got[0]}:{got[1]} {got[2]:04o}, want {owner}:{group} {mode:04o}"
                    )
                if not names <= set(f["names"]):
                    problems.append(f"{host}: {path} lacks {sorted(names - set(f['names']))}")
    assert checked >= 5, f"only {checked} secret files checked"
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("host", sorted(h for h, m in HOSTS.items() if set(m["groups"]) & set(PRIVATE_KEYS)))
def test_tls_private_keys_are_root_only(host):
    paths = [p for g in HOSTS[host]["groups"] for p in PRIVATE_KEYS.get(g, [])]
    res = ssh(host, "sudo -n stat -c '%U:%G %a %n' " + " ".join(paths))
    assert res.returncode == 0, res.stderr
    print(res.stdout.strip())
    for line in res.stdout.splitlines():
        owner, mode, path = line.split()
        assert (owner, mode) == ("root:root", "600"), path


# Reads the first bytes of every file under the given roots, on the host, and
# prints one JSON object: how many files carry each header. pgBackRest's
# aes-256-cbc files start with OpenSSL's "Salted__"; age's with its version
# line; a plain custom-format pg_dump with "PGDMP", a Redis snapshot with "REDIS".
_HEADERS = textwrap.dedent(
    """
    import json, os, sys
    kinds = {"salted": b"Salted__", "age": b"age-encryption.org/v1", "pg_dump": b"PGDMP", "rdb": b"REDIS"}
    seen = {"files": 0, "other": [], **{k: 0 for k in kinds}}
    for root in sys.argv[1:]:
        for top, _, names in os.walk(root):
            for name in names:
                path = os.path.join(top, name)
                if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) == 0:
                    continue
                with open(path, "rb") as f:
                    head = f.read(32)
                seen["files"] += 1
                kind = next((k for k, magic in kinds.items() if head.startswith(magic)), None)
                if kind:
                    seen[kind] += 1
                else:
                    seen["other"].append(path)
    print(json.dumps(seen))
    """
)


def _headers(host: str, *roots: str) -> dict:
    res = ssh(host, "sudo -n python3 - " + " ".join(roots), input=_HEADERS)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_backups_are_encrypted():
    """Every file of the pgBackRest repository is encrypted with its cipher, every
    exported set is age-encrypted, and no plain dump or snapshot lies anywhere a
    backup is kept (the repository host, and the staging directory of the hosts
    that take exports)."""
    repo_host = next(h for h, m in sorted(HOSTS.items()) if "monitoring" in m["groups"])
    sets = ssh(repo_host, "sudo -n sh -c 'ls /var/lib/pgbackrest/sets/*/*.age'")
    if sets.returncode != 0 or not sets.stdout.strip():
        # Run on its own (the backup suite before it takes sets): take one.
        run_playbook("backup.yml", log_name="security-backup")
        sets = ssh(repo_host, "sudo -n sh -c 'ls /var/lib/pgbackrest/sets/*/*.age'")
    exported = {Path(line).name for line in sets.stdout.split()}
    print(f"{repo_host}: exports {sorted(exported)}")
    assert {"brigade.dump.age", "globals.sql.age", "redis.rdb.age"} <= exported, sets.stdout

    repository = _headers(repo_host, "/var/lib/pgbackrest/archive", "/var/lib/pgbackrest/backup")
    print(f"{repo_host}: pgBackRest repository {repository | {'other': len(repository['other'])}}")
    assert repository["salted"] >= 10, f"too few encrypted repository files: {repository}"
    assert repository["other"] == [], f"repository files without the cipher's header: {repository['other'][:10]}"

    exports = _headers(repo_host, "/var/lib/pgbackrest/sets")
    print(f"{repo_host}: sets {exports | {'other': len(exports['other'])}}")
    assert exports["age"] >= 3, exports
    assert exports["pg_dump"] == exports["rdb"] == exports["salted"] == 0, exports
    # What else a set holds: its checksum manifests (names and hashes, no data).
    assert all(Path(p).name.startswith("SHA256SUMS") for p in exports["other"]), exports["other"]

    for host in sorted(h for h, m in HOSTS.items() if set(m["groups"]) & {"db", "cache"}):
        staged = _headers(host, "/var/backups/brigade")
        print(f"{host}: /var/backups/brigade {staged | {'other': len(staged['other'])}}")
        assert staged["pg_dump"] == staged["rdb"] == 0, f"{host}: a plain dump or snapshot is staged: {staged}"
        assert all(Path(p).name.startswith("SHA256SUMS") for p in staged["other"]), staged["other"]
