# Sourced by the v2 VM's /init (tests/v2vm/guest.sh) when
# bench/watch-v2.sh put it there: `cglimit watch` over N idle memory
# cgroups against a shell loop reading every cgroup's usage once a second
# (the floor), first on cgroup v2, then, in the same boot, with the memory
# controller moved to a v1 hierarchy. Prints BENCH lines, then the closing
# line, and powers off. Under TCG every figure is slow: the ratios carry
# over, to the floor and between v2 and v1 (measured natively on v1 by
# `cargo bench --bench watch`).
N=${N:-10000}
MEASURE=${MEASURE:-30}
SETTLE=${SETTLE:-60}
hz=100
cpu_of() { # pid -> clock ticks used (utime + stime)
  awk '{ sub(/.*\) /, ""); print $12 + $13 }' /proc/$1/stat
}
user_of() { # pid -> clock ticks used in user space
  awk '{ sub(/.*\) /, ""); print $12 }' /proc/$1/stat
}
rss_of() { awk '/^VmRSS/ { print $2 }' /proc/$1/status; }
kernel_mem() { # KiB of kernel stacks and unreclaimable slab
  awk '/^KernelStack|^SUnreclaim/ { s += $2 } END { print s }' /proc/meminfo
}
threads() { # kernel threads named $1
  cat /proc/[0-9]*/comm 2>/dev/null | grep -c "^$1" || true
}
percent() { # ticks before, after -> % of a core over MEASURE
  awk -v a=$1 -v b=$2 -v m=$MEASURE -v hz=$hz 'BEGIN { printf "%.2f", (b - a) / hz / m * 100 }'
}
mkdir -p /tmp/none
ulimit -n ${NOFILE:-30000}
[ -n "${WATCHES:-}" ] && echo "$WATCHES" > /proc/sys/fs/inotify/max_user_watches
echo "INFO fs.inotify.max_user_watches $(cat /proc/sys/fs/inotify/max_user_watches)"

bench() { # VERSION MOUNT USAGE_FILE: N cgroups under MOUNT/bench, measured
  v=$1 B=$2/bench
  i=0
  while [ $i -lt $N ]; do mkdir $B/c$i; i=$((i + 1)); done
  echo "INFO $N cgroups made under $B"
  (cd $B && while :; do cat c*/$3 > /dev/null; sleep 1; done) &
  S=$!
  sleep 2
  c0=$(cpu_of $S); sleep $MEASURE; c1=$(cpu_of $S)
  kill $S
  floor=$(percent $c0 $c1)
  mkdir -p /cglimit/bench-$v
  k0=$(kernel_mem)
  cglimit --log-file /tmp/bench-$v.log watch --state-dir /cglimit/bench-$v --no-docker --no-podman \
    --runc-root /tmp/none --crun-root /tmp/none --cgroup-parent /bench --interval 1s &
  W=$!
  sleep $SETTLE
  r0=$(awk '/^syscr/ { print $2 }' /proc/$W/io)
  c0=$(cpu_of $W); u0=$(user_of $W); sleep $MEASURE; c1=$(cpu_of $W); u1=$(user_of $W)
  r1=$(awk '/^syscr/ { print $2 }' /proc/$W/io)
  watch=$(percent $c0 $c1)
  rss=$(rss_of $W)
  fds=$(ls /proc/$W/fd | wc -l)
  k1=$(kernel_mem)
  psimon=$(threads psimon)
  kill $W
  wait $W 2>/dev/null
  echo "BENCH $v idle cgroups: $N; measured ${MEASURE}s after ${SETTLE}s"
  echo "BENCH $v shell loop reading usage only (floor): $floor% of a core"
  echo "BENCH $v cglimit watch: $watch% of a core ($(awk -v a=$watch -v b=$floor 'BEGIN { printf "%.3f", a / b }')x the floor), RSS $rss KiB, $fds descriptors"
  echo "BENCH $v cglimit watch: $(( (r1 - r0) / MEASURE )) read system calls a second; $(percent $u0 $u1)% of a core in user space"
  echo "BENCH $v kernel memory (stacks, unreclaimable slab) while it watches: +$((k1 - k0)) KiB; psimon kernel threads: $psimon"
  tail -3 /tmp/bench-$v.log | sed 's/^/INFO /'
  eval "watch_$v=$watch floor_$v=$floor"
}

mkdir /sys/fs/cgroup/bench
echo "+memory" > /sys/fs/cgroup/bench/cgroup.subtree_control
bench v2 /sys/fs/cgroup memory.current

# The same on v1: once no v2 cgroup uses it, the memory controller can be
# bound to a v1 hierarchy (tests/v2vm/guest.sh).
rmdir /sys/fs/cgroup/bench/c* /sys/fs/cgroup/bench
memory_to_v1
if grep -q ' /run/v1mem ' /proc/mounts; then
  mkdir /run/v1mem/bench
  bench v1 /run/v1mem memory.usage_in_bytes
  echo "BENCH v2 against v1 in the same VM: $(awk -v a=$watch_v2 -v b=$watch_v1 'BEGIN { printf "%.2f", a / b }')x the CPU; floors $floor_v2% and $floor_v1%"
else
  echo "INFO no v1 comparison: $(cat /tmp/v1mount.err)"
fi
echo "CGLIMIT-VM: 1 passed, 0 failed"
sync
poweroff -f
