#!/usr/bin/env bash
# Writes link/hook-text.ld: the functions a container start runs, placed
# together at the front of the binary's text.
#
# The hook and the runtime wrapper run for a fraction of a millisecond, and
# every 64 KiB of text they touch for the first time is a page fault (the
# kernel maps a file's pages in 16-page windows). Left where the linker
# puts them, the ~250 functions of a hook run lie across 4 MB of text: about
# 30 faults. Gathered, about 4. This script records which functions run —
# the hook under `runc run` and the wrapper's `create` and pass-through
# calls, each once under valgrind's callgrind — and writes a linker script
# fragment naming them (build.rs passes it to the linker).
#
# Names are v0-mangled (.cargo/config.toml); crate hashes and back
# references are wildcards, so a new toolchain or version keeps matching.
# Code added to the start path later is simply placed elsewhere: the
# script is an ordering, never a condition for correctness. Run it again
# when `perf stat -e page-faults` on the hook grows (BENCHMARKS.md).
#   bash bench/hook-text.sh
# Needs root, runc, busybox (static), valgrind, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/cglimit-text.XXXXXX)
own=$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3; exit}' /proc/self/cgroup)
[ -n "$own" ] || own=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
parent="${own%/}/cglimit-text-$$"
cleanup() {
    runc delete -f "cglimit-text-$$" >/dev/null 2>&1 || true
    for d in /sys/fs/cgroup/*"$parent" /sys/fs/cgroup"$parent"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
    done
    rm -rf "$work"
}
trap cleanup EXIT

# The release build itself (it keeps its symbol table): another profile
# (even one that only strips less) makes other code.
cargo build -q --release --bin cglimit
bin="$work/cglimit"
cp "target/${CARGO_BUILD_TARGET:-x86_64-unknown-linux-musl}/release/cglimit" "$bin"

. bench/start-fixture.sh
mkdir -p "$work/bundle"

cat > "$work/hook" <<EOF
#!/bin/sh
exec valgrind -q --tool=callgrind --demangle=no --callgrind-out-file=$work/cg.hook.\$\$ \\
    $bin hook --policy-dir $work/policies --cache-dir $work/cache
EOF
chmod +x "$work/hook"
python3 - "$work" "$parent" <<'PY'
import json, sys
work, parent = sys.argv[1], sys.argv[2]
c = {"ociVersion": "1.0.2",
     "process": {"terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["/bin/true"],
                 "env": ["PATH=/bin"], "cwd": "/", "noNewPrivileges": True},
     "root": {"path": f"{work}/rootfs", "readonly": True},
     "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
     "linux": {"cgroupsPath": f"{parent}/c", "resources": {"memory": {"limit": 16 << 30, "swap": 16 << 30}},
               "namespaces": [{"type": t} for t in ["pid", "ipc", "uts", "mount", "network"]]},
     "hooks": {"createRuntime": [{"path": f"{work}/hook"}]}}
json.dump(c, open(f"{work}/bundle/config.json", "w"))
PY
cp "$work/bundle/config.json" "$work/config.orig"
# Over the default policy's maximum: the decision clamps, the hook writes.
# The first run builds the policy cache; the second is the one recorded.
runc run --bundle "$work/bundle" "cglimit-text-$$" </dev/null >/dev/null
rm -f "$work"/cg.hook.*
runc run --bundle "$work/bundle" "cglimit-text-$$" </dev/null >/dev/null

# The wrapper: a create (it rewrites config.json) and a pass-through call,
# with `true` as the real runtime.
cp "$work/config.orig" "$work/bundle/config.json"
# Called as Docker calls it: through the `cglimit-runtime` link, settings
# from a file.
ln -s "$bin" "$work/cglimit-runtime"
printf 'policyDir: %s/policies\ncacheDir: %s/cache\nruntime: %s\n' "$work" "$work" "$(command -v true)" \
    > "$work/wrapper.yaml"
wrap() { # wrap NAME ARGS...
    local name=$1; shift
    # Dumped before the exec: the process image is gone after it.
    CGLIMIT_CONFIG="$work/wrapper.yaml" valgrind -q --tool=callgrind --demangle=no \
        --dump-before=execve --callgrind-out-file="$work/cg.$name" \
        "$work/cglimit-runtime" "$@" >/dev/null
}
wrap create --root "$work/state" create --bundle "$work/bundle" "cglimit-text-$$"
wrap state --root "$work/state" state "cglimit-text-$$"

# The hook first: every container start runs it, whatever the engine.
python3 - link/hook-text.ld "$work"/cg.hook.* "$work"/cg.create* "$work"/cg.state* <<'PY'
import re, sys
out, profiles = sys.argv[1], sys.argv[2:]
def pattern(name):
    name = re.sub(r"'\d+$", "", name)  # callgrind's recursion depth
    if name == "(below main)":
        return "__libc_start_main"
    name = re.sub(r"\.(\d+|llvm\.\d+)$", "", name)  # local-symbol suffixes
    if not re.fullmatch(r"[A-Za-z_.$0-9]+", name):
        return None
    if name.startswith("_R"):
        name = re.sub(r"Cs[0-9a-zA-Z]*_(?=\d)", "Cs*_", name)  # crate hashes
        name = re.sub(r"B[0-9a-zA-Z]*_", "B*_", name)  # back references
        if name.startswith("_RI"):  # the crate that instantiated it
            name = re.sub(r"Cs\*_\d+[a-z_0-9]+$", "*", name)
    return name
seen, order = set(), []
for p in profiles:
    for line in open(p):
        m = re.match(r"^c?fn=\(\d+\) (.+)$", line.rstrip("\n"))
        if m and not m.group(1).startswith("0x"):
            n = pattern(m.group(1))
            if n and n not in seen:
                seen.add(n)
                order.append(n)
with open(out, "w") as f:
    f.write("/* Written by bench/hook-text.sh: the functions a container start runs,\n"
            "   gathered at the front of the text (%d). */\n" % len(order))
    f.write("SECTIONS\n{\n  .text.hook : {\n    *crt1.o(.text .text.*)\n")
    # musl's assembly files, each a plain .text of its own.
    for o in ("memcpy", "memmove", "memset", "__set_thread_area", "syscall_cp"):
        f.write("    *libc.a:%s.lo(.text)\n" % o)
    # What runs before valgrind's first instruction, or is reached by a
    # tail call that callgrind counts as its caller's.
    for o in ("__init_tls", "sigaction", "__libc_start_main", "getauxval", "clock_gettime"):
        f.write("    *libc.a:%s.lo(.text .text.*)\n" % o)
    # The string functions, which valgrind replaces with its own.
    f.write("    *libc.a:str*.lo(.text .text.*)\n    *libc.a:mem*.lo(.text .text.*)\n")
    for n in ("_RNvMs*_NtCs*_10serde_json4readNtB*_9SliceRead*",):
        f.write("    *(.text.%s .text.unlikely.%s)\n" % (n, n))
    for n in order:
        f.write("    *(.text.%s .text.%s.* .text.unlikely.%s .text.unlikely.%s.*)\n" % (n, n, n, n))
        if not n.startswith("_R"):
            # The C library's section is named after the definition, which
            # callgrind may give by its alias (`__mmap` for `mmap`).
            f.write("    *(.text.__%s)\n" % n)
    f.write("  }\n}\nINSERT BEFORE .text;\n")
    # The allocator's arena (src/sys/arena.rs) last in .bss, so that the
    # C library's variables share pages with the program's, not beyond it.
    f.write("SECTIONS\n{\n  .bss.arena (NOLOAD) : { *(.bss.*ALLOCATOR*) }\n}\nINSERT AFTER .bss;\n")
print(f"{out}: {len(order)} functions from {len(profiles)} runs")
PY
