"""Generate the local environment's vault password and secrets on first use.

Reads the list of required secrets from playbooks/group_vars/all/secrets.yml and
makes sure inventories/local/group_vars/all/vault.yml (encrypted with the vault
id "local") defines every one of them. Existing values are never changed, so the
script is safe to run before every `make up`. Nothing it writes is tracked by git.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import yaml
from ansible.parsing.vault import VaultLib, VaultSecret
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "playbooks/group_vars/all/secrets.yml"
VAULT_FILE = ROOT / "inventories/local/group_vars/all/vault.yml"
PASSWORD_FILE = ROOT / ".local/vault-password-local"
VAULT_ID = "local"
# The age public key that matches the vault's age identity: plain inventory,
# generated beside the vault (and just as untracked).
RECIPIENT_FILE = ROOT / "inventories/local/group_vars/all/backup_age_recipient.yml"

_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _bech32(hrp: str, data: bytes) -> str:
    """Bech32 (BIP 173) without the length limit, as age encodes its keys."""
    words, acc, bits = [], 0, 0
    for byte in data:
        acc, bits = (acc << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            words.append((acc >> bits) & 31)
    if bits:
        words.append((acc << (5 - bits)) & 31)

    def polymod(values: list[int]) -> int:
        chk = 1
        for value in values:
            top = chk >> 25
            chk = (chk & 0x1FFFFFF) << 5 ^ value
            for i, gen in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
                chk ^= gen if (top >> i) & 1 else 0
        return chk

    expanded = [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]
    pm = polymod(expanded + words + [0] * 6) ^ 1
    checksum = [(pm >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32[w] for w in words + checksum)


def _bech32_decode(text: str) -> bytes:
    data = text.lower().rsplit("1", 1)[1][:-6]
    acc, bits, out = 0, 0, bytearray()
    for char in data:
        acc, bits = (acc << 5) | _BECH32.index(char), bits + 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    return bytes(out)


def age_identity() -> str:
    """A new age X25519 identity (what `age-keygen` prints)."""
    return _bech32("age-secret-key-", X25519PrivateKey.generate().private_bytes_raw()).upper()


def age_recipient(identity: str) -> str:
    """The public key (age1...) of an age identity."""
    key = X25519PrivateKey.from_private_bytes(_bech32_decode(identity))
    return _bech32("age", key.public_key().public_bytes_raw())


def _generate(item: dict) -> str:
    if item.get("kind") == "age_identity":
        return age_identity()
    return secrets.token_urlsafe(int(item.get("length", 24)))


def _write_recipients(schema: list[dict], current: dict[str, str]) -> None:
    lines = []
    for item in schema:
        if item.get("kind") == "age_identity" and item["name"] in current:
            lines.append(f"{item['recipient']}: {age_recipient(current[item['name']])}\n")
    if not lines:
        return
    body = "---\n# The public half of the local vault's age identities, written by scripts/local_secrets.py.\n"
    body += "".join(lines)
    if not RECIPIENT_FILE.exists() or RECIPIENT_FILE.read_text() != body:
        RECIPIENT_FILE.write_text(body)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    tmp.replace(path)


def _vault_password() -> bytes:
    if not PASSWORD_FILE.exists():
        _write_private(PASSWORD_FILE, secrets.token_urlsafe(32).encode() + b"\n")
        print(f"generated the local vault password in {PASSWORD_FILE.relative_to(ROOT)}")
    return PASSWORD_FILE.read_bytes().strip()


def main() -> int:
    schema = yaml.safe_load(SCHEMA.read_text())["brigade_required_secrets"] or []
    required = [item for item in schema if "local" in item.get("envs", ["local"])]
    vault = VaultLib([(VAULT_ID, VaultSecret(_vault_password()))])
    current: dict[str, str] = {}
    if VAULT_FILE.exists():
        try:
            current = yaml.safe_load(vault.decrypt(VAULT_FILE.read_bytes())) or {}
        except Exception as exc:
            print(
                f"brigade: cannot decrypt {VAULT_FILE.relative_to(ROOT)} with {PASSWORD_FILE.relative_to(ROOT)}: {exc}",
                file=sys.stderr,
            )
            return 1
    missing = [item for item in required if item["name"] not in current]
    if not missing and VAULT_FILE.exists():
        _write_recipients(required, current)
        return 0
    for item in missing:
        current[item["name"]] = _generate(item)
    body = "---\n# The local environment's secrets, generated by scripts/local_secrets.py.\n"
    body += yaml.safe_dump(dict(sorted(current.items())), default_flow_style=False)
    _write_private(VAULT_FILE, vault.encrypt(body, vault_id=VAULT_ID))
    _write_recipients(required, current)
    names = ", ".join(item["name"] for item in missing) or "none"
    print(f"local vault: {VAULT_FILE.relative_to(ROOT)} (added: {names})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
