#!/usr/bin/env bash
# Starts a real container through runc with the cglimit hook and prints the
# limits it sees from inside. As root on Debian or Ubuntu, it first
# installs what is missing: runc, busybox-static, a C toolchain, rustup's
# Rust and its musl target.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v runc >/dev/null || need+=(runc)
command -v busybox >/dev/null || need+=(busybox-static)
command -v cc >/dev/null || need+=(build-essential)
command -v curl >/dev/null || need+=(curl ca-certificates)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH=$HOME/.cargo/bin:$PATH
fi
if ! command -v cargo >/dev/null; then
  echo "== installing Rust with rustup" >&2
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
  export PATH=$HOME/.cargo/bin:$PATH
fi
musl=x86_64-unknown-linux-musl
if [ -z "${CARGO_BUILD_TARGET:-}" ] && ! rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
  rustup target add "$musl" >&2 || export CARGO_BUILD_TARGET=x86_64-unknown-linux-gnu
fi
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
