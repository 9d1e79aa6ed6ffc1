#!/bin/busybox sh
# /init of the v2 test VM: mounts a cgroup v2-only hierarchy with the memory
# controller, runs cglimit's checks against runc and crun, prints
# PASS/FAIL lines and "CGLIMIT-VM: N passed, M failed", and powers off.
# Runtimes pivot_root, which the initramfs root does not allow: move to a
# tmpfs root first.
if [ ! -e /.switched ]; then
  /bin/busybox mkdir -p /newroot
  /bin/busybox mount -t tmpfs -o size=768m tmpfs /newroot
  for d in bin usr lib lib64 etc cglimit init; do
    [ -e /$d ] && /bin/busybox cp -a /$d /newroot/
  done
  /bin/busybox mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/run
  /bin/busybox touch /newroot/.switched
  exec /bin/busybox switch_root /newroot /init
fi
/bin/busybox --install -s /bin
export PATH=/usr/bin:/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mkdir -p /dev/shm /dev/pts && mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 none /sys/fs/cgroup
echo "+memory +pids" > /sys/fs/cgroup/cgroup.subtree_control
echo "INFO kernel $(uname -r); controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
# Binds the memory controller to a v1 hierarchy at /run/v1mem, once no v2
# cgroup uses it (the caller removed them); why not, in /tmp/v1mount.err.
memory_to_v1() {
  echo "-memory" > /sys/fs/cgroup/cgroup.subtree_control
  mkdir -p /run/v1mem
  # Removed cgroups linger while page cache is charged to them: drop it.
  i=0
  until mount -t cgroup -o memory none /run/v1mem 2>/tmp/v1mount.err || [ $i -ge 40 ]; do
    sync; echo 3 > /proc/sys/vm/drop_caches; sleep 0.5; i=$((i+1))
  done
}
# A benchmark in place of the checks (bench/watch-v2.sh).
[ -e /cglimit/bench.sh ] && . /cglimit/bench.sh

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
check() { # name want got
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "want [$2] got [$3]"; fi
}

M=1048576
P=/cglimit/policies
mkdir -p $P /cglimit/deny /cglimit/state /rootfs/bin /rootfs/proc /rootfs/sys /rootfs/dev /rootfs/big
cat > $P/default.yaml <<'EOF'
name: default
memory: {default: 64M, min: 16M, max: 256M}
swap: {default: 0, max: 32M}
high: 50%
onViolation: clamp
EOF
cat > /cglimit/deny/strict.yaml <<'EOF'
name: strict
memory: {default: 64M, max: 256M}
onViolation: deny
message: ask the platform team for more than 256M
EOF
cp /bin/busybox /rootfs/bin/busybox
for a in sh cat sleep head; do ln -s busybox /rootfs/bin/$a; done

# bundle DIR CGROUPS_PATH MEMORY_JSON HOOK_JSON ARGS_JSON [EXTRA_MOUNT_JSON]
bundle() {
  mkdir -p "$1"
  cat > "$1/config.json" <<EOF
{"ociVersion": "1.0.2",
 "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/", "env": ["PATH=/bin"], "args": $5},
 "root": {"path": "/rootfs", "readonly": true},
 "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]},
            {"destination": "/big", "type": "tmpfs", "source": "tmpfs", "options": ["size=200m"]}],
 "hooks": $4,
 "linux": {"cgroupsPath": "$2", "resources": {"memory": $3},
           "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}]}}
EOF
}
READ='["sh", "-c", "cd /sys/fs/cgroup && echo $(cat memory.max) $(cat memory.swap.max) $(cat memory.high)"]'
hook() { # POLICY_DIR [extra args...]
  d=$1; shift
  printf '{"createRuntime": [{"path": "/usr/bin/cglimit", "args": ["cglimit", "hook", "--policy-dir", "%s", "--state-dir", "/cglimit/state"%s]}]}' "$d" "$*"
}
run_seen() { # RUNTIME ID BUNDLE
  out=$("$1" run --bundle "$3" "$2" 2>/tmp/err.$2 </dev/null | tr -d '\r')
  [ -n "$out" ] || echo "INFO $1 $2: $(head -c 600 /tmp/err.$2)" >&2
  echo "$out"
}

# 1. The hook under runc and crun: defaults, clamping, values kept.
for rt in runc crun; do
  bundle /b/$rt-def /test/$rt-def '{}' "$(hook $P)" "$READ"
  check "$rt default limits" "$((64*M)) 0 $((32*M))" "$(run_seen $rt $rt-def /b/$rt-def)"
  bundle /b/$rt-clamp /test/$rt-clamp '{"limit": 1073741824, "swap": 1073741824}' "$(hook $P)" "$READ"
  check "$rt clamps -m 1g --memory-swap 1g to max, no swap" "$((256*M)) 0 $((128*M))" "$(run_seen $rt $rt-clamp /b/$rt-clamp)"
  bundle /b/$rt-keep /test/$rt-keep '{"limit": 134217728, "swap": 150994944}' "$(hook $P)" "$READ"
  check "$rt keeps 128M + 16M swap" "$((128*M)) $((16*M)) $((64*M))" "$(run_seen $rt $rt-keep /b/$rt-keep)"
  bundle /b/$rt-unl /test/$rt-unl '{"limit": -1, "swap": -1}' "$(hook $P)" "$READ"
  check "$rt clamps unlimited memory and swap" "$((256*M)) $((32*M)) $((128*M))" "$(run_seen $rt $rt-unl /b/$rt-unl)"
  bundle /b/$rt-deny /test/$rt-deny '{"limit": 1073741824}' "$(hook /cglimit/deny)" "$READ"
  out=$(run_seen $rt $rt-deny /b/$rt-deny)
  if [ -z "$out" ] && grep -q "memory 1G is above the policy's max 256M" /cglimit/state/decisions.jsonl; then
    pass "$rt deny refuses the start"
  else
    fail "$rt deny refuses the start" "container printed [$out]"
  fi
  "$rt" delete -f $rt-deny >/dev/null 2>&1
done
grep -q "memory 1G is above the policy's max 256M" /tmp/err.runc-deny && pass "runc shows the refusal" || fail "runc shows the refusal" "$(cat /tmp/err.runc-deny)"

# The runtime wrapper on v2: config.json says what the policy decided and
# nothing else. runc applies linux.resources.unified after the memory
# fields, so a bundle's own "memory.max": "max" there would otherwise win.
bundle /b/wrap /test/wrap '{"limit": 1073741824}' '{}' "$READ"
awk '{ sub(/"resources": \{"memory": \{"limit": 1073741824\}\}/, "\"resources\": {\"memory\": {\"limit\": 1073741824}, \"unified\": {\"memory.max\": \"max\", \"memory.swap.max\": \"max\", \"memory.high\": \"max\"}}"); print }' /b/wrap/config.json > /tmp/wrap.json && mv /tmp/wrap.json /b/wrap/config.json
grep -q '"memory.max": "max"' /b/wrap/config.json || echo "INFO the wrapper bundle has no unified keys: $(cat /b/wrap/config.json)"
out=$(cglimit runtime --policy-dir $P --no-cache --docker-host unix:///nonexistent.sock run --bundle /b/wrap wrap 2>/tmp/err.wrap </dev/null | tr -d '\r')
[ -n "$out" ] || echo "INFO wrapper: $(head -c 600 /tmp/err.wrap)"
check "wrapper: the bundle's unified memory keys do not override the decision" "$((256*M)) 0 $((128*M))" "$out"
runc delete -f wrap >/dev/null 2>&1
# A reservation becomes memory.low (protection from reclaim) on v2: held to
# the decided high, and none at all under `high: off`.
LOW='["sh", "-c", "cat /sys/fs/cgroup/memory.low"]'
mkdir -p /cglimit/nohigh-low
printf 'name: nohigh\nmemory: {default: 64M, max: 256M}\nhigh: off\n' > /cglimit/nohigh-low/p.yaml
bundle /b/low /test/low '{"limit": 134217728, "reservation": 1099511627776}' '{}' "$LOW"
out=$(cglimit runtime --policy-dir $P --no-cache --docker-host unix:///nonexistent.sock run --bundle /b/low low 2>/tmp/err.low </dev/null | tr -d '\r')
check "wrapper: a 1T reservation is held to high as memory.low" "$((64*M))" "$out"
runc delete -f low >/dev/null 2>&1
bundle /b/low2 /test/low2 '{"limit": 134217728, "reservation": 1099511627776}' '{}' "$LOW"
out=$(cglimit runtime --policy-dir /cglimit/nohigh-low --no-cache --docker-host unix:///nonexistent.sock run --bundle /b/low2 low2 2>/tmp/err.low2 </dev/null | tr -d '\r')
check "wrapper: no memory.low under high: off" "0" "$out"
runc delete -f low2 >/dev/null 2>&1
# The hook (and apply, through the same writer): runc has written the
# reservation to memory.low before the hook runs; it is held the same way.
for rt in runc crun; do
  bundle /b/$rt-hlow /test/$rt-hlow '{"limit": 134217728, "reservation": 1099511627776}' "$(hook $P)" "$LOW"
  check "$rt hook: a 1T reservation is held to high as memory.low" "$((64*M))" "$(run_seen $rt $rt-hlow /b/$rt-hlow)"
  bundle /b/$rt-hlow2 /test/$rt-hlow2 '{"limit": 134217728, "reservation": 1099511627776}' "$(hook /cglimit/nohigh-low)" "$LOW"
  check "$rt hook: no memory.low under high: off" "0" "$(run_seen $rt $rt-hlow2 /b/$rt-hlow2)"
done

# Socket buffers are part of memory.current on v2 (no kmem.tcp file to
# set): 32M queued in 300 unread loopback connections inside a 64M
# container are charged to it (memory.stat `sock`). Past the limit the
# kernel reclaims or OOM-kills in the container, as for any other memory.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
cp /usr/bin/fill-sockets /rootfs/bin/fill-sockets
bundle /b/tcp /test/tcp '{}' "$(hook $P)" '["/bin/fill-sockets", "300", "33554432"]'
out=$(run_seen runc tcp /b/tcp)
q=$(echo "$out" | sed -n 's/^queued //p')
sock=$(echo "$out" | sed -n 's/^sock //p')
if [ -n "$q" ] && [ -n "$sock" ] && [ "$q" -le $((64*M)) ] && [ "$sock" -ge $((q / 2)) ]; then
  pass "v2: socket buffers count in the container's memory ($q bytes queued, sock $sock)"
else
  fail "v2: socket buffers count in the container's memory" "container printed [$out]"
fi
runc delete -f tcp >/dev/null 2>&1

# memory.high throttles before the limit: 1M of tmpfs over high (32M)
# under max (64M) raises memory.events "high" and kills nothing. (Far over
# high, the kernel's throttling sleeps make the writer crawl: keep it small.)
bundle /b/high /test/high '{}' "$(hook $P)" '["sh", "-c", "head -c 34603008 /dev/zero > /big/f; cat /sys/fs/cgroup/memory.events"]'
ev=$(timeout 60 runc run --bundle /b/high high </dev/null 2>/dev/null | tr -d '\r')
runc delete -f high >/dev/null 2>&1
h=$(echo "$ev" | awk '$1 == "high" {print $2}')
k=$(echo "$ev" | awk '$1 == "oom_kill" {print $2}')
if [ "${h:-0}" -gt 0 ] && [ "${k:-1}" -eq 0 ]; then pass "memory.high throttles (high events $h), no OOM kill"; else fail "memory.high throttles" "[$ev]"; fi

# 2. A systemd-style path, made by hand: system.slice/docker-<id>.scope.
mkdir -p /sys/fs/cgroup/system.slice
echo "+memory" > /sys/fs/cgroup/system.slice/cgroup.subtree_control
bundle /b/sd /system.slice/docker-0123456789ab.scope '{}' "$(hook $P)" "$READ"
check "runc on system.slice/docker-<id>.scope" "$((64*M)) 0 $((32*M))" "$(run_seen runc sd /b/sd)"
grep -q '"cgroup":"/system.slice/docker-0123456789ab.scope"' /cglimit/state/decisions.jsonl \
  && pass "the record names the systemd-style cgroup" || fail "the record names the systemd-style cgroup" "$(tail -n1 /cglimit/state/decisions.jsonl)"

# 3. All or nothing: the last write fails (memory.high read-only to a
#    writer without CAP_DAC_OVERRIDE); memory.max and swap.max are restored.
mkdir -p /sys/fs/cgroup/test/aon
sleep 600 & S=$!
echo $S > /sys/fs/cgroup/test/aon/cgroup.procs
echo $((200*M)) > /sys/fs/cgroup/test/aon/memory.max
echo $((50*M)) > /sys/fs/cgroup/test/aon/memory.swap.max
chmod 0444 /sys/fs/cgroup/test/aon/memory.high
mkdir -p /b/aon && echo '{"ociVersion":"1.0.2","linux":{}}' > /b/aon/config.json
out=$(echo "{\"ociVersion\":\"1.0.2\",\"id\":\"aon\",\"status\":\"creating\",\"pid\":$S,\"bundle\":\"/b/aon\"}" \
  | /usr/bin/setpriv --inh-caps=-dac_override --bounding-set=-dac_override /usr/bin/cglimit hook --policy-dir $P 2>&1)
rc=$?
check "failed write exits 1" 1 $rc
case "$out" in *"memory.high"*"nothing was changed"*) pass "failed write names the file";; *) fail "failed write names the file" "$out";; esac
check "memory.max restored" $((200*M)) "$(cat /sys/fs/cgroup/test/aon/memory.max)"
check "memory.swap.max restored" $((50*M)) "$(cat /sys/fs/cgroup/test/aon/memory.swap.max)"
kill $S

# 4. apply on a running container; lowering below usage.
bundle /b/app /test/app '{}' '{}' '["sh", "-c", "head -c 100000000 /dev/zero > /big/f; sleep 600"]'
runc run -d --bundle /b/app app </dev/null >/dev/null 2>&1
i=0; while [ "$(cat /sys/fs/cgroup/test/app/memory.current 2>/dev/null || echo 0)" -lt $((90*M)) ] && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
bundle /b/app2 /test/app2 '{}' '{}' '["sleep", "600"]'
runc run -d --bundle /b/app2 app2 </dev/null >/dev/null 2>&1
out=$(cglimit apply --all --no-docker --crun-root /tmp --policy-dir $P 2>&1)
rc=$?
echo "INFO apply: $out"
check "apply exits 1 when one is held above its target" 1 $rc
case "$out" in *"app: held at"*"more than the target 64M"*) pass "apply reports usage above the new limit";; *) fail "apply reports usage above the new limit" "$out";; esac
# Held where it is, never left unlimited: memory.max at its usage (plus
# 4M, to a MiB), memory.high at the target so the kernel reclaims toward it.
held=$(cat /sys/fs/cgroup/test/app/memory.max)
if [ "$held" != max ] && [ "$held" -ge $((90*M)) ] && [ "$held" -le $((110*M)) ]; then pass "apply holds that one at its usage ($held)"; else fail "apply holds that one at its usage" "memory.max $held"; fi
check "apply holds memory.high at the target" $((64*M)) "$(cat /sys/fs/cgroup/test/app/memory.high)"
check "apply fixes the other" $((64*M)) "$(cat /sys/fs/cgroup/test/app2/memory.max)"
check "apply sets memory.high on v2" $((32*M)) "$(cat /sys/fs/cgroup/test/app2/memory.high)"
out=$(cglimit apply app --force --no-docker --crun-root /tmp --policy-dir $P 2>&1)
echo "INFO apply --force: $out"
check "apply --force lowers below usage" $((64*M)) "$(cat /sys/fs/cgroup/test/app/memory.max)"
echo "INFO memory.events after --force: $(tr '\n' ' ' < /sys/fs/cgroup/test/app/memory.events)"
runc delete -f app >/dev/null 2>&1; runc delete -f app2 >/dev/null 2>&1

# 5. The watcher on v2: an OOM kill recorded from memory.events (inotify).
# (No memory.high here: it would throttle the child long before the limit.)
mkdir -p /cglimit/nohigh
printf 'name: nohigh\nmemory: {default: 64M}\nswap: {default: 0}\nhigh: off\n' > /cglimit/nohigh/default.yaml
cglimit --log-file /tmp/watch.log watch --state-dir /cglimit/state --no-docker --crun-root /tmp --interval 1s &
W=$!
sleep 1
bundle /b/oomw /test/oomw '{}' "$(hook /cglimit/nohigh)" '["sh", "-c", "sleep 1; sh -c '"'"'s=aaaaaaaaaaaaaaaa; while :; do s=$s$s; done'"'"'; sleep 600"]'
runc run -d --bundle /b/oomw oomw </dev/null >/dev/null 2>&1
i=0
while ! grep -q '"kind":"oom_kill"' /cglimit/state/events.jsonl 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
if grep -q '"kind":"oom_kill".*"counter":"memory.events:oom_kill"' /cglimit/state/events.jsonl; then
  pass "watch records a v2 OOM kill from memory.events"
else
  fail "watch records a v2 OOM kill from memory.events" "$(cat /cglimit/state/events.jsonl /tmp/watch.log 2>&1 | tail -5)"
fi
grep -q '"kind":"max"' /cglimit/state/events.jsonl && pass "watch records v2 max events (limit hit)" || fail "watch records v2 max events" "$(cat /cglimit/state/events.jsonl | head -3)"
# The kernel's report of the kill, read from /dev/kmsg, on the event.
kill_line=$(grep '"kind":"oom_kill"' /cglimit/state/events.jsonl | head -n 1)
if echo "$kill_line" | grep -q '"victim":{"pid":[0-9]*,"comm":"sh","anon_rss":[1-9]'; then
  pass "the v2 oom_kill event carries the kernel's victim (pid, comm, anon-rss)"
else
  fail "the v2 oom_kill event carries the kernel's victim" "$kill_line"
fi
echo "$kill_line" | grep -q '"memory":{"anon":' && pass "the v2 oom_kill event carries the memory breakdown" \
  || fail "the v2 oom_kill event carries the memory breakdown" "$kill_line"
# A container's init OOM-killed: the victim is the init runc started.
bundle /b/oomi /test/oomi '{}' "$(hook /cglimit/nohigh)" '["sh", "-c", "sleep 2; exec busybox dd if=/dev/zero of=/dev/null bs=100M count=1"]'
runc run -d --bundle /b/oomi oomi </dev/null >/dev/null 2>&1
init=$(runc state oomi 2>/dev/null | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' | head -n 1)
i=0
while ! grep -q '"kind":"oom_kill".*oomi' /cglimit/state/events.jsonl 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
kill_line=$(grep '"kind":"oom_kill".*oomi' /cglimit/state/events.jsonl | head -n 1)
if [ -n "$init" ] && echo "$kill_line" | grep -q "\"victim\":{\"pid\":$init,"; then
  pass "a v2 init OOM kill: the event's victim is the container's init (pid $init)"
else
  fail "a v2 init OOM kill: the victim is the init (pid $init)" "$kill_line"
fi
runc delete -f oomi >/dev/null 2>&1
# Memory stall above memory.high: a PSI trigger on memory.pressure fires.
# The members are read 2.1 s after the trigger fires and, where avg10 had
# not caught up, 2 s later again: the container outlives both.
bundle /b/pres /test/pres '{}' "$(hook $P)" '["sh", "-c", "sleep 2; head -c 34603008 /dev/zero > /big/f; sleep 7"]'
timeout 60 runc run --bundle /b/pres pres </dev/null >/dev/null 2>&1
runc delete -f pres >/dev/null 2>&1
grep '"kind":"pressure"' /cglimit/state/events.jsonl | grep -q '"id":"pres"' && pass "watch records the stalled container's memory pressure (its parent's PSI trigger)" \
  || fail "watch records the stalled container's memory pressure" "$(grep -c . /cglimit/state/events.jsonl) events; $(tail -3 /tmp/watch.log)"
# One trigger for the parent, not one per container: the kernel runs a
# psimon thread for each cgroup that has a trigger.
for n in idle1 idle2 idle3; do
  bundle /b/$n /test/$n '{}' "$(hook $P)" '["sleep", "600"]'
  runc run -d --bundle /b/$n $n </dev/null >/dev/null 2>&1
done
sleep 3
psimon=$(cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^psimon' || true)
check "one pressure trigger (psimon thread) for four containers' parent" 1 "$psimon"
for n in idle1 idle2 idle3; do runc delete -f $n >/dev/null 2>&1; done
kill $W
runc delete -f oomw >/dev/null 2>&1

# 5b. diagnose on v2: a heap leak in one process of three, a tmpfs writer,
# a steady container, each told by its verdict.
# Under TCG the leaker's loop runs several times slower than on a host:
# a longer window and a lower threshold than the defaults.
DIAG="cglimit diagnose --state-dir /cglimit/state --no-docker --no-podman --crun-root /tmp --window 5s --leak-threshold 65536 -o json"
bundle /b/leak /test/leak '{}' "$(hook /cglimit/nohigh)" '["sh", "-c", "sleep 600 & sleep 600 & sh -c '"'"': leaker; x=$(head -c 65536 /dev/zero | busybox tr \"\\0\" a); i=0; while :; do eval \"v$i=\\$x\"; i=$((i+1)); sleep 0.05; done'"'"'"]'
bundle /b/shm /test/shm '{}' "$(hook /cglimit/nohigh)" '["sh", "-c", "while :; do head -c 65536 /dev/zero >> /big/f; sleep 0.05; done"]'
bundle /b/steady /test/steady '{}' "$(hook /cglimit/nohigh)" '["sleep", "600"]'
for c in leak shm steady; do runc run -d --bundle /b/$c $c </dev/null >/dev/null 2>&1; done
sleep 1
leaker=
for p in $(cat /sys/fs/cgroup/test/leak/cgroup.procs); do
  tr '\0' ' ' < /proc/$p/cmdline | grep -q '^sh -c : leaker' && leaker=$p
done
out=$($DIAG leak 2>&1)
if echo "$out" | grep -q '"anon-leak"' && echo "$out" | grep -q "pid $leaker "; then
  pass "diagnose on v2: anon-leak, in the leaking process (pid $leaker)"
else
  fail "diagnose on v2: anon-leak in pid $leaker" "$(echo "$out" | grep -A3 -E '"(verdict|growth)"' | tr '\n' ' ')"
fi
out=$($DIAG shm 2>&1)
echo "$out" | grep -q '"shmem-leak"' && pass "diagnose on v2: shmem-leak for a tmpfs writer" \
  || fail "diagnose on v2: shmem-leak" "$(echo "$out" | grep -A2 verdict)"
out=$($DIAG steady 2>&1)
echo "$out" | grep -q '"stable"' && pass "diagnose on v2: a steady container is stable" \
  || fail "diagnose on v2: stable" "$(echo "$out" | grep -A2 verdict)"
for c in leak shm steady; do runc delete -f $c >/dev/null 2>&1; done

# 6. memory.failcnt on cgroup v1. The host this suite runs on has a v1
# memory controller whose kernel no longer counts failcnt; this kernel
# does. Once no v2 cgroup uses it, the memory controller can be bound to a
# v1 hierarchy: the watcher must record the failcnt rises of a bare cgroup
# that hits its limit (and the OOM kill that follows).
for id in $(runc list -q 2>/dev/null); do runc delete -f "$id" >/dev/null 2>&1; done
find /sys/fs/cgroup -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null
memory_to_v1
echo "INFO left in cgroup2: $(find /sys/fs/cgroup -mindepth 1 -type d | tr '\n' ' ')"
if grep -q ' /run/v1mem ' /proc/mounts; then
  mkdir -p /run/v1mem/bare/fc
  echo $((32*M)) > /run/v1mem/bare/fc/memory.limit_in_bytes
  cglimit --log-file /tmp/watch1.log watch --state-dir /cglimit/state1 --no-docker --crun-root /tmp --runc-root /tmp \
    --cgroup-parent /bare --interval 1s --listen 127.0.0.1:9478 &
  W=$!
  sleep 2
  sh -c 'echo $$ > /run/v1mem/bare/fc/cgroup.procs; s=aaaaaaaaaaaaaaaa; while :; do s=$s$s; done' 2>/dev/null
  i=0
  while ! grep -q '"kind":"failcnt"' /cglimit/state1/events.jsonl 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kernel=$(cat /run/v1mem/bare/fc/memory.failcnt)
  echo "INFO v1 memory.failcnt $kernel; events: $(grep -o '"counter":"[^"]*","old":[0-9]*,"new":[0-9]*' /cglimit/state1/events.jsonl | tr '\n' ' ')"
  if [ "$kernel" -gt 0 ] && grep -q "\"kind\":\"failcnt\".*\"counter\":\"memory.failcnt\",\"old\":0,\"new\":[1-9]" /cglimit/state1/events.jsonl; then
    pass "watch records v1 failcnt rises"
  else
    fail "watch records v1 failcnt rises" "kernel failcnt $kernel; $(tail -3 /cglimit/state1/events.jsonl /tmp/watch1.log 2>&1)"
  fi
  grep -q '"kind":"oom_kill"' /cglimit/state1/events.jsonl && pass "watch records a v1 OOM kill (eventfd)" \
    || fail "watch records a v1 OOM kill (eventfd)" "$(tail -3 /tmp/watch1.log)"
  kill $W
else
  fail "bind the memory controller to a v1 hierarchy" "$(cat /tmp/v1mount.err)"
fi

echo "CGLIMIT-VM: $passed passed, $failed failed"
sync
poweroff -f
