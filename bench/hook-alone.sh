#!/usr/bin/env bash
# The hook process alone against two floors, by page faults and CPU time:
# the static no-op hook (musl, as cglimit), and a static program that makes
# the hook's system calls and nothing else (bench/hook-syscalls.rs: what the
# kernel charges for the work). Each program is fed the same OCI state on
# stdin, for a real process in a real memory cgroup, with 1,000 policies
# and the policy cache warm, under `perf stat -e page-faults,task-clock`,
# interleaved round by round; medians.
#   bash bench/hook-alone.sh                # 300 rounds
#   ROUNDS=500 BASELINE_BIN=/path/to/older/cglimit bash bench/hook-alone.sh
#   BREAKDOWN=1 bash bench/hook-alone.sh    # and what each group of the
#                                           # system calls costs
# Needs root, perf, rustc with the musl target, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-300}
work=$(mktemp -d /tmp/cglimit-alone.XXXXXX)
sleeper=
cg=
cleanup() {
    # Under `set -e`, a failing last command would end the cleanup here.
    if [ -n "$sleeper" ]; then
        kill "$sleeper" 2>/dev/null || true
        wait "$sleeper" 2>/dev/null || true
    fi
    # The killed sleeper may still be leaving the cgroup: a few tries.
    if [ -n "$cg" ]; then
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            rmdir "$cg" 2>/dev/null && break
            sleep 0.1
        done
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cargo build -q --release --bin cglimit
cp "target/${CARGO_BUILD_TARGET:-x86_64-unknown-linux-musl}/release/cglimit" "$work/cglimit"
progs=(cglimit)
if [ -n "${BASELINE_BIN:-}" ]; then
    cp "$BASELINE_BIN" "$work/baseline"
    progs+=(baseline)
fi
static() { # static SRC OUT
    rustc --edition 2021 -O -C strip=symbols -C relocation-model=static --target x86_64-unknown-linux-musl -o "$2" "$1"
}
# The floor reads the state, as every hook must, and does nothing with it.
printf 'use std::io::Read;\nfn main() {\n    let _ = std::io::stdin().read_to_end(&mut Vec::new());\n}\n' > "$work/noop.rs"
static "$work/noop.rs" "$work/noop"
static bench/hook-syscalls.rs "$work/syscalls"

# A process in a memory cgroup of its own, below this one's.
if grep -q ':memory:' /proc/self/cgroup; then
    mount=$(awk '{for (i = 7; $i != "-"; i++); if ($(i+1) == "cgroup" && $(i+3) ~ /(^|,)memory(,|$)/) {print $5; exit}}' /proc/self/mountinfo)
    own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/self/cgroup)
else
    mount=$(awk '{for (i = 7; $i != "-"; i++); if ($(i+1) == "cgroup2") {print $5; exit}}' /proc/self/mountinfo)
    own=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
fi
rel="${own#/}/cglimit-alone-$$"
rel="${rel#/}"
cg="$mount/$rel"
mkdir "$cg"
sh -c "echo \$\$ > $cg/cgroup.procs && exec sleep 3600" </dev/null &
sleeper=$!
while ! grep -qx "$sleeper" "$cg/cgroup.procs" 2>/dev/null; do sleep 0.05; done

. bench/start-fixture.sh
mkdir -p "$work/bundle"
# Over the default policy's maximum: the first run clamps and writes; the
# rounds after it find the limits in place and write nothing.
printf '{"ociVersion":"1.0.2","linux":{"resources":{"memory":{"limit":17179869184,"swap":17179869184}}}}' \
    > "$work/bundle/config.json"
printf '{"ociVersion":"1.0.2","id":"alone","status":"creating","pid":%s,"bundle":"%s/bundle"}' \
    "$sleeper" "$work" > "$work/state.json"
hook() { echo "$work/$1" hook --policy-dir "$work/policies" --cache-dir "$work/cache-$1"; }
for p in "${progs[@]}"; do $(hook "$p") < "$work/state.json" 2>/dev/null; done
cache=$(ls "$work/cache-cglimit"/*.bin)

python3 - "$rounds" "$work" "$sleeper" "$mount" "$rel" "$cache" "${progs[@]}" <<'PY'
import os, statistics, subprocess, sys
rounds, work, pid, mount, rel, cache, progs = int(sys.argv[1]), *sys.argv[2:7], sys.argv[7:]
cases = {"the floor (static, musl: reads the state)": [f"{work}/noop"],
         "the hook's system calls alone (bench/hook-syscalls.rs)":
             [f"{work}/syscalls", pid, mount, rel, f"{work}/policies", "teams.yaml", cache,
              f"{work}/bundle/config.json"]}
groups = ["guards", "state", "process", "cgroupfs", "policies", "cache", "log"]
breakdown = os.environ.get("BREAKDOWN") == "1"
replay = cases["the hook's system calls alone (bench/hook-syscalls.rs)"]
if breakdown:
    for g in groups:
        cases[f"without {g}"] = replay + [g]
    cases["without any group"] = replay + [",".join(groups)]
names = {"cglimit": "cglimit hook, this build", "baseline": "cglimit hook, the baseline build"}
for p in progs:
    cases[names[p]] = [f"{work}/{p}", "hook", "--policy-dir", f"{work}/policies",
                       "--cache-dir", f"{work}/cache-{p}"]
state = open(f"{work}/state.json", "rb").read()
res = {k: ([], []) for k in cases}
for _ in range(rounds):
    for k, argv in cases.items():
        r = subprocess.run(["perf", "stat", "-x,", "-e", "page-faults,task-clock", "--"] + argv,
                           input=state, capture_output=True)
        if r.returncode != 0:
            sys.exit(f"{k} failed: {r.stderr.decode()[-400:]}")
        for line in r.stderr.decode().splitlines():
            f = line.split(",")
            if len(f) > 3 and f[2] == "page-faults":
                res[k][0].append(float(f[0]))
            elif len(f) > 3 and f[2] == "task-clock":
                res[k][1].append(float(f[0]))
floor = [statistics.median(v) for v in res["the floor (static, musl: reads the state)"]]
print(f"| process alone ({rounds} rounds, interleaved) | page faults | CPU ms (task-clock) |")
print("|---|---|---|")
for k, (pf, cpu) in res.items():
    if k.startswith("without "):
        continue
    m = statistics.median(pf), statistics.median(cpu)
    print(f"| {k} | {m[0]:.0f} ({m[0] / floor[0]:.1f}×) | {m[1]:.3f} ({m[1] / floor[1]:.1f}×) |")
if breakdown:
    # A group's cost: the replay's CPU less the replay's without it, round
    # by round (both ran in the same round), median and 90% interval.
    full = res["the hook's system calls alone (bench/hook-syscalls.rs)"][1]
    print()
    print("| group of system calls | CPU ms (replay − replay without it; median, 90% of rounds) |")
    print("|---|---|")
    for g in groups + ["any group"]:
        d = sorted(a - b for a, b in zip(full, res[f"without {g}"][1]))
        lo, hi = d[len(d) // 20], d[len(d) - 1 - len(d) // 20]
        print(f"| {g} | {statistics.median(d):+.3f} [{lo:+.3f}..{hi:+.3f}] |")
PY
