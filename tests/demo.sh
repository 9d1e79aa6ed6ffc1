#!/usr/bin/env bash
# Starts a real container through runc with the cglimit hook and prints the
# limits it sees from inside. Needs root, runc and busybox-static.
set -euo pipefail
cd "$(dirname "$0")/.."
for c in runc busybox; do
  command -v "$c" >/dev/null || { echo "needs $c (apt-get install runc busybox-static)" >&2; exit 1; }
done
cargo build --release -q
bin=$PWD/target/${CARGO_BUILD_TARGET:-x86_64-unknown-linux-musl}/release/cglimit
work=$(mktemp -d /tmp/cglimit-demo.XXXXXX)
id=cglimit-demo-$$
own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3} $1 == "0" {v2=$3} END {}' /proc/self/cgroup)
[ -n "$own" ] || own=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
cgpath="${own%/}/$id"
cleanup() {
  runc delete -f "$id" >/dev/null 2>&1 || true
  for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do rmdir "$h${cgpath#/}" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/bundle/rootfs/bin" "$work/bundle/rootfs/proc" "$work/bundle/rootfs/sys"
cp "$(command -v busybox)" "$work/bundle/rootfs/bin/busybox"
ln -s busybox "$work/bundle/rootfs/bin/sh"
ln -s busybox "$work/bundle/rootfs/bin/cat"
cat > "$work/bundle/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/", "env": ["PATH=/bin"],
    "args": ["sh", "-c", "cd /sys/fs/cgroup/memory 2>/dev/null && { echo memory.limit_in_bytes=\$(cat memory.limit_in_bytes); echo memory.memsw.limit_in_bytes=\$(cat memory.memsw.limit_in_bytes); echo memory.soft_limit_in_bytes=\$(cat memory.soft_limit_in_bytes); } || { cd /sys/fs/cgroup; echo memory.max=\$(cat memory.max); echo memory.swap.max=\$(cat memory.swap.max); echo memory.high=\$(cat memory.high); }"]},
  "root": {"path": "rootfs", "readonly": true},
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
             {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro", "nosuid", "noexec", "nodev"]},
             {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]}],
  "hooks": {"createRuntime": [{"path": "$bin", "args": ["cglimit", "hook", "--policy-dir", "$PWD/policies", "--state-dir", "$work/state", "--no-cache"]}]},
  "linux": {"cgroupsPath": "$cgpath",
    "resources": {"memory": {"limit": 17179869184, "swap": 17179869184}},
    "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"}]}
}
JSON
echo "== runc run with the hook; the container asked for -m 16g --memory-swap 16g; it sees:"
runc run --bundle "$work/bundle" "$id"
echo "== the decision record:"
cat "$work/state/decisions.jsonl"
