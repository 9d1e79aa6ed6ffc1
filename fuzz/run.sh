#!/usr/bin/env bash
# Runs the fuzz targets, each for SECONDS (default 600), one after another.
#   bash fuzz/run.sh                 # every target, 10 minutes each
#   bash fuzz/run.sh policy 60       # one target, one minute
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets the stable
# toolchain build them. The committed corpus seeds each run; what a run
# finds grows a working corpus under $WORK, not the repository.
set -euo pipefail
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
targets=(size policy oci_state config_edit cgroup_files runtime_argv update_input)
[ $# -ge 1 ] && [ "$1" != all ] && targets=("$1")
secs=${2:-600}
WORK=${WORK:-/var/tmp/cglimit-fuzz}
cargo fuzz build -O
for t in "${targets[@]}"; do
    mkdir -p "$WORK/$t" "$WORK/logs"
    cp -n corpus/$t/* "$WORK/$t/" 2>/dev/null || true
    log="$WORK/logs/$t.log"
    echo "== $t for ${secs}s (log: $log)"
    rc=0
    cargo fuzz run -O "$t" "$WORK/$t" corpus/$t -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1 || rc=$?
    grep -E '^stat::number_of_executed_units|^stat::average_exec_per_sec|^stat::new_units_added|cov:' "$log" | tail -4
    ls artifacts/$t 2>/dev/null | sed "s/^/  crash: /" || true
    [ $rc -eq 0 ] || { echo "$t: exit $rc, see $log"; exit $rc; }
done
