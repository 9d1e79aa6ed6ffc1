#!/usr/bin/env bash
# Builds (once) the Debian 12 image the systemd checks boot: systemd as PID
# 1, Docker, podman, runc, crun, from Debian's packages with mmdebstrap,
# written into an ext4 image with `mkfs.ext4 -d` (no loop mount). Cached
# under $CGLIMIT_VM_CACHE (default /var/cache/cglimit-vm), keyed by this
# file's contents: editing it builds a new image. Prints the cache
# directory holding disk.img, vmlinuz and initrd.img.
#
# The guest runs, once the system is up, /mnt/t/run.sh from its second
# disk (the host writes it), its output on ttyS0, then powers off.
set -euo pipefail
cache=${CGLIMIT_VM_CACHE:-/var/cache/cglimit-vm}
key=$(sha256sum "$0" | cut -c1-12)
out=$cache/debian12-systemd-$key
if [ -s "$out/disk.img" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
  echo "$out"
  exit 0
fi
command -v mmdebstrap >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
}
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root

# The unit that runs the checks: started once the boot's jobs are done.
cat > "$tmp/cglimit-vm.service" <<'UNIT'
[Unit]
Description=cglimit checks on a systemd host
[Service]
Type=exec
ExecStart=/usr/local/sbin/cglimit-vm-run
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
[Install]
WantedBy=multi-user.target
UNIT
cat > "$tmp/cglimit-vm-run" <<'RUN'
#!/bin/sh
systemctl is-system-running --wait >/dev/null 2>&1
echo "CGLIMIT-SYSTEMD-VM: up ($(systemctl is-system-running 2>&1)); $(uname -r); systemd $(systemctl --version | head -n1 | cut -d' ' -f2)"
mkdir -p /mnt/t
if mount /dev/vdb /mnt/t && [ -f /mnt/t/run.sh ]; then
  sh /mnt/t/run.sh 2>&1
else
  echo "CGLIMIT-SYSTEMD-VM: no /mnt/t/run.sh"
fi
sync
systemctl poweroff --force --force
RUN

mmdebstrap --variant=minbase --mode=root \
  --include=systemd,systemd-sysv,dbus,udev,linux-image-cloud-amd64,initramfs-tools,runc,crun,podman,docker.io,busybox-static,jq,apparmor,procps,e2fsprogs,kmod,python3 \
  --customize-hook='echo cglimit-vm > "$1/etc/hostname"' \
  --customize-hook='echo "/dev/vda / ext4 rw,discard 0 1" > "$1/etc/fstab"' \
  --customize-hook="cp $tmp/cglimit-vm.service \"\$1/etc/systemd/system/\"" \
  --customize-hook="install -m 0755 $tmp/cglimit-vm-run \"\$1/usr/local/sbin/\"" \
  --customize-hook='chroot "$1" systemctl enable cglimit-vm.service' \
  --customize-hook='chroot "$1" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer systemd-timesyncd.service serial-getty@ttyS0.service getty@tty1.service' \
  --customize-hook='chroot "$1" systemctl disable docker.service docker.socket containerd.service' \
  --customize-hook='mkdir -p "$1/etc/docker" && printf "{\"iptables\": false, \"bridge\": \"none\", \"storage-driver\": \"vfs\"}\n" > "$1/etc/docker/daemon.json"' \
  --customize-hook="cp -L \"\$1\"/boot/vmlinuz-* $tmp/vmlinuz && cp -L \"\$1\"/boot/initrd.img-* $tmp/initrd.img" \
  bookworm "$root" http://deb.debian.org/debian >"$tmp/mmdebstrap.log" 2>&1 || {
    tail -n 30 "$tmp/mmdebstrap.log" >&2
    exit 1
  }
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
truncate -s 4G "$tmp/disk.img"
mkfs.ext4 -q -F -d "$root" "$tmp/disk.img"
rm -rf "$out" && mkdir -p "$out"
mv "$tmp/disk.img" "$tmp/vmlinuz" "$tmp/initrd.img" "$out/"
echo "$out"
