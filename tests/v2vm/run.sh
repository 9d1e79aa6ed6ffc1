#!/usr/bin/env bash
# Runs cglimit's cgroup v2 checks on a real cgroup v2 kernel: Debian's cloud
# kernel booted under qemu (TCG; KVM is not assumed) with an initramfs that
# holds busybox, runc, crun, setpriv, the cglimit binary and guest.sh. The
# guest prints one line per check and a closing "N passed, M failed" line on
# the serial console; this script fails when a check fails, when the closing
# line is missing, or when the VM does not finish within its time limit.
#
# Needs root only for apt-get (it installs qemu-system-x86, busybox-static,
# runc, crun when missing). Alone: bash tests/v2vm/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/v2vm
timeout_s=${CGLIMIT_VM_TIMEOUT:-540}

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v busybox >/dev/null || need+=(busybox-static)
command -v runc >/dev/null || need+=(runc)
command -v crun >/dev/null || need+=(crun)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The kernel: the package the cloud meta-package points at, kept between runs.
cache=${CGLIMIT_VM_CACHE:-/var/cache/cglimit-vm}
mkdir -p "$cache"
pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
if [ -z "$pkg" ]; then
  apt-get update -qq
  pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
fi
kdir="$cache/$pkg"
if ! ls "$kdir"/boot/vmlinuz-* >/dev/null 2>&1; then
  rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp"
  (cd "$kdir.tmp" && apt-get download -q "$pkg" >/dev/null && dpkg -x ./*.deb . && rm -f ./*.deb)
  rm -rf "$kdir" && mv "$kdir.tmp" "$kdir"
fi
kernel=$(ls "$kdir"/boot/vmlinuz-* | head -n1)

cargo build --release -q
bin=target/${CARGO_BUILD_TARGET:-x86_64-unknown-linux-musl}/release/cglimit

work=$(mktemp -d /tmp/cglimit-vm.XXXXXX)
trap 'if [ -n "${qemu:-}" ]; then kill "$qemu" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,sbin,usr/bin,lib,lib64,etc,proc,sys,dev,tmp,run,cglimit}
cp "$(command -v busybox)" "$root/bin/busybox"
copy_with_libs() {
  local b=$1
  cp "$b" "$root/usr/bin/"
  ldd "$b" | awk '/=>/ {print $3} /^\t\// {print $1}' | while read -r lib; do
    [ -n "$lib" ] && [ -e "$lib" ] || continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
for b in runc crun setpriv; do copy_with_libs "$(command -v $b)"; done
cp "$bin" "$root/usr/bin/cglimit"
# A static program that fills unread sockets (the socket-memory check).
case "${CARGO_BUILD_TARGET:-x86_64-unknown-linux-musl}" in
  *musl*) static=(--target x86_64-unknown-linux-musl) ;;
  *) static=(-C target-feature=+crt-static) ;;
esac
rustc -O -C strip=symbols "${static[@]}" -o "$root/usr/bin/fill-sockets" tests/programs/fill_sockets.rs
cp "$here/guest.sh" "$root/init"
# bench/watch-v2.sh: a benchmark in place of the checks.
if [ -n "${CGLIMIT_VM_BENCH:-}" ]; then cp "$CGLIMIT_VM_BENCH" "$root/cglimit/bench.sh"; fi
chmod +x "$root/init"
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$work/initrd.gz"

log=$work/console.log
# Under TCG a boot now and then never reaches the guest (qemu spins with no
# console output at all). The guest's first line comes within seconds; one
# that has not come after start_s is booted again, at most three times.
start_s=${CGLIMIT_VM_START_TIMEOUT:-150}
for attempt in 1 2 3; do
  echo "booting $pkg under qemu (TCG), at most ${timeout_s}s (attempt $attempt)" >&2
  timeout "$timeout_s" qemu-system-x86_64 -accel tcg -m "${CGLIMIT_VM_MEMORY:-1536}" -smp 2 -nographic -no-reboot \
    -kernel "$kernel" -initrd "$work/initrd.gz" \
    -append "console=ttyS0 panic=-1 quiet rdinit=/init systemd.unified_cgroup_hierarchy=1" \
    </dev/null >"$log" 2>&1 &
  qemu=$!
  started=
  for _ in $(seq "$start_s"); do
    if grep -aq 'INFO kernel' "$log"; then started=1; break; fi
    kill -0 "$qemu" 2>/dev/null || break
    sleep 1
  done
  if [ -n "$started" ] || ! kill -0 "$qemu" 2>/dev/null || [ "$attempt" -eq 3 ]; then
    break
  fi
  echo "v2 VM: no sign of the guest after ${start_s}s; booting again" >&2
  kill "$qemu" 2>/dev/null || true
  wait "$qemu" 2>/dev/null || true
done
set +e
wait "$qemu"
rc=$?
set -e
. tests/vm-result.sh
vm_result "v2vm" CGLIMIT-VM "$log" "$rc" "$timeout_s"
