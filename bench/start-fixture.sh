# Sourced by bench/hook-phases.sh and bench/hook-text.sh: in $work, a
# busybox root file system with `true`, and the benchmarks' 1,000 policies
# (999 team policies, a label and a name glob each, then the default
# policy; the same set `cargo bench --bench hook` writes).
mkdir -p "$work/rootfs/bin" "$work/rootfs/proc" "$work/rootfs/dev" "$work/rootfs/sys" "$work/policies"
cp "$(command -v busybox)" "$work/rootfs/bin/busybox"
ln -s busybox "$work/rootfs/bin/true"
python3 - "$work/policies/teams.yaml" <<'PY'
import sys
t = ""
for i in range(999):
    t += (f"name: team-{i}\npriority: {i % 7}\nmatch:\n  labels: {{team: t{i}}}\n  names: [svc-{i}-*]\n"
          "memory: {default: 512M, min: 16M, max: 8G}\nswap: {default: 0, max: 1G}\nhigh: 90%\n"
          "onViolation: clamp\n---\n")
t += open("policies/00-default.yaml").read()
open(sys.argv[1], "w").write(t)
PY
sleep 2.1 # files younger than 2 s are never cached
