#!/usr/bin/env bash
# Build the Debian 12 base image for local hosts and Molecule, once per recipe.
#
# There is no registry to pull from, so the image is bootstrapped from Debian's
# mirror with debootstrap and loaded with `docker import`. Its tag is the hash of
# this file, so editing the recipe below builds a new image; `brigade/debian12:latest`
# always points at the image of the current recipe.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

repo=brigade/debian12
tag=$(sha256sum "$0" | cut -c1-12)

# The recipe: what every host has before Ansible first reaches it, like a fresh
# minimal Debian install with an SSH server.
packages=systemd,systemd-sysv,dbus,python3,python3-apt,sudo,ca-certificates,iproute2,procps,openssh-server,gnupg,curl,locales

if docker image inspect "$repo:$tag" >/dev/null 2>&1; then
  docker tag "$repo:$tag" "$repo:latest"
  exit 0
fi

apt_install debootstrap
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}

root=$(mktemp -d /var/tmp/brigade-image.XXXXXX)
trap 'rm -rf "$root"' EXIT
say "building base image $repo:$tag with debootstrap from $mirror (about a minute)"
if ! debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror" >/tmp/brigade-debootstrap.log 2>&1; then
  die "debootstrap could not build the base image (see /tmp/brigade-debootstrap.log)."
fi

security=${mirror%/debian}/debian-security
cat >"$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES

# Every container boots with its own machine id and its own SSH host keys.
: >"$root/etc/machine-id"
rm -f "$root"/etc/ssh/ssh_host_*
cat >"$root/etc/systemd/system/ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=ssh.service
UNIT
mkdir -p "$root/etc/systemd/system/ssh.service.wants"
ln -sf ../ssh-hostkeys.service "$root/etc/systemd/system/ssh.service.wants/ssh-hostkeys.service"

# Units that have nothing to do in a container.
for unit in getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
  systemd-modules-load.service sys-kernel-config.mount sys-kernel-debug.mount; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# Like a fresh install: the package lists are stale, so the first converge refreshes them.
touch -d 2000-01-01 "$root/var/lib/apt/lists"

tar -C "$root" -c . | docker import -c 'CMD ["/lib/systemd/systemd"]' - "$repo:$tag" >/dev/null
docker tag "$repo:$tag" "$repo:latest"
say "base image $repo:$tag is ready"
