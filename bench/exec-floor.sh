#!/usr/bin/env bash
# What one runtime call costs through a wrapper that execs runc, against the
# floor of any such wrapper: a minimal static Rust program that only execs
# runc, on musl (as cglimit) and on glibc. dockerd calls its runtime four
# times per `docker run --rm` (create, start, delete, delete --force), and
# each call pays this once.
#   bash bench/exec-floor.sh            # 400 rounds, interleaved
# Needs runc, rustc, python3; prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-400}
work=$(mktemp -d /tmp/cglimit-execfloor.XXXXXX)
trap 'rm -rf "$work"' EXIT
cargo build --release -q
ln -s "$PWD/target/${CARGO_BUILD_TARGET:-x86_64-unknown-linux-musl}/release/cglimit" "$work/cglimit-runtime"
cat > "$work/ex.rs" <<'RS'
use std::os::unix::process::CommandExt;
fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let e = std::process::Command::new("runc").args(&a).exec();
    eprintln!("{e}");
}
RS
rustc -O -C strip=symbols -C target-feature=+crt-static -o "$work/minimal-glibc" "$work/ex.rs"
rustc -O -C strip=symbols -C relocation-model=static --target x86_64-unknown-linux-musl -o "$work/minimal-musl" "$work/ex.rs"
# A config file as the symlink registration reads it on every call.
printf 'policyDir: /etc/cglimit/policies\nonError: deny\n' > "$work/config.yaml"
chmod 0644 "$work/config.yaml"
chmod 0755 "$work"
# A `create`, which the wrapper decides and rewrites the bundle for: the
# benchmarks' 1,000 policies, no engine to ask (the engine's answer is
# `cargo bench --bench docker`'s), and a `runc` that exits at once (a
# static no-op first in PATH), so that the difference is the wrapper's own.
. bench/start-fixture.sh
mkdir -p "$work/fake" "$work/bundle"
printf 'fn main() {}\n' > "$work/true.rs"
rustc -O -C strip=symbols -C relocation-model=static --target x86_64-unknown-linux-musl -o "$work/fake/runc" "$work/true.rs"
printf 'policyDir: %s/policies\ncacheDir: %s/cache\ndockerHost: unix:///nonexistent/docker.sock\n' \
    "$work" "$work" > "$work/create.yaml"
printf '{"ociVersion":"1.0.2","process":{"args":["true"],"cwd":"/"},"root":{"path":"%s/rootfs"},"linux":{"resources":{"memory":{"limit":1073741824}}}}' \
    "$work" > "$work/config.orig"
python3 - "$rounds" "$work" <<'PY'
import os, shutil, statistics, subprocess, sys, time
rounds, work = int(sys.argv[1]), sys.argv[2]
plain = {k: v for k, v in os.environ.items() if k != "CGLIMIT_CONFIG"}
with_config = dict(plain, CGLIMIT_CONFIG=f"{work}/config.yaml")
fake = dict(plain, PATH=f"{work}/fake:" + plain.get("PATH", ""), CGLIMIT_CONFIG=f"{work}/create.yaml")
create = ["create", "--bundle", f"{work}/bundle", "bench-create"]
cases = [("runc --version", ["runc", "--version"], plain),
         ("minimal static exec wrapper, glibc", [f"{work}/minimal-glibc", "--version"], plain),
         ("minimal static exec wrapper, musl", [f"{work}/minimal-musl", "--version"], plain),
         ("cglimit-runtime (no config file)", [f"{work}/cglimit-runtime", "--version"], plain),
         ("cglimit-runtime (config file)", [f"{work}/cglimit-runtime", "--version"], with_config),
         ("create: minimal static exec wrapper, musl (runc a no-op)", [f"{work}/minimal-musl"] + create, fake),
         ("create: cglimit-runtime, 1,000 policies (runc a no-op)", [f"{work}/cglimit-runtime"] + create, fake)]
res = {n: [] for n, _, _ in cases}
for _ in range(rounds):
    for n, c, env in cases:
        shutil.copy(f"{work}/config.orig", f"{work}/bundle/config.json")
        t = time.perf_counter()
        subprocess.run(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        res[n].append(time.perf_counter() - t)
base = statistics.median(res[cases[0][0]])
print(f"| call ({rounds} rounds, interleaved) | median ms | vs runc | vs the minimal wrapper, musl |")
print("|---|---|---|---|")
for n, _, _ in cases:
    m = statistics.median(res[n])
    floor = statistics.median(res[cases[5 if n.startswith("create") else 2][0]])
    print(f"| {n} | {m*1e3:.3f} | {(m-base)*1e3:+.3f} ms | {(m-floor)*1e3:+.3f} ms |")
PY
