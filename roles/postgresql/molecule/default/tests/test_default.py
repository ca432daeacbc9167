"""Verify the postgresql role on a converged host, through real clients."""

import shlex

import pytest

UNIT = "postgresql@15-main"


def psql(host, sql, user="postgres", password=None, address=None, db="postgres"):
    """Run one statement; as the superuser over the socket unless an address is given."""
    if address is None:
        return host.run(f"runuser -u postgres -- psql -XAtq -v ON_ERROR_STOP=1 -d {db} -c {shlex.quote(sql)}")
    return host.run(
        f"PGPASSWORD={shlex.quote(password)} PGCONNECT_TIMEOUT=5 psql -XAtq -v ON_ERROR_STOP=1"
        f" -h {address} -U {user} -d {db} -c {shlex.quote(sql)}"
    )


def scalar(host, sql):
    res = psql(host, sql)
    assert res.rc == 0, res.stderr
    return res.stdout.strip()


@pytest.fixture
def app(host, scenario_vars, private_ip):
    def run(sql, db="brigade"):
        return psql(host, sql, "brigade", scenario_vars["postgresql_app_password"], private_ip, db)

    return run


@pytest.fixture
def migrator(host, scenario_vars, private_ip):
    def run(sql):
        return psql(host, sql, "brigade_migrator", scenario_vars["postgresql_migrator_password"], private_ip, "brigade")

    return run


def test_services_enabled_and_running(host):
    for unit in (UNIT, "prometheus-postgres-exporter"):
        svc = host.service(unit)
        assert svc.is_enabled, unit
        assert svc.is_running, unit


def listeners(host, port):
    lines = host.check_output(f"ss -Htln 'sport = :{port}'").splitlines()
    return {line.split()[3].rsplit(":", 1)[0] for line in lines}


def test_listens_only_where_configured(host, private_ip):
    pg = listeners(host, 5432)
    assert {"127.0.0.1", private_ip} <= pg
    assert pg <= {"127.0.0.1", "[::1]", private_ip}
    assert listeners(host, 9187) == {private_ip}


def test_password_encryption_is_scram(host):
    assert scalar(host, "SHOW password_encryption") == "scram-sha-256"
    hashes = scalar(
        host,
        "SELECT string_agg(left(rolpassword, 14), ',') FROM pg_authid"
        " WHERE rolname IN ('brigade', 'brigade_migrator', 'postgres_exporter')",
    )
    assert hashes.split(",") == ["SCRAM-SHA-256$"] * 3


def test_pg_hba_is_scram_only_with_peer_for_the_superuser(host):
    rules = scalar(
        host,
        "SELECT string_agg(type || ' ' || array_to_string(user_name, ',') || ' ' || auth_method, ';')"
        " FROM pg_hba_file_rules",
    ).split(";")
    assert rules[0] == "local postgres peer"
    assert all(rule.endswith(("scram-sha-256", "reject")) for rule in rules[1:]), rules


def test_app_user_works_in_its_schema_over_tcp(app):
    res = app(
        "CREATE TABLE molecule_probe (id serial PRIMARY KEY, note text);"
        " INSERT INTO molecule_probe (note) VALUES ('hello');"
        " SELECT current_schema() || ':' || note FROM molecule_probe;"
        " DROP TABLE molecule_probe;"
    )
    assert res.rc == 0, res.stderr
    assert res.stdout.strip() == "brigade:hello"


def test_app_user_is_refused_create_role(app):
    res = app("CREATE ROLE sneaky LOGIN")
    assert res.rc != 0
    assert "permission denied to create role" in res.stderr


def test_app_user_has_no_power(host):
    flags = scalar(
        host, "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication FROM pg_roles WHERE rolname = 'brigade'"
    )
    assert flags == "f|f|f|f"


def test_runtime_user_reads_and_writes_what_the_migrator_creates(app, migrator):
    res = migrator("CREATE TABLE molecule_orders (id bigserial PRIMARY KEY, dish text NOT NULL)")
    assert res.rc == 0, res.stderr
    try:
        res = app("INSERT INTO molecule_orders (dish) VALUES ('soup'); SELECT dish FROM molecule_orders")
        assert res.rc == 0, res.stderr
        assert res.stdout.strip() == "soup"
        res = app("DROP TABLE molecule_orders")
        assert res.rc != 0
        assert "must be owner" in res.stderr
    finally:
        migrator("DROP TABLE IF EXISTS molecule_orders")


def test_superuser_is_refused_over_tcp(host, private_ip):
    for address in (private_ip, "127.0.0.1"):
        res = psql(host, "SELECT 1", "postgres", "anything", address)
        assert res.rc != 0
        assert 'pg_hba.conf rejects connection for host "' in res.stderr, res.stderr


def test_remote_clients_reach_the_app_database_only(app):
    res = app("SELECT 1", db="postgres")
    assert res.rc != 0
    assert "no pg_hba.conf entry" in res.stderr, res.stderr


def test_exporter_reports_pg_up(host, private_ip):
    metrics = host.check_output(f"curl -fsS http://{private_ip}:9187/metrics")
    lines = metrics.splitlines()
    assert "pg_up 1" in lines
    assert "pg_exporter_last_scrape_error 0" in lines


def test_archiving_is_off_by_default(host):
    assert scalar(host, "SHOW archive_mode") == "off"


def test_tuning_follows_the_planned_memory(host):
    # molecule.yml plans for 1024 MB: a quarter and three quarters of it.
    assert scalar(host, "SHOW shared_buffers") == "256MB"
    assert scalar(host, "SHOW effective_cache_size") == "768MB"
