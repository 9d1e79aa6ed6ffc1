#!/usr/bin/env bash
# Where the wrapper's time goes in a `create`, before it execs the runtime:
# cglimit built with the `trace-phases` feature writes a mark to the
# kernel's trace buffer at the end of each phase (src/sys/phase.rs); the
# scheduler's events give the wrapper's exec, its exec of the runtime (a
# static no-op named runc, first in PATH) and the time it spent off the
# CPU. The floor, a minimal static wrapper that only execs the runtime
# (musl and position-dependent, as cglimit), runs in the same rounds,
# interleaved. Each is timed with the bundle on tmpfs (where containerd
# and dockerd keep bundles: /run) and on the disk's filesystem (podman's).
#   bash bench/wrapper-phases.sh                 # 300 rounds, 1,000 policies
# Needs root, rustc, python3 and tracefs; prints a Markdown table of
# medians in microseconds.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-300}
work=$(mktemp -d /tmp/cglimit-wphases.XXXXXX)
shm=$(mktemp -d /dev/shm/cglimit-wphases.XXXXXX)
tracing=/sys/kernel/tracing
events="sched/sched_process_exec sched/sched_process_exit sched/sched_switch"
cleanup() {
    echo 0 > "$tracing/tracing_on" 2>/dev/null || true
    for e in $events; do echo 0 > "$tracing/events/$e/enable" 2>/dev/null || true; done
    rm -rf "$work" "$shm"
}
trap cleanup EXIT
[ -e "$tracing/trace_marker" ] || mount -t tracefs none "$tracing"

CARGO_TARGET_DIR="$PWD/target/phases" cargo build -q --release --features trace-phases
cp "target/phases/${CARGO_BUILD_TARGET:-x86_64-unknown-linux-musl}/release/cglimit" "$work/cglimit"
ln -s cglimit "$work/cglimit-runtime"
cat > "$work/ex.rs" <<'RS'
use std::os::unix::process::CommandExt;
fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let e = std::process::Command::new("runc").args(&a).exec();
    eprintln!("{e}");
}
RS
rustc -O -C strip=symbols -C relocation-model=static --target x86_64-unknown-linux-musl -o "$work/minimal" "$work/ex.rs"
mkdir -p "$work/fake" "$work/bundle" "$shm/bundle"
printf 'fn main() {}\n' > "$work/true.rs"
rustc -O -C strip=symbols -C relocation-model=static --target x86_64-unknown-linux-musl -o "$work/fake/runc" "$work/true.rs"
. bench/start-fixture.sh
printf 'policyDir: %s/policies\ncacheDir: %s/cache\ndockerHost: unix:///nonexistent/docker.sock\n' \
    "$work" "$work" > "$work/create.yaml"
printf '{"ociVersion":"1.0.2","process":{"args":["true"],"cwd":"/"},"root":{"path":"%s/rootfs"},"linux":{"resources":{"memory":{"limit":1073741824}}}}' \
    "$work" > "$work/config.orig"
disk=$(df --output=fstype "$work" | tail -1)

echo 0 > "$tracing/tracing_on"
echo > "$tracing/trace"
echo 65536 > "$tracing/buffer_size_kb"
for e in $events; do echo 1 > "$tracing/events/$e/enable"; done
python3 - "$rounds" "$work" "$shm" "$tracing" <<'PY'
import os, shutil, subprocess, sys
rounds, work, shm, tracing = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
env = dict(os.environ, PATH=f"{work}/fake:" + os.environ.get("PATH", ""),
           CGLIMIT_CONFIG=f"{work}/create.yaml")
progs = [f"{work}/minimal", f"{work}/cglimit-runtime"]
def once(prog, bundle):
    shutil.copy(f"{work}/config.orig", f"{bundle}/config.json")
    subprocess.run([prog, "create", "--bundle", bundle, "bench-create"], env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
for p in progs:  # warm: the policy cache is written once
    once(p, f"{shm}/bundle")
open(f"{tracing}/tracing_on", "w").write("1")
for _ in range(rounds):
    for b in (f"{shm}/bundle", f"{work}/bundle"):
        for p in progs:
            open(f"{tracing}/trace_marker", "w").write(f"round {p} {b}")
            once(p, b)
open(f"{tracing}/tracing_on", "w").write("0")
PY
cat "$tracing/trace" > "$work/trace.txt"

python3 - "$work/trace.txt" "$work" "$shm" "$disk" <<'PY'
import collections, re, statistics, sys
trace, work, shm, disk = sys.argv[1:]
rx = re.compile(r'^\s*(.+?)-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+):\s+(\w+):\s*(.*)$')
# pid -> [case, exec time, [(t, mark)], runtime exec time, off-CPU seconds]
runs, current, out = {}, None, {}
for line in open(trace):
    m = rx.match(line)
    if not m:
        continue
    _, tid, t, ev, rest = m.groups()
    tid, t = int(tid), float(t)
    if ev == "tracing_mark_write" and rest.startswith("round "):
        current = tuple(rest.split()[1:3])
    elif ev == "sched_process_exec":
        f = re.search(r"filename=(\S+)", rest).group(1)
        if current and f == current[0]:
            runs[tid] = [current, t, [], None, 0.0]
        elif tid in runs and f.endswith("/fake/runc"):
            runs[tid][3] = t
    elif ev == "tracing_mark_write" and tid in runs and runs[tid][3] is None:
        runs[tid][2].append((t, rest.strip()))
    elif ev == "sched_switch":
        prev = int(re.search(r"prev_pid=(\d+)", rest).group(1))
        nxt = int(re.search(r"next_pid=(\d+)", rest).group(1))
        out[prev] = t
        if nxt in out and nxt in runs and runs[nxt][3] is None:
            runs[nxt][4] += t - out.pop(nxt)
rows, table = [], collections.defaultdict(lambda: collections.defaultdict(list))
for r in runs.values():
    (prog, bundle), te, marks, tr, off = r
    if tr is None:
        continue
    where = "tmpfs" if bundle.startswith(shm) else disk
    col = ("floor" if prog.endswith("/minimal") else "cglimit", where)
    prev, name = te, "exec"
    for t, n in marks:
        k = f"{name} → {n}"
        table[k][col].append(t - prev)
        rows.append(k) if k not in rows else None
        prev, name = t, n
    for k, v in ((f"{name} → exec of the runtime", tr - prev),
                 ("off the CPU (preempted or waiting)", off),
                 ("**exec → exec of the runtime**", tr - te)):
        table[k][col].append(v)
        rows.append(k) if k not in rows else None
rows.sort(key=lambda k: (k.startswith("off"), k.startswith("**")))
cols = [(w, f) for f in ("tmpfs", disk) for w in ("floor", "cglimit")]
n = min(len(table["**exec → exec of the runtime**"][c]) for c in cols)
print(f"| phase (median µs, {n} rounds) | " + " | ".join(f"{w}, bundle on {f}" for w, f in cols) + " |")
print("|---" * (len(cols) + 1) + "|")
for k in rows:
    cells = [f"{statistics.median(table[k][c]) * 1e6:.0f}" if table[k][c] else "" for c in cols]
    print(f"| {k} | " + " | ".join(cells) + " |")
for f in ("tmpfs", disk):
    tot = {w: statistics.median(table["**exec → exec of the runtime**"][(w, f)]) for w in ("floor", "cglimit")}
    print(f"\nbundle on {f}: cglimit {(tot['cglimit'] - tot['floor']) * 1e6:+.0f} µs over the floor (exec → exec of the runtime, medians)")
PY
