#!/usr/bin/env bash
# What one runtime call costs through a wrapper that execs runc, against the
# floor of any such wrapper: a minimal static Rust program that only execs
# runc, on musl (as cglimit) and on glibc. dockerd calls its runtime four
# times per `docker run --rm` (create, start, delete, delete --force), and
# each call pays this once. A `create` is timed with the bundle on tmpfs
# (where containerd, and so dockerd, keep bundles: /run) and on the disk's
# filesystem, beside a minimal wrapper that also rewrites config.json.
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
# And one that also replaces the bundle's config.json as any rewriting
# wrapper must (read it, write a temporary file, rename it over): the
# filesystem's share of a create.
cat > "$work/rewrite.rs" <<'RS'
use std::os::unix::process::CommandExt;
fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let bundle = std::path::Path::new(&a[2]);
    let config = bundle.join("config.json");
    let tmp = bundle.join(".config.json.tmp");
    let bytes = std::fs::read(&config).unwrap();
    std::fs::write(&tmp, &bytes).unwrap();
    std::fs::rename(&tmp, &config).unwrap();
    let e = std::process::Command::new("runc").args(&a).exec();
    eprintln!("{e}");
}
RS
rustc -O -C strip=symbols -C relocation-model=static --target x86_64-unknown-linux-musl -o "$work/rewrite-musl" "$work/rewrite.rs"
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
# Two bundles: on tmpfs, where containerd and dockerd keep theirs (/run on
# systemd hosts), and on this disk's filesystem, where podman keeps its.
shm=$(mktemp -d /dev/shm/cglimit-execfloor.XXXXXX)
trap 'rm -rf "$work" "$shm"' EXIT
mkdir -p "$work/fake" "$work/bundle" "$shm/bundle"
disk=$(df --output=fstype "$work" | tail -1)
printf 'fn main() {}\n' > "$work/true.rs"
rustc -O -C strip=symbols -C relocation-model=static --target x86_64-unknown-linux-musl -o "$work/fake/runc" "$work/true.rs"
printf 'policyDir: %s/policies\ncacheDir: %s/cache\ndockerHost: unix:///nonexistent/docker.sock\n' \
    "$work" "$work" > "$work/create.yaml"
printf '{"ociVersion":"1.0.2","process":{"args":["true"],"cwd":"/"},"root":{"path":"%s/rootfs"},"linux":{"resources":{"memory":{"limit":1073741824}}}}' \
    "$work" > "$work/config.orig"
python3 - "$rounds" "$work" "$shm" "$disk" <<'PY'
import os, random, shutil, statistics, subprocess, sys, time
rounds, work, shm, disk = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
plain = {k: v for k, v in os.environ.items() if k != "CGLIMIT_CONFIG"}
with_config = dict(plain, CGLIMIT_CONFIG=f"{work}/config.yaml")
fake = dict(plain, PATH=f"{work}/fake:" + plain.get("PATH", ""), CGLIMIT_CONFIG=f"{work}/create.yaml")
def create(bundle):
    return ["create", "--bundle", bundle, "bench-create"]
tmpfs, ondisk = f"{shm}/bundle", f"{work}/bundle"
where = {tmpfs: "bundle on tmpfs", ondisk: f"bundle on {disk}"}
# (name, command, environment, bundle to reset, the floor it is set against)
cases = [("runc --version", ["runc", "--version"], plain, None, None),
         ("minimal static exec wrapper, glibc", [f"{work}/minimal-glibc", "--version"], plain, None, None),
         ("minimal static exec wrapper, musl", [f"{work}/minimal-musl", "--version"], plain, None, None),
         ("cglimit-runtime (no config file)", [f"{work}/cglimit-runtime", "--version"], plain, None, None),
         ("cglimit-runtime (config file)", [f"{work}/cglimit-runtime", "--version"], with_config, None, None)]
for b in (tmpfs, ondisk):
    floor = f"create, {where[b]}: minimal static exec wrapper, musl (runc a no-op)"
    cases.append((floor, [f"{work}/minimal-musl"] + create(b), fake, b, None))
    cases.append((f"create, {where[b]}: minimal wrapper that rewrites config.json, musl (runc a no-op)",
                  [f"{work}/rewrite-musl"] + create(b), fake, b, floor))
    cases.append((f"create, {where[b]}: cglimit-runtime, 1,000 policies (runc a no-op)",
                  [f"{work}/cglimit-runtime"] + create(b), fake, b, floor))
res = {c[0]: [] for c in cases}
order = random.Random(1)
for _ in range(rounds):
    # A new order each round: no case always follows the same one.
    for n, c, env, bundle, _ in order.sample(cases, len(cases)):
        if bundle:
            shutil.copy(f"{work}/config.orig", f"{bundle}/config.json")
        t = time.perf_counter()
        subprocess.run(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        res[n].append(time.perf_counter() - t)
base = statistics.median(res[cases[0][0]])
def interval(a, b, draws=2000):
    # 95% bootstrap interval of median(a) - median(b).
    r = random.Random(2)
    d = sorted(statistics.median(r.choices(a, k=len(a))) - statistics.median(r.choices(b, k=len(b)))
               for _ in range(draws))
    return d[int(draws * 0.025)], d[int(draws * 0.975)]
print(f"| call ({rounds} rounds, interleaved, in a new order each round) | median ms | vs runc | vs its floor | its 95% interval |")
print("|---|---|---|---|---|")
for n, _, _, bundle, floor in cases:
    m = statistics.median(res[n])
    fn = floor or (n if bundle else cases[2][0])
    f = statistics.median(res[fn])
    lo, hi = interval(res[n], res[fn]) if fn != n else (0, 0)
    print(f"| {n} | {m*1e3:.3f} | {(m-base)*1e3:+.3f} ms | {(m-f)*1e3:+.3f} ms | {lo*1e3:+.3f} .. {hi*1e3:+.3f} |")
PY
