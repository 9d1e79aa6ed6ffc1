#!/usr/bin/env bash
# Memory-safety checks beyond the borrow checker, for the unsafe code in
# dependencies (libc calls, serde_json, serde-saphyr) and our FFI edges:
#   1. every unit test (parsers, decisions, cache decoding, real cgroup
#      writes) under AddressSanitizer (nightly flag, via RUSTC_BOOTSTRAP);
#   2. valgrind memcheck on a dynamically linked build running validate,
#      explain, the hook against a real cgroup, and the runtime wrapper.
# The static release build confuses valgrind (static glibc TLS), hence the
# dynamic build. valgrind 3.19 does not know openat2 (it answers ENOSYS), so
# the hook runs its openat fallback there. The watchdog thread still runs
# at exit: its stack is "possibly lost", by design; definite leaks fail.
# Run as root: bash tests/memcheck.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/cglimit-memcheck.XXXXXX)
cg=""
sleeper=""
cleanup() {
    [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null && wait "$sleeper" 2>/dev/null || true
    [ -n "$cg" ] && rmdir "$cg" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }

echo "== unit tests under AddressSanitizer"
RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" ASAN_OPTIONS=detect_leaks=1 \
    CARGO_TARGET_DIR=/var/tmp/cglimit-asan \
    cargo test -q --lib --target x86_64-unknown-linux-gnu 2>&1 | grep -E "test result|ERROR|Sanitizer" 

echo "== valgrind memcheck"
RUSTFLAGS="" CARGO_TARGET_DIR=/var/tmp/cglimit-dyn cargo build -q --target x86_64-unknown-linux-gnu
bin=/var/tmp/cglimit-dyn/x86_64-unknown-linux-gnu/debug/cglimit
vg() {
    local name=$1; shift
    local rc=0
    valgrind -q --error-exitcode=99 --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
        "$@" >"$work/out" 2>"$work/vg" || rc=$?
    if [ "$rc" = 99 ] || grep -q '^==[0-9]*==' "$work/vg"; then
        echo "FAIL $name"; cat "$work/vg"; exit 1
    fi
    echo "ok   $name (exit $rc)"
}
vg validate "$bin" validate policies/
vg explain "$bin" explain --policy-dir policies --id x --label cglimit.io/class=batch --memory 40g

# The hook against a real cgroup below our own memory cgroup.
own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
root=/sys/fs/cgroup/memory
[ -d "$root" ] || { root=/sys/fs/cgroup; own=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup); }
cg="$root$own/cglimit-memcheck-$$"
mkdir -p "$cg"
sleep 60 & sleeper=$!
echo "$sleeper" > "$cg/cgroup.procs"
mkdir -p "$work/bundle"
echo '{"ociVersion":"1.0.2"}' > "$work/bundle/config.json"
printf '{"ociVersion":"1.0.2","id":"m","status":"creating","pid":%d,"bundle":"%s"}' "$sleeper" "$work/bundle" > "$work/state"
vg hook "$bin" hook --policy-dir policies --state-dir "$work/state-dir" < "$work/state"
grep -q '"outcome":"applied"' "$work/state-dir/decisions.jsonl"

# The wrapper editing a real config.json, then executing a stand-in runtime.
printf '#!/bin/sh\nexit 0\n' > "$work/rt"; chmod 755 "$work/rt"
DOCKER_HOST=unix://$work/none.sock vg runtime "$bin" runtime --policy-dir policies \
    --runtime "$work/rt" create --bundle "$work/bundle" m
grep -q '"limit"' "$work/bundle/config.json"
echo "memcheck: no errors"
