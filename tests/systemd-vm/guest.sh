#!/bin/sh
# Run by the systemd VM once the system is up (image.sh's cglimit-vm.service),
# from its second disk mounted at /mnt/t. Installs cglimit as the README
# says, then checks that every container's limits hold after start, after
# `systemctl daemon-reload` and `daemon-reexec`, after `docker update` and
# after `apply`, on the systemd cgroup driver.
T=/mnt/t
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
check() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "want [$2] got [$3]"; fi; }
M=1048576
echo "INFO $(runc --version | head -n1); $(crun --version | head -n1); $(docker --version); $(podman --version)"

# --- install, as the README says --------------------------------------------
install -m 0755 $T/cglimit /usr/local/bin/cglimit
ln -sf cglimit /usr/local/bin/cglimit-runtime
mkdir -p /etc/cglimit/policies /var/lib/cglimit
cat > /etc/cglimit/policies/default.yaml <<'EOF'
name: default
memory: {default: 64M, max: 256M}
swap: {default: 0, max: 64M}
high: 90%
EOF
cat > /etc/cglimit/policies/nohigh.yaml <<'EOF'
name: nohigh
priority: 5
match: {annotations: {cglimit.test/nohigh: "yes"}}
trust: [cglimit.test/nohigh]
memory: {default: 64M, max: 128M}
high: off
EOF
chmod -R go-w /etc/cglimit
HIGH=60395520   # 90% of 64M, rounded down to a page

# limits CGROUP_DIR: "memory.max memory.swap.max memory.high"
limits() { echo "$(cat "$1/memory.max") $(cat "$1/memory.swap.max") $(cat "$1/memory.high")"; }
# holds NAME CGROUP_DIR WANT: checks now, after daemon-reload and after daemon-reexec
holds() {
  check "$1: after start" "$3" "$(limits "$2")"
  systemctl daemon-reload
  check "$1: after systemctl daemon-reload" "$3" "$(limits "$2")"
  systemctl daemon-reexec
  check "$1: after systemctl daemon-reexec" "$3" "$(limits "$2")"
}

# The watcher sees every container cglimit decides for; none of the
# reloads below may show up as a change, a change made by systemd must.
cglimit --log-file /tmp/watch.log watch --state-dir /var/lib/cglimit --no-docker --no-podman --interval 200ms &
WATCH=$!

mkdir -p /tmp/rootfs/bin /tmp/rootfs/proc /tmp/rootfs/sys /tmp/rootfs/dev /tmp/rootfs/etc
cp /bin/busybox /tmp/rootfs/bin/
for a in sh sleep cat true; do ln -sf busybox /tmp/rootfs/bin/$a; done

# bundle DIR CGROUPS_PATH HOOKS_JSON [ANNOTATIONS_JSON]
bundle() {
  mkdir -p "$1"
  cat > "$1/config.json" <<EOF
{"ociVersion": "1.0.2",
 "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/", "env": ["PATH=/bin"], "args": ["sleep", "600"]},
 "root": {"path": "/tmp/rootfs", "readonly": true},
 "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
 "hooks": $3,
 "annotations": ${4:-{\}},
 "linux": {"cgroupsPath": "$2", "resources": {"memory": {}},
           "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]}}
EOF
}
HOOK='{"createRuntime": [{"path": "/usr/local/bin/cglimit", "args": ["cglimit", "hook", "--policy-dir", "/etc/cglimit/policies", "--state-dir", "/var/lib/cglimit"]}]}'

# --- runc and crun on the systemd cgroup driver, with the hook ---------------
for rt in runc crun; do
  bundle /tmp/b-$rt system.slice:cglimit:$rt-1 "$HOOK"
  if $rt --systemd-cgroup run -d --bundle /tmp/b-$rt $rt-1 >/tmp/err.$rt 2>&1 </dev/null; then
    # runc puts the container in the scope; crun in a delegated `container`
    # leaf below it, which systemd leaves alone.
    pid=$($rt state $rt-1 | jq -r .pid)
    cg=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/$pid/cgroup)
    echo "INFO $rt cgroup $cg; pid $pid in $(cat /proc/$pid/cgroup); $(systemctl show -p MemoryMax -p MemorySwapMax -p MemoryHigh cglimit-$rt-1.scope | tr '\n' ' ')"
    echo "INFO $rt record: $(grep "\"$rt-1\"" /var/lib/cglimit/decisions.jsonl | tail -n1 | head -c 900)"
    holds "$rt --systemd-cgroup + hook" "$cg" "$((64*M)) 0 $HIGH"
    echo "INFO $rt after: $(systemctl show -p MemoryMax -p MemorySwapMax -p MemoryHigh cglimit-$rt-1.scope | tr '\n' ' ')"
  else
    fail "$rt --systemd-cgroup run" "$(head -c 600 /tmp/err.$rt)"
  fi
done

# --- a policy with high: off and no swap limit -------------------------------
bundle /tmp/b-nh system.slice:cglimit:nh '{"createRuntime": [{"path": "/usr/local/bin/cglimit", "args": ["cglimit", "hook", "--policy-dir", "/etc/cglimit/policies"]}]}' '{"cglimit.test/nohigh": "yes"}'
if runc --systemd-cgroup run -d --bundle /tmp/b-nh nh >/tmp/err.nh 2>&1 </dev/null; then
  holds "high: off, no swap limit" /sys/fs/cgroup/system.slice/cglimit-nh.scope "$((64*M)) max max"
else
  fail "runc high: off" "$(head -c 600 /tmp/err.nh)"
fi

# --- apply on a container started without cglimit ----------------------------
bundle /tmp/b-ap system.slice:cglimit:ap '{}'
if runc --systemd-cgroup run -d --bundle /tmp/b-ap ap >/tmp/err.ap 2>&1 </dev/null; then
  cg=/sys/fs/cgroup/system.slice/cglimit-ap.scope
  check "unmanaged container: no limit" "max max max" "$(limits $cg)"
  cglimit apply --all --no-docker --no-podman --policy-dir /etc/cglimit/policies --state-dir /var/lib/cglimit >/tmp/apply.out 2>&1 \
    || echo "INFO apply: $(tail -c 400 /tmp/apply.out)"
  holds "apply --all" "$cg" "$((64*M)) 0 $HIGH"
else
  fail "runc without hook" "$(head -c 600 /tmp/err.ap)"
fi

# --- Docker on the systemd cgroup driver, wired by `cglimit setup docker` ----
systemctl start docker
before=$(sha256sum /etc/docker/daemon.json)
cglimit setup docker --dry-run >/tmp/setup.dry 2>&1
check "setup docker --dry-run changes nothing" "$before" "$(sha256sum /etc/docker/daemon.json)"
grep -q '"default-runtime": "cglimit"' /tmp/setup.dry && pass "setup docker --dry-run shows the change" \
  || fail "setup docker --dry-run shows the change" "$(head -c 600 /tmp/setup.dry)"
if cglimit setup docker >/tmp/setup.out 2>&1; then pass "setup docker"; else fail "setup docker" "$(cat /tmp/setup.out)"; fi
tar -C /tmp/rootfs -c . | docker import - cglimit-busybox:1 >/tmp/err.import 2>&1 || echo "INFO docker import: $(tail -c 300 /tmp/err.import)"
echo "INFO docker: $(docker info --format '{{.CgroupDriver}} cgroup v{{.CgroupVersion}}, default runtime {{.DefaultRuntime}}')"
if id=$(docker run -d --network none cglimit-busybox:1 sleep 600 2>/tmp/err.docker); then
  cg=/sys/fs/cgroup/system.slice/docker-$id.scope
  holds "docker run through cglimit-runtime" "$cg" "$((64*M)) 0 $HIGH"
  docker update -m 1g --memory-swap 1g "$id" >/tmp/err.du 2>&1 || echo "INFO docker update: $(cat /tmp/err.du)"
  holds "docker update -m 1g" "$cg" "$((256*M)) 0 241590272"
  docker rm -f "$id" >/dev/null
else
  fail "docker run" "$(head -c 600 /tmp/err.docker)"
fi

# --- podman, wired by `cglimit setup podman` ---------------------------------
if cglimit setup podman >/tmp/setup.pod 2>&1 && [ -f /usr/share/containers/oci/hooks.d/cglimit.json ]; then
  pass "setup podman puts the hook where podman 4 reads it"
else
  fail "setup podman" "$(cat /tmp/setup.pod)"
fi
tar -C /tmp/rootfs -c . | podman import -q - cglimit-busybox:1 >/dev/null
if id=$(podman --runtime crun run -d --network none cglimit-busybox:1 sleep 600 2>/tmp/err.podman); then
  cg=$(find /sys/fs/cgroup/machine.slice -maxdepth 2 -path "*libpod-$id*" -name memory.max -printf '%h\n' | sort | tail -n1)
  [ -e "$cg/container/memory.max" ] && cg=$cg/container
  echo "INFO podman cgroup $cg"
  holds "podman (crun) + hooks.d" "$cg" "$((64*M)) 0 $HIGH"
  podman rm -f "$id" >/dev/null
else
  fail "podman run" "$(head -c 600 /tmp/err.podman)"
fi

# Docker and podman wired, Debian's containerd serving only dockerd: no gap.
if cglimit doctor >/tmp/doctor.early 2>&1 && grep -q "containerd: not used" /tmp/doctor.early; then
  pass "doctor: exit 0 with containerd as Docker's backend only"
else
  fail "doctor: exit 0 with containerd as Docker's backend only" "$(cat /tmp/doctor.early)"
fi
if ! cglimit doctor --strict >/dev/null 2>&1; then pass "doctor --strict fails on the unwired containerd"
else fail "doctor --strict fails on the unwired containerd" "exit 0"; fi

# podman update runs no hook: setup podman made the wrapper podman's
# runtime (in front of crun), which decides the update.
if id=$(podman run -d --network none cglimit-busybox:1 sleep 600 2>/tmp/err.podman2); then
  cg=$(find /sys/fs/cgroup/machine.slice -maxdepth 2 -path "*libpod-$id*" -name memory.max -printf '%h\n' | sort | tail -n1)
  [ -e "$cg/container/memory.max" ] && cg=$cg/container
  if podman update --memory 3g "$id" >/tmp/upd.podman 2>&1; then
    check "podman update --memory 3g is held to the policy's max" "$((256*M))" "$(cat "$cg/memory.max")"
  else
    fail "podman update through the wrapper" "$(head -c 600 /tmp/upd.podman)"
  fi
  podman rm -f "$id" >/dev/null
else
  fail "podman run through the wrapper" "$(head -c 600 /tmp/err.podman2)"
fi

# --- a Kubernetes node: containerd's CRI on the systemd driver ---------------
# The handler `setup containerd` writes (SystemdCgroup taken from runc's),
# driven through the CRI as the kubelet drives it (cri.py, as in
# tests/kubernetes.rs): pods' limits become their scopes' properties.
cat > /etc/containerd/config.toml <<'EOF2'
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/cglimit-test/busybox:1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true
EOF2
cp $T/policies/05-pod-sandboxes.yaml /etc/cglimit/policies/
cat > /etc/cglimit/policies/kubernetes.yaml <<'EOF2'
name: batch
priority: 5
match: {namespaces: [batch], containerTypes: [container]}
memory: {default: 512M, max: 1G}
swap: {max: 0}
high: 90%
EOF2
chmod -R go-w /etc/cglimit
if cglimit setup containerd --default --restart >/tmp/setup.ctd 2>&1 \
   && grep -A3 'runtimes.cglimit.options' /etc/containerd/config.toml | grep -q 'SystemdCgroup = true'; then
  pass "setup containerd: a default handler on the systemd driver, containerd restarted"
else
  fail "setup containerd" "$(cat /tmp/setup.ctd) $(tail -n 12 /etc/containerd/config.toml)"
fi
img=/tmp/k8s-image
mkdir -p $img/a
tar -C /tmp/rootfs -cf $img/a/layer.tar .
diff=$(sha256sum $img/a/layer.tar | cut -d' ' -f1)
printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/busybox","sleep","3600"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff" > $img/a/c.json
cs=$(sha256sum $img/a/c.json | cut -d' ' -f1)
mv $img/a/c.json $img/a/$cs.json
printf '[{"Config":"%s.json","RepoTags":["localhost/cglimit-test/busybox:1"],"Layers":["layer.tar"]}]' "$cs" > $img/a/manifest.json
tar -C $img/a -cf $img/image.tar manifest.json layer.tar $cs.json
ctr -n k8s.io images import $img/image.tar >/tmp/err.ctr 2>&1 || echo "INFO ctr import: $(tail -c 300 /tmp/err.ctr)"
cri() { PYTHONPATH=$T/py CRI_STUBS=$T/stubs python3 $T/cri.py /run/containerd/containerd.sock "$@"; }
# The scope's cgroup as systemd has it (a dash in a slice's name nests it).
scope() { echo "/sys/fs/cgroup$(systemctl show -p ControlGroup --value cri-containerd-$1.scope)"; }
if job=$(cri run-pod job batch cglimit-k8s.slice 2>/tmp/err.cri); then
  holds "CRI pod sandbox (the shipped sandbox policy)" "$(scope $job)" "$((32*M)) 0 max"
  app=$(cri create $job job batch cglimit-k8s.slice app localhost/cglimit-test/busybox:1 2>>/tmp/err.cri) && cri start $app 2>>/tmp/err.cri
  holds "CRI container in namespace batch" "$(scope $app)" "$((512*M)) 0 483180544"
  cri update $app $((4096*M)) 2>>/tmp/err.cri
  holds "CRI UpdateContainerResources to 4G: clamped to the namespace's 1G" "$(scope $app)" "$((1024*M)) 0 966365184"
  web=$(cri run-pod web default cglimit-k8s.slice --annotation io.kubernetes.cri.sandbox-namespace=batch 2>>/tmp/err.cri)
  front=$(cri create $web web default cglimit-k8s.slice front localhost/cglimit-test/busybox:1 \
    --annotation io.kubernetes.cri.sandbox-namespace=batch --pod-annotation io.kubernetes.cri.sandbox-namespace=batch 2>>/tmp/err.cri) \
    && cri start $front 2>>/tmp/err.cri
  holds "CRI container in default claiming batch" "$(scope $front)" "$((64*M)) 0 $HIGH"
  for p in $job $web; do cri stop-pod $p; cri remove-pod $p; done 2>>/tmp/err.cri
  [ -s /tmp/err.cri ] && echo "INFO cri: $(tail -c 600 /tmp/err.cri)"
else
  fail "CRI RunPodSandbox" "$(tail -c 600 /tmp/err.cri)"
fi
# containerd stays: dockerd uses it too.

# --- drift seen by the watcher ------------------------------------------------
sleep 1
n=$(grep -c '"kind":"limit_changed"' /var/lib/cglimit/events.jsonl 2>/dev/null)
check "watch: no limit_changed through reloads, updates and apply" "0" "${n:-0}"
[ "${n:-0}" = 0 ] || echo "INFO $(grep '"kind":"limit_changed"' /var/lib/cglimit/events.jsonl | head -n 3)"
systemctl set-property --runtime cglimit-runc-1.scope MemoryMax=100M
i=0
while ! grep -q '"kind":"limit_changed".*cglimit-runc-1' /var/lib/cglimit/events.jsonl 2>/dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i+1)); done
e=$(grep '"kind":"limit_changed".*cglimit-runc-1' /var/lib/cglimit/events.jsonl | head -n1)
if echo "$e" | grep -q '"counter":"memory.max"' && echo "$e" | grep -q '"before":67108864,"after":104857600' \
   && echo "$e" | grep -q 'set-property on cglimit-runc-1.scope'; then
  pass "watch: systemctl set-property is a limit_changed event"
else
  fail "watch: systemctl set-property is a limit_changed event" "[$e] $(tail -n 3 /tmp/watch.log)"
fi
kill $WATCH

# --- what the hook costs on a systemd unit's cgroup --------------------------
# `runc run` of a container that exits at once, four ways interleaved round
# by round: the systemd driver or a cgroupfs path, with cglimit's hook or a
# static no-op (busybox true) as the floor. Medians in ms; TCG makes the
# absolute times large, the differences are what matter.
bench_bundle() { # DIR CGROUPS_PATH HOOK_JSON
  bundle "$1" "$2" "$3"
  sed -i 's/"args": \["sleep", "600"\]/"args": ["true"]/' "$1/config.json"
}
NOOP='{"createRuntime": [{"path": "/bin/busybox", "args": ["true"]}]}'
CGHOOK='{"createRuntime": [{"path": "/usr/local/bin/cglimit", "args": ["cglimit", "hook", "--policy-dir", "/etc/cglimit/policies"]}]}'
bench_bundle /tmp/bn-sd-noop system.slice:cglimit:bn "$NOOP"
bench_bundle /tmp/bn-sd-hook system.slice:cglimit:bn "$CGHOOK"
bench_bundle /tmp/bn-fs-noop /cglimit-bench/bn "$NOOP"
bench_bundle /tmp/bn-fs-hook /cglimit-bench/bn "$CGHOOK"
# The fifth case is the yardstick for the systemd path: one `systemctl
# set-property --runtime` of a running container's scope (a value changed
# each round, as the hook changes one), timed as an exec in the same rounds.
ROUNDS=${ROUNDS:-25}
for i in $(seq $ROUNDS); do
  for c in sd-noop sd-hook fs-noop fs-hook set-property; do
    t0=$(date +%s%N)
    case $c in
      set-property)
        systemctl set-property --runtime cglimit-runc-1.scope MemoryMax=$((100 + i % 2))M || echo "INFO bench $c failed" ;;
      sd-*) runc --systemd-cgroup run --bundle /tmp/bn-$c bn-$i-$c >/dev/null 2>&1 </dev/null || echo "INFO bench $c failed" ;;
      *) runc run --bundle /tmp/bn-$c bn-$i-$c >/dev/null 2>&1 </dev/null || echo "INFO bench $c failed" ;;
    esac
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000 )) >> /tmp/bench.$c
  done
done
systemctl set-property --runtime cglimit-runc-1.scope MemoryMax=100M
median() { sort -n "$1" | awk '{a[NR]=$1} END {printf "%.2f", a[int((NR+1)/2)]/1000}'; }
for c in sd-noop sd-hook fs-noop fs-hook set-property; do eval "m_$(echo $c | tr - _)=$(median /tmp/bench.$c)"; done
echo "BENCH runc run, $ROUNDS rounds, median ms: systemd driver: no-op hook $m_sd_noop, cglimit hook $m_sd_hook; cgroupfs: no-op hook $m_fs_noop, cglimit hook $m_fs_hook"
echo "BENCH cglimit over the no-op: systemd $(echo "$m_sd_hook $m_sd_noop" | awk '{printf "+%.2f ms (%.2fx)", $1-$2, $1/$2}'); cgroupfs $(echo "$m_fs_hook $m_fs_noop" | awk '{printf "+%.2f ms (%.2fx)", $1-$2, $1/$2}')"
echo "BENCH one systemctl set-property exec $m_set_property ms; cglimit on the systemd path +$(echo "$m_sd_hook $m_sd_noop $m_set_property" | awk '{printf "%.2f ms (%.2fx the set-property)", $1-$2, ($1-$2)/$3}')"

# --- doctor, and undo ---------------------------------------------------------
if cglimit doctor >/tmp/doctor.out 2>&1; then pass "doctor: every engine wired"; else fail "doctor: every engine wired" "$(cat /tmp/doctor.out)"; fi
echo "INFO $(tr '\n' ' ' < /tmp/doctor.out)"
# systemd out of reach: the limits land in the cgroup, but a daemon-reload
# would reset them. doctor reads that from the probe's decision record.
mount --bind /dev/null /run/dbus/system_bus_socket
cglimit doctor --engine docker >/tmp/doctor.out 2>&1
rc=$?
umount /run/dbus/system_bus_socket
if [ $rc -ne 0 ] && grep -q "docker: NOT wired: the probe got its limits, but systemd persistence is off" /tmp/doctor.out; then
  pass "doctor: systemd persistence off is named"
else
  fail "doctor: systemd persistence off is named" "exit $rc: $(cat /tmp/doctor.out)"
fi
rm /usr/share/containers/oci/hooks.d/cglimit.json
cglimit doctor >/tmp/doctor.out 2>&1
rc=$?
if [ $rc -ne 0 ] && grep -q "podman: NOT wired" /tmp/doctor.out && grep -q "docker: wired" /tmp/doctor.out; then
  pass "doctor: the hook file removed, podman named"
else
  fail "doctor: the hook file removed, podman named" "exit $rc: $(cat /tmp/doctor.out)"
fi
cglimit setup docker --undo >/tmp/undo.out 2>&1
check "setup docker --undo restores daemon.json byte for byte" "$before" "$(sha256sum /etc/docker/daemon.json)"

# --- the package -------------------------------------------------------------
if DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold $T/cglimit.deb >/tmp/dpkg.out 2>&1; then
  pass "the .deb installs"
  missing=
  for f in /usr/bin/cglimit /usr/bin/cglimit-runtime /usr/share/cglimit/policies/00-default.yaml /usr/share/cglimit/policies/05-pod-sandboxes.yaml \
      /usr/share/containers/oci/hooks.d/cglimit.json /lib/systemd/system/cglimit-watch.service \
      /usr/share/man/man1/cglimit.1.gz /usr/share/man/man1/cglimit-setup.1.gz \
      /usr/share/bash-completion/completions/cglimit /usr/share/zsh/vendor-completions/_cglimit \
      /usr/share/fish/vendor_completions.d/cglimit.fish; do
    dpkg -L cglimit | grep -qx "$f" && [ -e "$f" ] || missing="$missing $f"
  done
  check "dpkg -L shows every file in its place" "" "$missing"
  /usr/bin/cglimit --version | grep -q "(commit [0-9a-f]" && pass "cglimit --version names the commit" \
    || fail "cglimit --version names the commit" "$(/usr/bin/cglimit --version)"
  [ ! -e /etc/cglimit/policies/00-default.yaml ] && pass "the package adds no second default policy to a directory that has one" \
    || fail "the package adds no second default policy" "$(ls /etc/cglimit/policies)"
  # The package's hook file wires podman by itself.
  if cglimit doctor --engine podman >/tmp/doctor.pkg 2>&1; then pass "after the package, doctor: podman wired"
  else fail "after the package, doctor: podman wired" "$(cat /tmp/doctor.pkg)"; fi
  # The packaged watcher, hardened: its exposure score, and that it still
  # sees an OOM kill (it follows the hook's records, reads cgroups, writes
  # pressure triggers, listens on loopback).
  score=$(systemd-analyze security cglimit-watch.service 2>/dev/null | sed -n 's/.*Overall exposure level for cglimit-watch.service: \([0-9.]*\).*/\1/p')
  echo "INFO systemd-analyze security cglimit-watch.service: $score"
  if [ -n "$score" ] && awk "BEGIN{exit !($score <= 2.0)}"; then pass "the watcher's unit scores $score (<= 2.0) in systemd-analyze security"
  else fail "the watcher's unit scores <= 2.0" "[$score] $(systemd-analyze security cglimit-watch.service 2>&1 | grep '✗' | head -n 5)"; fi
  # Bounded: a watcher that does not come up is a failure named here, not
  # the whole VM's timeout.
  timeout 120 systemctl start cglimit-watch \
    || fail "the hardened watcher starts" "$(systemctl status cglimit-watch 2>&1 | tail -n 5)"
  # A child grows past memory.high (90%): the kernel throttles it and
  # counts `high` events, then `max`/`oom_kill` once it reaches the limit.
  if id=$(timeout 120 podman --runtime crun run -d --network none cglimit-busybox:1 sh -c 'sleep 2; sh -c "s=aaaaaaaaaaaaaaaa; while :; do s=\$s\$s; done"; sleep 600' 2>/tmp/err.pw); then
    ev() { grep -E "\"kind\":\"(high|max|oom_kill)\".*$id" /var/lib/cglimit/events.jsonl 2>/dev/null | head -n 1; }
    i=0
    while [ -z "$(ev)" ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done
    if [ -n "$(ev)" ]; then pass "the hardened watcher records the container's memory events ($(ev | sed 's/.*"kind":"\([a-z_]*\)".*/\1/'))"
    else fail "the hardened watcher records memory events" "$(systemctl status cglimit-watch 2>&1 | tail -n 5) $(journalctl -u cglimit-watch 2>&1 | tail -n 5)"; fi
    m=$(python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9477/metrics", timeout=30).read().decode())' 2>&1)
    echo "$m" | grep -q "cglimit_memory_events_total{id=\"$id\"" && pass "the hardened watcher serves them on /metrics" \
      || fail "the hardened watcher serves them on /metrics" "$(echo "$m" | grep memory_events | head -n 3)"
    journalctl -u cglimit-watch --no-pager 2>/dev/null | grep -q "$id" && pass "the watcher logs to the journal" \
      || fail "the watcher logs to the journal" "$(journalctl -u cglimit-watch --no-pager | tail -n 3)"
    podman rm -f "$id" >/dev/null
  else
    fail "podman run for the hardened watcher" "$(head -c 400 /tmp/err.pw)"
  fi
  # Through to a kill (no memory.high, so nothing throttles the child
  # first): the kernel's report, which the hardened unit reads from the
  # journal, is on the event.
  if kid=$(timeout 120 podman --runtime crun run -d --network none --annotation cglimit.test/nohigh=yes cglimit-busybox:1 sh -c 'sleep 2; sh -c "s=aaaaaaaaaaaaaaaa; while :; do s=\$s\$s; done"; sleep 600' 2>/tmp/err.pk); then
    k=
    i=0
    while [ -z "$k" ] && [ $i -lt 150 ]; do
      k=$(grep "\"kind\":\"oom_kill\".*$kid" /var/lib/cglimit/events.jsonl 2>/dev/null | head -n 1); sleep 0.2; i=$((i+1))
    done
    if echo "$k" | grep -q '"victim":{"pid":[0-9]*,"comm":"sh","anon_rss":[1-9]'; then
      pass "the hardened watcher puts the kernel's OOM report on the oom_kill event (from the journal)"
    else
      fail "the hardened watcher puts the kernel's OOM report on the oom_kill event" "[$k] $(journalctl -u cglimit-watch --no-pager 2>&1 | grep -i -E 'kernel|oom' | tail -n 3)"
    fi
    podman rm -f "$kid" >/dev/null
  else
    fail "podman run for the hardened watcher's OOM kill" "$(head -c 400 /tmp/err.pk)"
  fi
  # Stopped by systemd (SIGTERM), the watcher writes the workloads'
  # history, and recommend reads it.
  systemctl stop cglimit-watch
  if [ -s /var/lib/cglimit/history.json ] \
      && n=$(cglimit recommend --state-dir /var/lib/cglimit --min-history 1s -o json 2>/tmp/rec.err \
        | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') && [ "$n" -ge 1 ]; then
    pass "stopped by systemd, the hardened watcher keeps its history: recommend reads $n workloads"
  else
    fail "the hardened watcher keeps its history when systemd stops it" "$(ls -l /var/lib/cglimit) $(cat /tmp/rec.err) $(journalctl -u cglimit-watch --no-pager | tail -n 3)"
  fi
else
  fail "the .deb installs" "$(tail -c 600 /tmp/dpkg.out)"
fi

for rt in runc crun; do $rt delete -f $rt-1 >/dev/null 2>&1; done
runc delete -f nh >/dev/null 2>&1; runc delete -f ap >/dev/null 2>&1
echo "CGLIMIT-SYSTEMD: $passed passed, $failed failed"
