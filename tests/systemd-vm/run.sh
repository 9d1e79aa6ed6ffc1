#!/usr/bin/env bash
# Runs cglimit's checks on a real systemd host: the Debian 12 image of
# image.sh (systemd as PID 1, cgroup v2, Docker on the systemd cgroup
# driver, podman, runc, crun) booted under qemu (TCG) on a throw-away
# overlay, with a second disk carrying the static cglimit, guest.sh and its
# files. The guest prints PASS/FAIL/INFO/BENCH lines and a closing
# "CGLIMIT-SYSTEMD: N passed, M failed" on ttyS0; this script fails when a
# check fails, the line is missing, or the VM does not finish in time.
#
# Alone: bash tests/systemd-vm/run.sh   (root; installs qemu and mmdebstrap
# when missing; the first run builds the image, ~1-2 min, then cached).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/systemd-vm
# Under TCG the run takes 5-6 min on a quiet host, and 40% longer when the
# host is shared: 900 s leaves room for that, and each check bounds its
# own waits.
timeout_s=${CGLIMIT_SYSTEMD_VM_TIMEOUT:-900}

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
image=$(bash "$here/image.sh")

cargo build --release -q
bin=target/${CARGO_BUILD_TARGET:-x86_64-unknown-linux-musl}/release/cglimit

work=$(mktemp -d /tmp/cglimit-sdvm.XXXXXX)
trap 'if [ -n "${qemu:-}" ]; then kill "$qemu" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
files=$work/files
mkdir -p "$files"
cp "$bin" "$files/cglimit"
cp "$here/guest.sh" "$files/run.sh"
cp "$(bash pkg/deb.sh "$work/deb")" "$files/cglimit.deb"
cp -r deploy hooks policies "$files/" 2>/dev/null || true
# The CRI client of tests/kubernetes.rs, its Python packages (the guest's
# Python is 3.11 too) and its stubs, generated here.
py=/var/cache/cglimit-test/python
PYTHONPATH=$py python3 -c 'import grpc, grpc_tools' 2>/dev/null \
  || python3 -m pip install -q --target "$py" grpcio grpcio-tools
cp -r "$py" "$files/py"
cp tests/cri/cri.py "$files/cri.py"
mkdir -p "$files/stubs"
PYTHONPATH=$py python3 -m grpc_tools.protoc -I tests/cri --python_out "$files/stubs" --grpc_python_out "$files/stubs" runtime.proto
truncate -s 256M "$work/files.img"
mkfs.ext4 -q -F -d "$files" "$work/files.img"
qemu-img create -q -f qcow2 -b "$image/disk.img" -F raw "$work/overlay.qcow2"

log=$work/console.log
echo "booting the Debian 12 systemd image under qemu (TCG), at most ${timeout_s}s" >&2
set +e
timeout "$timeout_s" qemu-system-x86_64 -accel tcg -m 2048 -smp 2 -nographic -no-reboot \
  -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0 quiet panic=-1" \
  -drive "file=$work/overlay.qcow2,if=virtio,format=qcow2" \
  -drive "file=$work/files.img,if=virtio,format=raw" \
  </dev/null >"$log" 2>&1 &
qemu=$!
wait "$qemu"
rc=$?
set -e
. tests/vm-result.sh
vm_result "systemd VM" CGLIMIT-SYSTEMD "$log" "$rc" "$timeout_s"
