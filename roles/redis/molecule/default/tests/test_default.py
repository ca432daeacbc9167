"""Verify the redis role on a converged host, through real clients."""

import shlex

import pytest


def cli(host, *args, user=None, password=None, address="127.0.0.1"):
    """redis-cli as USER (the password goes in REDISCLI_AUTH), or unauthenticated."""
    auth = f"REDISCLI_AUTH={shlex.quote(password)} " if user else ""
    login = f"--user {user} " if user else ""
    res = host.run(f"{auth}redis-cli -h {address} -p 6379 {login}{' '.join(shlex.quote(a) for a in args)}")
    assert res.rc == 0, res.stderr
    return res.stdout.strip()


@pytest.fixture
def admin(host, scenario_vars):
    return lambda *args: cli(host, *args, user="admin", password=scenario_vars["redis_admin_password"])


@pytest.fixture
def app(host, scenario_vars, private_ip):
    return lambda *args: cli(
        host, *args, user="brigade", password=scenario_vars["redis_app_password"], address=private_ip
    )


@pytest.fixture
def exporter(host, scenario_vars):
    return lambda *args: cli(host, *args, user="redis_exporter", password=scenario_vars["redis_exporter_password"])


def test_services_enabled_and_running(host):
    for unit in ("redis-server", "prometheus-redis-exporter"):
        svc = host.service(unit)
        assert svc.is_enabled, unit
        assert svc.is_running, unit


def listeners(host, port):
    lines = host.check_output(f"ss -Htln 'sport = :{port}'").splitlines()
    return {line.split()[3].rsplit(":", 1)[0] for line in lines}


def test_listens_only_where_configured(host, private_ip, admin):
    assert listeners(host, 6379) == {"127.0.0.1", private_ip}
    assert listeners(host, 9121) == {private_ip}
    assert admin("CONFIG", "GET", "protected-mode").splitlines() == ["protected-mode", "yes"]


def test_container_drop_in_lifts_private_users(host):
    assert host.file("/etc/systemd/system/redis-server.service.d/10-brigade-container.conf").contains(
        "PrivateUsers=false"
    )
    assert host.check_output("systemctl show -p PrivateUsers --value redis-server") == "no"


@pytest.mark.parametrize("address", ["127.0.0.1", "private"])
def test_unauthenticated_ping_gets_noauth(host, private_ip, address):
    out = cli(host, "PING", address=private_ip if address == "private" else address)
    assert out.startswith("NOAUTH")


def test_default_user_is_disabled(admin):
    flags = admin("ACL", "GETUSER", "default").splitlines()
    assert "off" in flags[1 : flags.index("passwords")]


def test_app_user_reads_and_writes_its_prefix(app):
    assert app("SET", "brigade:molecule", "soup") == "OK"
    assert app("GET", "brigade:molecule") == "soup"
    assert app("DEL", "brigade:molecule") == "1"
    assert app("SET", "other:molecule", "soup").startswith("NOPERM")


def test_app_user_gets_noperm_for_flushall_and_config(app):
    assert app("FLUSHALL").startswith("NOPERM")
    assert app("CONFIG", "GET", "maxmemory").startswith("NOPERM")


@pytest.mark.parametrize(
    "command",
    [
        ["FLUSHALL"],
        ["FLUSHDB"],
        ["CONFIG", "SET", "maxmemory", "0"],
        ["DEBUG", "SLEEP", "0"],
        ["KEYS", "*"],
        ["SHUTDOWN"],
    ],
)
def test_app_user_is_denied_dangerous_commands(admin, command):
    # ACL DRYRUN asks the ACL alone, without running the command if it were allowed.
    answer = admin("ACL", "DRYRUN", "brigade", *command)
    assert "no permissions to run" in answer, answer


def test_exporter_user_is_read_only(exporter):
    assert exporter("PING") == "PONG"
    assert exporter("SET", "brigade:molecule", "x").startswith("NOPERM")
    assert exporter("GET", "brigade:molecule").startswith("NOPERM")
    assert exporter("FLUSHALL").startswith("NOPERM")


def test_memory_and_persistence_as_configured(admin):
    settings = admin("CONFIG", "GET", "maxmemory*", "save", "appendonly").splitlines()
    settings = dict(zip(settings[0::2], settings[1::2], strict=True))
    assert settings["maxmemory"] == str(64 * 1024 * 1024)
    assert settings["maxmemory-policy"] == "allkeys-lru"
    assert settings["save"] == "3600 1 300 100 60 10000"
    assert settings["appendonly"] == "no"


def test_exporter_reports_redis_up(host, private_ip, admin):
    admin("ACL", "LOG", "RESET")
    lines = host.check_output(f"curl -fsS http://{private_ip}:9121/metrics").splitlines()
    assert "redis_up 1" in lines
    assert "redis_memory_max_bytes 6.7108864e+07" in lines
    # The scrape ran nothing its read-only user is denied.
    assert admin("ACL", "LOG") == ""
