#!/usr/bin/env bash
# `cglimit watch` over N idle memory cgroups (default 10,000), on v2, then on v1
# in the same boot, against the shell loop floor, in the v2 VM (tests/v2vm: Debian's cloud
# kernel under qemu, TCG). Prints the guest's BENCH lines.
#   N=10000 MEASURE=30 SETTLE=60 bash bench/watch-v2.sh
# WATCHES sets fs.inotify.max_user_watches in the guest first; NOFILE the
# watcher's descriptor limit (30,000).
set -euo pipefail
cd "$(dirname "$0")/.."
guest=$(mktemp /tmp/cglimit-bench-guest.XXXXXX)
trap 'rm -f "$guest"' EXIT
{
  echo "N=${N:-10000} MEASURE=${MEASURE:-30} SETTLE=${SETTLE:-60} WATCHES=${WATCHES:-} NOFILE=${NOFILE:-30000}"
  cat bench/watch-v2-guest.sh
} >"$guest"
CGLIMIT_VM_BENCH=$guest CGLIMIT_VM_MEMORY=${CGLIMIT_VM_MEMORY:-3072} \
  CGLIMIT_VM_TIMEOUT=${CGLIMIT_VM_TIMEOUT:-1200} bash tests/v2vm/run.sh
