"""Preflight for common_admin_users: the keys are real, and this run keeps its way in.

The common role writes each admin's authorized_keys with `exclusive: true`, so a
wrong list locks the admins out on the first run. Before any host changes,
playbooks/preflight.yml runs this action once per host; it works on the control
node only (it never connects to the host) and refuses, naming the variable and
the admin, when:

- a key is not a valid OpenSSH public key line (known type, base64 blob that
  decodes, whose embedded type matches and whose fields are complete), or is a
  placeholder: any line containing REPLACE-ME (what the shipped inventories of
  staging and production hold until someone pastes the real keys);
- an admin kept present has no key at all;
- Ansible reaches the host over SSH as `ansible_user`, and that user is not an
  admin kept present with at least one key;
- the key this run connects with is not among ansible_user's keys. The
  connecting key is the public half of the private key file
  (ansible_ssh_private_key_file, ansible_private_key_file, --private-key or
  ANSIBLE_PRIVATE_KEY_FILE): derived with `ssh-keygen -y` when the key has no
  passphrase, else read from the `.pub` beside it. Without a key file, it is
  whichever key the ssh-agent offers (`ssh-add -L` through SSH_AUTH_SOCK), and
  the first matching one must come within sshd's MaxAuthTries.

When the connecting key cannot be determined (no key file and no agent, or an
encrypted key without its `.pub`) the action refuses too, unless
`keys_verified` (common_admin_keys_verified) says the operator checked it.

    - name: Preflight | admin keys
      brigade_admin_keys:
        admin_users: "{{ common_admin_users }}"
        ansible_user: "{{ ansible_user | default('') }}"
        private_key_file: "{{ ansible_ssh_private_key_file | default('') }}"
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

# Key types sshd accepts, and the fields each blob holds after its type name.
# ssh-dss is known but refused: OpenSSH 9.2 (Debian 12) no longer accepts it.
KEY_FIELDS: dict[str, int] = {
    "ssh-ed25519": 1,  # the 32-byte public key
    "ssh-rsa": 2,  # e, n
    "ecdsa-sha2-nistp256": 2,  # curve name, point
    "ecdsa-sha2-nistp384": 2,
    "ecdsa-sha2-nistp521": 2,
    "sk-ssh-ed25519@openssh.com": 2,  # the public key, application
    "sk-ecdsa-sha2-nistp256@openssh.com": 3,  # curve name, point, application
}
REFUSED_TYPES = {"ssh-dss": "DSA keys are no longer accepted by OpenSSH 9.2 (Debian 12)"}
MIN_RSA_BITS = 2048

# What the shipped inventories hold until someone pastes the real keys.
PLACEHOLDER = re.compile(r"REPLACE[-_ ]?ME", re.IGNORECASE)
SSH_CONNECTIONS = {"ssh", "paramiko", "paramiko_ssh", "ansible.builtin.ssh", "ansible.builtin.paramiko_ssh"}


class InvalidKey(ValueError):
    """A key line that sshd would not accept; the message says why."""


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: bytes
    comment: str = ""

    @property
    def fingerprint(self) -> str:
        """As `ssh-keygen -l` prints it: SHA256, base64 without padding."""
        return "SHA256:" + base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")

    def describe(self) -> str:
        return f"{self.type} {self.fingerprint}" + (f" ({self.comment})" if self.comment else "")


def _fields(blob: bytes) -> list[bytes]:
    """The SSH wire strings a key blob is made of (RFC 4251: uint32 length, then the bytes)."""
    fields, pos = [], 0
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise InvalidKey("its key data is truncated")
        size = int.from_bytes(blob[pos : pos + 4], "big")
        pos += 4
        if pos + size > len(blob):
            raise InvalidKey("its key data is truncated")
        fields.append(blob[pos : pos + size])
        pos += size
    return fields


# authorized_keys options (sshd(8), AUTHORIZED_KEYS FILE FORMAT), case-insensitive.
OPTION_NAMES = {
    "agent-forwarding", "cert-authority", "command", "environment", "expiry-time", "from", "no-agent-forwarding",
    "no-port-forwarding", "no-pty", "no-touch-required", "no-user-rc", "no-x11-forwarding", "permitlisten",
    "permitopen", "port-forwarding", "principals", "pty", "restrict", "tunnel", "user-rc", "verify-required",
    "x11-forwarding",
}  # fmt: skip
_OPTION = re.compile(r'([A-Za-z0-9-]+)(?:="(?:[^"\\]|\\.)*")?(?:,|(?=\s)|$)')


def _split_options(line: str) -> str:
    """The line without a leading authorized_keys options field (from="...",no-pty ...)."""
    first = _OPTION.match(line)
    if first is None or first.group(1).lower() not in OPTION_NAMES:
        return line  # no options: the first word must be the key type
    pos = 0
    while pos < len(line) and not line[pos].isspace():
        match = _OPTION.match(line, pos)
        if match is None or match.group(1).lower() not in OPTION_NAMES:
            raise InvalidKey("its authorized_keys options are not valid (or not followed by a key type)")
        pos = match.end()
    rest = line[pos:].strip()
    if not rest:
        raise InvalidKey("it has authorized_keys options but no key")
    return rest


def parse_public_key(line: Any) -> PublicKey:
    """One OpenSSH public key line (optionally with authorized_keys options), or InvalidKey."""
    if not isinstance(line, str) or not line.strip():
        raise InvalidKey("it is empty or not a string")
    if "\n" in line.strip() or "\r" in line:
        raise InvalidKey("it spans several lines (give each key as its own list item)")
    parts = _split_options(line.strip()).split(None, 2)
    key_type = parts[0]
    if key_type in REFUSED_TYPES:
        raise InvalidKey(REFUSED_TYPES[key_type])
    if key_type not in KEY_FIELDS:
        raise InvalidKey(f"{key_type[:40]!r} is not an OpenSSH key type ({', '.join(sorted(KEY_FIELDS))})")
    if len(parts) < 2:
        raise InvalidKey("it has a key type but no key data")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidKey("its key data is not valid base64 (truncated or mistyped?)") from None
    fields = _fields(blob)
    embedded = fields[0].decode("ascii", "replace") if fields else ""
    if embedded != key_type:
        raise InvalidKey(f"it says {key_type} but its key data is a {embedded[:40] or 'empty'} key")
    if len(fields) - 1 != KEY_FIELDS[key_type]:
        raise InvalidKey(f"its {key_type} key data has {len(fields) - 1} fields, not {KEY_FIELDS[key_type]}")
    if key_type in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com") and len(fields[1]) != 32:
        raise InvalidKey(f"its Ed25519 public key is {len(fields[1])} bytes, not 32")
    if key_type.startswith(("ecdsa-sha2-", "sk-ecdsa-sha2-")):
        curve = key_type.split("-")[-1].split("@")[0]
        if fields[1] != curve.encode():
            raise InvalidKey(f"its curve is {fields[1][:20].decode('ascii', 'replace')!r}, not {curve}")
    if key_type == "ssh-rsa":
        bits = int.from_bytes(fields[2], "big").bit_length()
        if bits < MIN_RSA_BITS:
            raise InvalidKey(f"it is an RSA key of {bits} bits (at least {MIN_RSA_BITS}; better ssh-ed25519)")
    return PublicKey(key_type, blob, parts[2].strip() if len(parts) > 2 else "")


def parse_key_lines(text: str) -> list[PublicKey]:
    """Every valid key in `ssh-add -L` or .pub output; other lines are ignored."""
    keys = []
    for line in text.splitlines():
        try:
            keys.append(parse_public_key(line))
        except InvalidKey:
            continue
    return keys


@dataclass
class ConnectingKeys:
    """What this run authenticates with: the keys ssh offers, in order, and where they come from.
    `keys` is None when they could not be determined (`reason` says why); `fatal`
    marks a setting that is plainly wrong (a key file that does not exist)."""

    source: str
    keys: list[PublicKey] | None
    reason: str = ""
    fatal: bool = False


Runner = Callable[..., subprocess.CompletedProcess]


def _run(argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=10, check=False
    )


def connecting_keys(private_key_file: str, auth_sock: str, run: Runner = _run) -> ConnectingKeys:
    """The public keys this run connects with (see the module docstring)."""
    if private_key_file:
        path = Path(private_key_file).expanduser()
        source = f"the private key file {path}"
        if not path.is_file():
            return ConnectingKeys(source, None, f"{path} does not exist", fatal=True)
        # -P '': a key with a passphrase fails at once instead of prompting.
        derived = run(["ssh-keygen", "-y", "-P", "", "-f", str(path)])
        keys = parse_key_lines(derived.stdout) if derived.returncode == 0 else []
        pub = Path(f"{path}.pub")
        if not keys and pub.is_file():
            keys = parse_key_lines(pub.read_text(errors="replace"))[:1]
        if not keys:
            why = "it has a passphrase and no .pub beside it" if not pub.is_file() else f"{pub} holds no valid key"
            return ConnectingKeys(source, None, f"its public half cannot be read: {why}")
        return ConnectingKeys(source, keys)
    if not auth_sock:
        return ConnectingKeys("the ssh-agent", None, "no private key file is set and SSH_AUTH_SOCK is unset")
    listed = run(["ssh-add", "-L"], env={**os.environ, "SSH_AUTH_SOCK": auth_sock})
    keys = parse_key_lines(listed.stdout) if listed.returncode == 0 else []
    if not keys:
        return ConnectingKeys(
            f"the ssh-agent at {auth_sock}",
            None,
            "no private key file is set and the ssh-agent offers no key"
            + (f" (ssh-add -L: {(listed.stderr or listed.stdout).strip()[:80]})" if listed.returncode != 0 else ""),
        )
    return ConnectingKeys(f"the ssh-agent at {auth_sock}", keys)


def _present(admin: Mapping[str, Any]) -> bool:
    return admin.get("state", "present") == "present"


def _label(index: int, line: Any) -> str:
    text = line if isinstance(line, str) else repr(line)
    short = text.strip() if len(text.strip()) <= 60 else text.strip()[:28] + "..." + text.strip()[-24:]
    return f"key {index + 1} ({short!r})"


def key_problems(admin_users: Iterable[Any], where: str) -> list[str]:
    """Every malformed or placeholder key, and every present admin without a key: one sentence each."""
    problems = []
    for admin in admin_users:
        if not isinstance(admin, Mapping) or not isinstance(admin.get("name"), str):
            problems.append(f"common_admin_users: {admin!r} is not a {{name, ssh_keys}} mapping.")
            continue
        name, lines = admin["name"], admin.get("ssh_keys") or []
        if not _present(admin):
            continue
        if not lines:
            problems.append(
                f"common_admin_users: admin '{name}' has no ssh_keys, so they could not log in; add their public key"
                f" (the .pub line) in {where}, or set state: absent."
            )
        for index, line in enumerate(lines):
            if isinstance(line, str) and PLACEHOLDER.search(line):
                problems.append(
                    f"common_admin_users: admin '{name}' {_label(index, line)} is the shipped placeholder (REPLACE-ME);"
                    f" put the admin's real public key (the .pub line) in {where}."
                )
                continue
            try:
                parse_public_key(line)
            except InvalidKey as error:
                problems.append(
                    f"common_admin_users: admin '{name}' {_label(index, line)} is not a valid OpenSSH public key:"
                    f" {error}; paste the whole line of the admin's .pub file in {where}."
                )
    return problems


def _valid_keys(lines: Iterable[Any]) -> list[PublicKey]:
    keys = []
    for line in lines:
        if isinstance(line, str) and not PLACEHOLDER.search(line):
            try:
                keys.append(parse_public_key(line))
            except InvalidKey:
                continue
    return keys


def access_problems(
    admin_users: Iterable[Any],
    host: str,
    ansible_user: str,
    connecting: ConnectingKeys,
    keys_verified: bool,
    max_auth_tries: int,
    where: str,
) -> list[str]:
    """Would this run still log in as ansible_user once the authorized_keys are written?"""
    if not ansible_user:
        return [
            f"ansible_user is not set for {host}: Ansible must log in as an admin of common_admin_users; set"
            f" ansible_user in {where}."
        ]
    admins = [a for a in admin_users if isinstance(a, Mapping) and a.get("name") == ansible_user and _present(a)]
    if not admins:
        return [
            f"common_admin_users: Ansible connects to {host} as ansible_user '{ansible_user}', which is not an admin"
            f" kept present there, so its account and keys would be taken away; add '{ansible_user}' with its"
            f" public key to common_admin_users in {where}, or set ansible_user."
        ]
    authorized = [k for admin in admins for k in _valid_keys(admin.get("ssh_keys") or [])]
    if not authorized:
        # key_problems has already said why each of its keys is refused.
        return [
            f"common_admin_users: ansible_user '{ansible_user}' has no valid key there, so this run would lock"
            f" itself out of {host}; give '{ansible_user}' the public key of the key Ansible connects with, in {where}."
        ]
    if connecting.keys is None:
        if connecting.fatal:
            return [
                f"ansible_ssh_private_key_file for {host}: {connecting.reason}; point it at the private key"
                f" of ansible_user '{ansible_user}'."
            ]
        if keys_verified:
            return []
        return [
            f"common_admin_users: cannot tell which key this run connects to {host} with ({connecting.reason}),"
            f" so preflight cannot check that ansible_user '{ansible_user}' keeps it; set"
            f" ansible_ssh_private_key_file (or load the key into ssh-agent), or, having checked that the key is"
            f" among '{ansible_user}''s ssh_keys, pass -e '{{\"common_admin_keys_verified\": true}}'."
        ]
    wanted = {(k.type, k.blob) for k in authorized}
    matches = [i for i, k in enumerate(connecting.keys) if (k.type, k.blob) in wanted]
    if not matches:
        offered = ", ".join(k.describe() for k in connecting.keys[:4])
        return [
            f"common_admin_users: this run connects to {host} with {connecting.source} ({offered}), which is not"
            f" among ansible_user '{ansible_user}''s ssh_keys, so writing them would lock this run out; add its"
            f" public key to '{ansible_user}' in {where}, or connect with one of the listed keys."
        ]
    if matches[0] >= max_auth_tries:
        return [
            f"common_admin_users: {connecting.source} offers {matches[0]} other keys before the one"
            f" ansible_user '{ansible_user}' keeps, more than sshd's MaxAuthTries ({max_auth_tries},"
            f" common_sshd_max_auth_tries) allows: the login to {host} would fail; set"
            f" ansible_ssh_private_key_file to that key."
        ]
    return []


class ActionModule(ActionBase):
    """On the control node only: reads variables, a key file and the ssh-agent; never the host."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(
        (
            "admin_users",
            "ansible_user",
            "connection",
            "private_key_file",
            "keys_verified",
            "max_auth_tries",
            "env",
        )
    )

    def _setting(self, name: str) -> str:
        """A connection setting that may come from the configuration, not a variable."""
        try:
            value = self._connection.get_option(name)
        except Exception:  # a connection plugin without that option (local, docker)
            value = None
        return str(value or getattr(self._play_context, name, None) or "")

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        host = (task_vars or {}).get("inventory_hostname", "this host")
        env = args.get("env") or "<env>"
        where = f"inventories/{env}/group_vars/all/main.yml"
        admin_users = args.get("admin_users") or []
        if not isinstance(admin_users, list):
            return {**result, "failed": True, "msg": "common_admin_users must be a list of {name, ssh_keys}."}

        problems = key_problems(admin_users, where)
        connection = str(args.get("connection") or "ssh")
        result["connecting_keys"] = []
        if connection in SSH_CONNECTIONS:
            ansible_user = str(args.get("ansible_user") or self._setting("remote_user"))
            private_key_file = str(args.get("private_key_file") or self._setting("private_key_file"))
            connecting = connecting_keys(private_key_file, os.environ.get("SSH_AUTH_SOCK", ""))
            result["connecting_keys"] = [k.describe() for k in connecting.keys or []]
            problems += access_problems(
                admin_users,
                host,
                ansible_user,
                connecting,
                boolean(args.get("keys_verified", False), strict=True),
                int(args.get("max_auth_tries") or 3),
                where,
            )
        if problems:
            return {**result, "failed": True, "msg": " ".join(problems), "problems": problems}
        return {**result, "changed": False, "msg": "the admins' keys are valid and this run keeps its key"}
