#!/usr/bin/env bash
# OOM kill to recorded line while another container waits under its OOM.
#
# A cgroup whose OOM killer is disabled (`docker run --oom-kill-disable`,
# runc's `disableOOMKiller`) is notified of its OOM and nothing is killed:
# the watcher waits a while for a kill that does not come. Each round here
# brings one such cgroup to its OOM and, at once, a killed OOM in another,
# and times the second's `oom_kill` line from its notification (the
# benchmark's own eventfd on the same cgroup). Before the wait was made a
# recheck in the watcher's loop, it held every other event for 50 ms.
#   bash bench/oom-held.sh [path/to/cglimit]     # default: the release build
#   N=200 K=10 bash bench/oom-held.sh            # idle cgroups beside, rounds
# Needs root and a v1 memory controller; python3.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [ -z "$bin" ]; then
    cargo build -q --release --bin cglimit
    bin="target/${CARGO_BUILD_TARGET:-x86_64-unknown-linux-musl}/release/cglimit"
fi
n=${N:-200}; k=${K:-10}
me=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/self/cgroup)
root=/sys/fs/cgroup/memory${me%/}/cglimit-oomheld-$$
state=$(mktemp -d /tmp/cglimit-oomheld.XXXXXX)
W=
cleanup() {
    [ -n "$W" ] && kill "$W" 2>/dev/null && wait "$W" 2>/dev/null || true
    for d in "$root"/*/; do
        [ -f "$d/cgroup.procs" ] && xargs -r kill -9 < "$d/cgroup.procs" 2>/dev/null || true
    done
    sleep 0.2
    [ -d "$root" ] && find "$root" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
    rmdir "$root" 2>/dev/null || true
    rm -rf "$state"
}
trap cleanup EXIT
mkdir "$root"
for i in $(seq 1 "$n"); do mkdir "$root/c$i"; done
mkdir "$root/killed"; echo 16M > "$root/killed/memory.limit_in_bytes"
for i in $(seq 1 "$k"); do
    mkdir "$root/held$i"
    echo 16M > "$root/held$i/memory.limit_in_bytes"
    echo 1 > "$root/held$i/memory.oom_control"
done
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" watch --listen "127.0.0.1:$port" --no-podman --no-docker --interval 1s \
    --cgroup-parent "${me%/}/cglimit-oomheld-$$" --state-dir "$state" \
    --runc-root none --crun-root none 2>/dev/null &
W=$!
sleep 12 # every cgroup found (discovery every tenth tick) and armed
python3 - "$root" "$state/events.jsonl" "$k" <<'PY'
import os, select, subprocess, sys, time
root, events, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
def notified(cgroup):
    e = os.eventfd(0, os.EFD_NONBLOCK)
    o = os.open(f"{cgroup}/memory.oom_control", os.O_RDONLY)
    with open(f"{cgroup}/cgroup.event_control", "w") as f:
        f.write(f"{e} {o}")
    return e
def grow(cgroup):
    return subprocess.Popen(["sh", "-c", f"echo $$ > {cgroup}/cgroup.procs; "
                             "exec sh -c 's=aaaaaaaaaaaaaaaa; while :; do s=$s$s; done'"])
def kills():
    try:
        return open(events).read().count('"kind":"oom_kill"')
    except OSError:
        return 0
killed = notified(f"{root}/killed")
lat = []
for i in range(1, rounds + 1):
    held = notified(f"{root}/held{i}")
    grow(f"{root}/held{i}")
    select.select([held], [], [], 5)  # its OOM began; no kill follows
    while True:
        try:
            os.eventfd_read(killed)
        except BlockingIOError:
            break
    before = kills()
    p = grow(f"{root}/killed")
    select.select([killed], [], [], 5)
    t0 = time.perf_counter()
    while kills() == before and time.perf_counter() - t0 < 5:
        time.sleep(0.0002)
    lat.append((time.perf_counter() - t0) * 1e3)
    p.wait()
    time.sleep(0.1)
lat.sort()
print(f"kill to line beside a held OOM, {rounds} rounds: "
      f"p50 {lat[len(lat) // 2]:.1f} ms, max {lat[-1]:.1f} ms")
PY
