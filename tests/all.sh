#!/usr/bin/env bash
# Runs every test of cglimit: unit tests, and integration tests against real
# runc, crun and podman with real cgroups. Needs root (it creates cgroups and
# starts containers); installs what it needs with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for cmd in runc crun podman busybox dockerd promtool containerd patch; do
  command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd")
done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=()
  for c in "${need[@]}"; do
    case "$c" in
      busybox) pkgs+=(busybox-static) ;;
      dockerd) pkgs+=(docker.io) ;;
      promtool) pkgs+=(prometheus) ;;
      *) pkgs+=("$c") ;;
    esac
  done
  echo "installing ${pkgs[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

# The binary is built for musl (.cargo/config.toml says why). Where the
# target cannot be installed, test the static glibc build instead, loudly.
musl=x86_64-unknown-linux-musl
if [ -z "${CARGO_BUILD_TARGET:-}" ] && ! rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
  if ! rustup target add "$musl" >&2; then
    echo "WARNING: cannot install the $musl target; testing the static glibc build" >&2
    export CARGO_BUILD_TARGET=x86_64-unknown-linux-gnu
  fi
fi

cargo test --all-targets -- --test-threads 4

# Man pages and completions come from the same clap definitions as the
# binary: every visible subcommand gets a page, and the bash completion
# parses.
cargo run -q --features gen --bin cglimit-gen -- target/gen
for sub in validate explain hook apply watch events top setup doctor sync-policies runtime; do
  test -s "target/gen/man/cglimit-$sub.1" || { echo "no man page for $sub" >&2; exit 1; }
done
bash -n target/gen/completions/cglimit.bash
grep -q setup target/gen/completions/_cglimit

# The same checks on a real cgroup v2 kernel (this host's memory controller
# is v1): tests/v2vm/run.sh boots one under qemu.
bash tests/v2vm/run.sh

# A real systemd host (Debian 12, cgroup v2, Docker on the systemd driver,
# podman, runc and crun): limits hold after daemon-reload, daemon-reexec,
# docker update and apply. The image is built once and cached.
bash tests/systemd-vm/run.sh
