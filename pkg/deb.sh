#!/usr/bin/env bash
# Builds cglimit_VERSION_amd64.deb with dpkg-deb: the static binary and its
# cglimit-runtime symlink in /usr/bin, the default policy and the wrapper's
# config as conffiles in /etc/cglimit, the podman/CRI-O hook file where
# podman 4 reads hooks, the watcher's unit, man pages and bash/zsh/fish
# completions generated from the binary's own flag definitions.
#
#   bash pkg/deb.sh [OUT_DIR]     (default target/deb; prints the .deb's path)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/deb}
target=${CARGO_BUILD_TARGET:-x86_64-unknown-linux-musl}
cargo build --release -q
cargo run -q --features gen --bin cglimit-gen -- target/gen
version=$(cargo metadata --no-deps --format-version 1 | sed -E 's/.*"name":"cglimit","version":"([^"]+)".*/\1/')
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
r=$stage/root
install -D -m 0755 "target/$target/release/cglimit" "$r/usr/bin/cglimit"
ln -s cglimit "$r/usr/bin/cglimit-runtime"
ln -s cglimit "$r/usr/bin/cglimit-podman-runtime"
# The default policy is installed by postinst only into a policy directory
# that holds none (as `cglimit setup` does): a second policy named
# "default" would make the directory invalid, and every start refused.
for p in 00-default.yaml 05-pod-sandboxes.yaml; do
  install -D -m 0644 "policies/$p" "$r/usr/share/cglimit/policies/$p"
done
install -d -m 0755 "$r/etc/cglimit/policies"
install -D -m 0644 hooks/config.yaml "$r/etc/cglimit/config.yaml"
install -d -m 0755 "$r/usr/share/containers/oci/hooks.d"
sed 's#/usr/local/bin/cglimit#/usr/bin/cglimit#' hooks/cglimit.json > "$r/usr/share/containers/oci/hooks.d/cglimit.json"
install -d -m 0755 "$r/lib/systemd/system"
sed 's#/usr/local/bin/cglimit#/usr/bin/cglimit#' deploy/cglimit-watch.service > "$r/lib/systemd/system/cglimit-watch.service"
install -d -m 0755 "$r/usr/share/man/man1"
for p in target/gen/man/*.1; do gzip -9n < "$p" > "$r/usr/share/man/man1/$(basename "$p").gz"; done
install -D -m 0644 target/gen/completions/cglimit.bash "$r/usr/share/bash-completion/completions/cglimit"
install -D -m 0644 target/gen/completions/_cglimit "$r/usr/share/zsh/vendor-completions/_cglimit"
install -D -m 0644 target/gen/completions/cglimit.fish "$r/usr/share/fish/vendor_completions.d/cglimit.fish"
install -d -m 0755 "$r/usr/share/doc/cglimit"
cp README.md SECURITY.md "$r/usr/share/doc/cglimit/"
cp -r docs "$r/usr/share/doc/cglimit/"
install -d -m 0755 "$r/DEBIAN"
cat > "$r/DEBIAN/control" <<CONTROL
Package: cglimit
Version: $version
Architecture: amd64
Maintainer: cglimit maintainers <cglimit@localhost>
Section: admin
Priority: optional
Installed-Size: $(du -sk "$r" | cut -f1)
Suggests: docker.io | podman
Description: memory limits for every container, enforced in its cgroup
 Policies in YAML say, per selected container, the default, minimum and
 maximum memory, swap and memory.high. An OCI hook (runc, crun, podman,
 CRI-O) and a runtime wrapper for Docker put them in place before the
 container's first instruction; cglimit watch records OOM kills, limit hits
 and leaks. Wire a host with "cglimit setup docker" or "podman", prove it
 with "cglimit doctor".
CONTROL
printf '/etc/cglimit/config.yaml\n' > "$r/DEBIAN/conffiles"
cat > "$r/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
found=
for f in /etc/cglimit/policies/*.yaml /etc/cglimit/policies/*.yml; do
  [ -e "$f" ] && found=1
done
if [ "$1" = configure ] && [ -z "$found" ]; then
  for p in /usr/share/cglimit/policies/*.yaml; do
    install -m 0644 "$p" "/etc/cglimit/policies/${p##*/}"
  done
fi
POSTINST
chmod 0755 "$r/DEBIAN/postinst"
mkdir -p "$out"
deb=$out/cglimit_${version}_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$r" "$deb" >/dev/null
echo "$deb"
