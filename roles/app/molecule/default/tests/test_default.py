"""The converged app host: the service, its release, its secrets, real requests."""

import json

from conftest import BASE, SERVICE, USER, link_target

testinfra_hosts = ["app"]


def _main_pid(host):
    return host.check_output(f"systemctl show -P MainPID {SERVICE}")


def test_service_is_enabled_and_running(host):
    service = host.service(SERVICE)
    assert service.is_enabled
    assert service.is_running


def test_every_process_runs_as_the_service_user(host):
    pid = _main_pid(host)
    assert host.check_output(f"ps -o user= -p {pid}") == USER
    workers = host.check_output(f"ps -o user= --ppid {pid}").split()
    assert workers == [USER, USER], "app_workers is 2 in molecule.yml"
    user = host.user(USER)
    assert user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000


def test_listens_on_the_private_address_only(host, private_ip):
    assert host.socket(f"tcp://{private_ip}:5000").is_listening
    assert not host.socket("tcp://0.0.0.0:5000").is_listening


def test_readyz_answers_200(http):
    status, body = http("/readyz")
    assert status == 200, body
    assert body["checks"] == {"process": "ok", "database": "ok", "redis": "ok"}


def test_version_names_the_current_release(host, http):
    status, body = http("/api/v1/version")
    assert status == 200
    assert body["release_id"] == link_target(host, "current")
    assert body["schema_revision"]


def test_first_admin_signs_in(http, secrets):
    status, body = http("/api/v1/auth/token", "POST", {"username": "admin", "password": secrets["app_admin_password"]})
    assert status == 200, body
    status, me = http("/api/v1/users/me", token=body["access_token"])
    assert status == 200
    assert (me["username"], me["role"]) == ("admin", "admin")


def test_menu_is_cached_in_redis(http):
    http("/api/v1/menu")
    status, _ = http("/api/v1/menu")
    assert status == 200


def test_the_app_connects_as_the_runtime_user_only(db_host, http):
    http("/readyz")
    users = db_host.check_output(
        "runuser -u postgres -- psql -At -d brigade -c "
        "\"SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = 'brigade' AND pid <> pg_backend_pid()\""
    ).split()
    assert users == ["brigade"]


def test_release_layout(host):
    release = link_target(host, "current")
    root = host.file(f"{BASE}/releases/{release}")
    assert root.is_directory
    assert (root.user, root.group, root.mode) == ("root", "root", 0o755)
    marker = json.loads(host.file(f"{BASE}/releases/{release}/.complete").content_string)
    assert marker["release"] == release
    assert marker["installed_at"].endswith("Z")
    assert host.file(f"{BASE}/releases/{release}/venv/bin/brigade-api").exists
    assert host.check_output(f"cat {BASE}/releases/{release}/release.env").endswith(f"BRIGADE_RELEASE_ID={release}")
    assert host.run(f"cd {BASE}/releases/{release}/artifact && sha256sum --strict --quiet -c SHA256SUMS").rc == 0
    shared = host.file(f"{BASE}/shared")
    assert (shared.is_directory, shared.user, shared.group, shared.mode) == (True, "root", USER, 0o750)
    # The service cannot change its own code.
    assert host.run(f"runuser -u {USER} -- touch {BASE}/releases/{release}/venv/x").rc != 0


# The service's environment belongs to its release (switched with `current`).
SERVICE_ENV = f"{BASE}/current/service.env"


def test_secrets_file_belongs_to_the_service_user_only(host):
    env = host.file(SERVICE_ENV)
    assert not host.file(f"/etc/{SERVICE}/{SERVICE}.env").exists, "the environment lives in the release now"
    assert (env.user, env.group, env.mode) == (USER, USER, 0o600)
    deploy = host.file(f"/etc/{SERVICE}/deploy.env")
    assert (deploy.user, deploy.group, deploy.mode) == ("root", "root", 0o600)


def test_service_never_sees_the_migration_or_admin_password(host, secrets):
    env = host.file(SERVICE_ENV).content_string
    assert secrets["postgresql_migrator_password"] not in env
    assert secrets["app_admin_password"] not in env
    assert "MIGRATION_DATABASE_URL" not in env


def test_secrets_reach_the_service_unchanged(host, secrets):
    """Quotes, $ and backslashes in the key, and / : @ in the Redis password, survive."""
    res = host.run(
        f"systemd-run --quiet --wait --pipe --collect -p EnvironmentFile={SERVICE_ENV} printenv APP_SECRET_KEY"
    )
    assert res.rc == 0, res.stderr
    assert res.stdout.rstrip("\n") == secrets["app_secret_key"]


def test_no_secret_on_a_command_line_or_in_the_journal(host, secrets):
    processes = host.check_output("ps -eo args")
    journal = host.check_output(f"journalctl --no-pager -u {SERVICE} -u 'run-*'")
    for value in secrets.values():
        assert value not in processes
        assert value not in journal


def test_unit_is_hardened_and_drains_gracefully(host):
    props = dict(
        line.split("=", 1)
        for line in host.check_output(
            f"systemctl show {SERVICE} -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp"
            " -p ReadWritePaths -p KillSignal -p KillMode -p TimeoutStopUSec -p CapabilityBoundingSet"
        ).splitlines()
    )
    assert props["User"] == USER
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["ReadWritePaths"] == f"/run/{SERVICE}"
    assert props["KillSignal"] == "15"
    assert props["KillMode"] == "mixed"
    assert props["CapabilityBoundingSet"] == ""
    # Longer than gunicorn's graceful timeout (30 s) plus the drain delay.
    assert props["TimeoutStopUSec"] in ("47s", "47000000")


def test_drain_file_takes_the_host_out_of_readiness(host, http):
    try:
        host.check_output(f"touch /run/{SERVICE}/drain")
        status, body = http("/readyz")
        assert status == 503, body
    finally:
        host.check_output(f"rm -f /run/{SERVICE}/drain")
    assert http("/readyz")[0] == 200


def test_prune_timer_is_armed_and_its_job_runs(host):
    timer = host.service(f"{SERVICE}-prune.timer")
    assert timer.is_enabled
    assert timer.is_running
    res = host.run(f"systemctl start {SERVICE}-prune.service")
    assert res.rc == 0, host.run(f"journalctl --no-pager -n 20 -u {SERVICE}-prune").stdout
    assert "deleted" in host.check_output(f"journalctl --no-pager -n 5 -u {SERVICE}-prune")
