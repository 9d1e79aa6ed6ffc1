#!/usr/bin/env bash
# Where the hook's time goes inside `runc run`: the hook built with the
# `trace-phases` feature writes a mark to the kernel's trace buffer at the
# end of each phase (src/sys/phase.rs); the scheduler's events give its
# fork, exec and exit and the time it spent off the CPU. The floor, a static
# hook that reads the state and does nothing (musl and position-dependent,
# as cglimit), runs in the same rounds, interleaved.
#   bash bench/hook-phases.sh                  # 200 rounds, 1,000 policies
#   ROUNDS=500 bash bench/hook-phases.sh
#   BASELINE_SRC=/path/to/older/checkout bash bench/hook-phases.sh
# BASELINE_SRC adds a build of another checkout (it needs the same feature)
# to the same rounds. Needs root, runc, busybox (static), rustc, python3
# and tracefs; prints a Markdown table of medians in microseconds.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-200}
work=$(mktemp -d /tmp/cglimit-phases.XXXXXX)
own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/self/cgroup)
[ -n "$own" ] || own=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
parent="${own%/}/cglimit-phases-$$"
tracing=/sys/kernel/tracing
events="sched/sched_process_fork sched/sched_process_exec sched/sched_process_exit sched/sched_switch"
cleanup() {
    echo 0 > "$tracing/tracing_on" 2>/dev/null || true
    for e in $events; do echo 0 > "$tracing/events/$e/enable" 2>/dev/null || true; done
    # runc makes the parent in every hierarchy.
    for d in /sys/fs/cgroup/*"$parent" /sys/fs/cgroup"$parent"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT
[ -e "$tracing/trace_marker" ] || mount -t tracefs none "$tracing"

build() { # build SRC DEST
    # From the checkout itself: its own .cargo/config.toml decides how.
    (cd "$1" && CARGO_TARGET_DIR="$1/target/phases" cargo build -q --release --features trace-phases)
    cp "$1/target/phases/${CARGO_BUILD_TARGET:-x86_64-unknown-linux-musl}/release/cglimit" "$2"
}
build "$PWD" "$work/cglimit"
hooks=("$work/cglimit")
if [ -n "${BASELINE_SRC:-}" ]; then
    build "$BASELINE_SRC" "$work/cglimit-baseline"
    hooks+=("$work/cglimit-baseline")
fi
# The floor reads the state, as every hook must; static and
# position-dependent, as cglimit is.
printf 'use std::io::Read;\nfn main() {\n    let _ = std::io::stdin().read_to_end(&mut Vec::new());\n}\n' > "$work/noop.rs"
rustc --edition 2021 -O -C strip=symbols -C relocation-model=static --target x86_64-unknown-linux-musl -o "$work/noop" "$work/noop.rs"
# And one that exits without reading it: below any hook (runc's write of
# the state then goes to a pipe nobody reads), shown for comparison.
printf 'fn main() {}\n' > "$work/exit.rs"
rustc -O -C strip=symbols -C relocation-model=static --target x86_64-unknown-linux-musl -o "$work/noop-exit" "$work/exit.rs"

. bench/start-fixture.sh
bundle() { # bundle NAME HOOK [ARGS...]
    local name=$1; shift
    mkdir -p "$work/$name"
    python3 - "$work" "$name" "$parent" "$@" <<'PY'
import json, sys
work, name, parent, hook = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
c = {"ociVersion": "1.0.2",
     "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
                 "env": ["PATH=/bin"], "cwd": "/", "noNewPrivileges": True},
     "root": {"path": f"{work}/rootfs", "readonly": True},
     "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
     "linux": {"cgroupsPath": f"{parent}/{name}", "resources": {"memory": {"limit": 1 << 30}},
               "namespaces": [{"type": t} for t in ["pid", "ipc", "uts", "mount", "network"]]},
     "hooks": {"createRuntime": [{"path": hook[0], "args": hook}]}}
json.dump(c, open(f"{work}/{name}/config.json", "w"))
PY
}
bundle floor "$work/noop"
bundle exit "$work/noop-exit"
names=(floor exit)
for i in "${!hooks[@]}"; do
    bundle "hook$i" "${hooks[$i]}" hook --policy-dir "$work/policies" --cache-dir "$work/cache$i"
    names+=("hook$i")
    runc run --bundle "$work/hook$i" "cglimit-phases-warm-$$-$i" </dev/null >/dev/null
done

echo 0 > "$tracing/tracing_on"
echo > "$tracing/trace"
echo 65536 > "$tracing/buffer_size_kb"
for e in $events; do echo 1 > "$tracing/events/$e/enable"; done
echo 1 > "$tracing/tracing_on"
for n in $(seq "$rounds"); do
    for b in "${names[@]}"; do
        runc run --bundle "$work/$b" "cglimit-phases-$$-$b-$n" </dev/null >/dev/null
    done
done
echo 0 > "$tracing/tracing_on"
cat "$tracing/trace" > "$work/trace.txt"

python3 - "$work/trace.txt" "$work/noop" "$work/noop-exit" "${hooks[@]}" <<'PY'
import collections, re, statistics, sys
trace, programs = sys.argv[1], sys.argv[2:]
rx = re.compile(r'^\s*(.+?)-(\d+)\s+\[\d+\]\s+\S+\s+([\d.]+):\s+(\w+):\s*(.*)$')
fork, execd, exits = {}, {}, {}
marks = collections.defaultdict(list)
off = collections.defaultdict(float)
out = {}
for line in open(trace):
    m = rx.match(line)
    if not m:
        continue
    _, tid, t, ev, rest = m.groups()
    tid, t = int(tid), float(t)
    if ev == "sched_process_fork":
        fork[int(re.search(r"child_pid=(\d+)", rest).group(1))] = t
    elif ev == "sched_process_exec":
        execd[tid] = (t, re.search(r"filename=(\S+)", rest).group(1))
    elif ev == "tracing_mark_write":
        marks[tid].append((t, rest.strip()))
    elif ev == "sched_process_exit":
        exits.setdefault(tid, t)
    elif ev == "sched_switch":
        prev = int(re.search(r"prev_pid=(\d+)", rest).group(1))
        nxt = int(re.search(r"next_pid=(\d+)", rest).group(1))
        out[prev] = t
        if nxt in out:
            off[nxt] += t - out.pop(nxt)
runs = collections.defaultdict(list)
for pid, (te, prog) in execd.items():
    if prog not in programs or pid not in fork or pid not in exits:
        continue
    r = {"fork → exec (runc)": te - fork[pid]}
    prev, name = te, "exec"
    for t, n in marks[pid]:
        r[f"{name} → {n}"] = t - prev
        prev, name = t, n
    r[f"{name} → exit"] = exits[pid] - prev
    r["off the CPU (preempted or waiting)"] = off[pid]
    r["**fork → exit**"] = exits[pid] - fork[pid]
    runs[prog].append(r)
labels = (["the floor (static, reads the state)", "a no-op that exits at once", "cglimit hook"]
          + (["the baseline build's hook"] if len(programs) > 3 else []))
rows = []
for prog in programs:
    for r in runs[prog]:
        for k in r:
            if k not in rows:
                rows.append(k)
rows.sort(key=lambda k: (k.startswith("off"), k.startswith("**")))
n = min(len(runs[p]) for p in programs)
print(f"| phase (median µs, {n} rounds) | " + " | ".join(labels[: len(programs)]) + " |")
print("|---" * (len(programs) + 1) + "|")
for k in rows:
    cells = []
    for prog in programs:
        v = [r[k] for r in runs[prog] if k in r]
        cells.append(f"{statistics.median(v) * 1e6:.0f}" if v else "")
    print(f"| {k} | " + " | ".join(cells) + " |")
tot = {p: [r["**fork → exit**"] for r in runs[p]] for p in programs}
floor = statistics.median(tot[programs[0]])
for p, label in zip(programs[1:], labels[1:]):
    print(f"\n{label}: {(statistics.median(tot[p]) - floor) * 1e6:+.0f} µs over the floor (fork → exit, medians)")
PY
