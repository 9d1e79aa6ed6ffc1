# Sourced by the VM runners (tests/v2vm/run.sh, tests/systemd-vm/run.sh):
# reads a guest's console log and says how its checks went.
#
# vm_result NAME MARK LOG QEMU_EXIT TIMEOUT_S
#   prints the guest's PASS/FAIL/INFO/BENCH lines, then fails when qemu
#   timed out, when the closing "MARK: N passed, M failed" line is missing,
#   or when a check failed.
vm_result() {
  local name=$1 mark=$2 log=$3 rc=$4 timeout_s=$5 summary failed passed
  grep -a -E "^(PASS|FAIL|INFO|BENCH|$mark)" "$log" | tr -d '\r' || true
  if [ "$rc" -eq 124 ]; then
    echo "$name: timed out after ${timeout_s}s; last console lines:" >&2
    tail -n 30 "$log" | tr -d '\r' >&2
    return 1
  fi
  summary=$(grep -a -E "^$mark: [0-9]+ passed, [0-9]+ failed" "$log" | tr -d '\r' | tail -n1)
  if [ -z "$summary" ]; then
    echo "$name: no result line (qemu exit $rc); last console lines:" >&2
    tail -n 40 "$log" | tr -d '\r' >&2
    return 1
  fi
  failed=$(echo "$summary" | sed -E 's/.* ([0-9]+) failed.*/\1/')
  passed=$(echo "$summary" | sed -E "s/^$mark: ([0-9]+) passed.*/\\1/")
  echo "$name: $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
}
