# Sourced by the v2 VM's /init (tests/v2vm/guest.sh) when
# bench/watch-v2.sh put it there: `cglimit watch` over N idle cgroup v2
# memory cgroups against a shell loop reading every cgroup's usage once a
# second (the floor), in the same boot. Prints BENCH lines, then the
# closing line, and powers off. Under TCG every figure is slow: the ratio
# to the floor is what carries over.
N=${N:-10000}
MEASURE=${MEASURE:-30}
SETTLE=${SETTLE:-60}
cpu_of() { # pid -> clock ticks used (utime + stime)
  awk '{ sub(/.*\) /, ""); print $12 + $13 }' /proc/$1/stat
}
rss_of() { awk '/^VmRSS/ { print $2 }' /proc/$1/status; }
B=/sys/fs/cgroup/bench
mkdir $B
echo "+memory" > $B/cgroup.subtree_control
i=0
while [ $i -lt $N ]; do mkdir $B/c$i; i=$((i + 1)); done
echo "INFO $N cgroups made under $B"
hz=100
(cd $B && while :; do cat c*/memory.current > /dev/null; sleep 1; done) &
S=$!
sleep 2
c0=$(cpu_of $S); sleep $MEASURE; c1=$(cpu_of $S)
kill $S
floor=$(awk -v a=$c0 -v b=$c1 -v m=$MEASURE -v hz=$hz 'BEGIN { printf "%.2f", (b - a) / hz / m * 100 }')
mkdir -p /tmp/none /cglimit/bench-state
ulimit -n ${NOFILE:-30000}
[ -n "${WATCHES:-}" ] && echo "$WATCHES" > /proc/sys/fs/inotify/max_user_watches
echo "INFO fs.inotify.max_user_watches $(cat /proc/sys/fs/inotify/max_user_watches)"
kernel_mem() { # KiB of kernel stacks and unreclaimable slab
  awk '/^KernelStack|^SUnreclaim/ { s += $2 } END { print s }' /proc/meminfo
}
threads() { # kernel threads named $1
  cat /proc/[0-9]*/comm 2>/dev/null | grep -c "^$1" || true
}
k0=$(kernel_mem)
cglimit --log-file /tmp/bench-watch.log watch --state-dir /cglimit/bench-state --no-docker --no-podman \
  --runc-root /tmp/none --crun-root /tmp/none --cgroup-parent /bench --interval 1s &
W=$!
sleep $SETTLE
r0=$(awk '/^syscr/ { print $2 }' /proc/$W/io)
c0=$(cpu_of $W); sleep $MEASURE; c1=$(cpu_of $W)
r1=$(awk '/^syscr/ { print $2 }' /proc/$W/io)
watch=$(awk -v a=$c0 -v b=$c1 -v m=$MEASURE -v hz=$hz 'BEGIN { printf "%.2f", (b - a) / hz / m * 100 }')
rss=$(rss_of $W)
fds=$(ls /proc/$W/fd | wc -l)
k1=$(kernel_mem)
psimon=$(threads psimon)

kill $W
echo "BENCH v2 idle cgroups: $N; measured ${MEASURE}s after ${SETTLE}s"
echo "BENCH shell loop reading usage only (floor): $floor% of a core"
echo "BENCH cglimit watch: $watch% of a core ($(awk -v a=$watch -v b=$floor 'BEGIN { printf "%.3f", a / b }')x the floor), RSS $rss KiB, $fds descriptors"
echo "BENCH cglimit watch: $(( (r1 - r0) / MEASURE )) read system calls a second"
echo "BENCH kernel memory (stacks, unreclaimable slab) while it watches: +$((k1 - k0)) KiB; psimon kernel threads: $psimon"
tail -3 /tmp/bench-watch.log | sed 's/^/INFO /'
echo "CGLIMIT-VM: 1 passed, 0 failed"
sync
poweroff -f
