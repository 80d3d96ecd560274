#!/usr/bin/env bash
# Build the Debian package from the one release build, with the tools Debian
# ships (dpkg-deb, dpkg-shlibdeps): no packaging tool to compile first.
#
#   packaging/build-deb.sh            -> prints the path of the .deb
#
# The binary is target/release/zfs-nfs-replica (built here if it is missing
# or stale: `cargo build --release` is a no-op when it is up to date). It
# generates its own man pages, completions and commented config
# (`generate-assets`). The tree is assembled under target/debian/root and
# packed with root ownership; the maintainer scripts come from
# packaging/debian/.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked >&2
bin=target/release/zfs-nfs-replica
version=$("$bin" --version | awk '{ print $2 }')
[[ -n "$version" ]] || { echo "build-deb: cannot read the version from $bin" >&2; exit 1; }
debver="$version-1"
arch=$(dpkg --print-architecture)

out=target/debian
root=$out/root
rm -rf "$root" target/assets
mkdir -p "$root/DEBIAN"
"$bin" generate-assets target/assets >&2

# install MODE SRC DEST (DEST relative to the package root)
put() {
    install -D -m "$1" "$2" "$root/$3"
}
put 755 "$bin" usr/bin/zfs-nfs-replica
strip --strip-unneeded "$root/usr/bin/zfs-nfs-replica"
put 644 systemd/zfs-nfs-replica.service usr/lib/systemd/system/zfs-nfs-replica.service
put 644 systemd/zfs-nfs-replica.timer usr/lib/systemd/system/zfs-nfs-replica.timer
put 644 systemd/zfs-nfs-replica-boot.service usr/lib/systemd/system/zfs-nfs-replica-boot.service
put 644 target/assets/config.toml etc/zfs-nfs-replica/config.toml
put 755 packaging/zfs-nfs-replica-hook usr/share/zfs-nfs-replica/zfs-nfs-replica-hook
put 644 README.md usr/share/doc/zfs-nfs-replica/README.md
put 644 examples/config.toml usr/share/doc/zfs-nfs-replica/examples/config.toml
for f in zfs-nfs-replica.rules.yml zfs-nfs-replica.rules.test.yml zfs-nfs-replica.grafana.json; do
    put 644 "examples/monitoring/$f" "usr/share/doc/zfs-nfs-replica/examples/monitoring/$f"
done
put 644 target/assets/zfs-nfs-replica.bash usr/share/bash-completion/completions/zfs-nfs-replica
put 644 target/assets/_zfs-nfs-replica usr/share/zsh/vendor-completions/_zfs-nfs-replica
put 644 target/assets/zfs-nfs-replica.fish usr/share/fish/vendor_completions.d/zfs-nfs-replica.fish
put 644 packaging/lintian-overrides usr/share/lintian/overrides/zfs-nfs-replica
mkdir -p "$root/usr/share/man/man1"
for m in target/assets/*.1; do
    gzip -9n -c "$m" >"$root/usr/share/man/man1/$(basename "$m").gz"
done
chmod 644 "$root"/usr/share/man/man1/*.gz
mkdir -p "$root/usr/share/man/man5"
gzip -9n -c target/assets/zfs-nfs-replica.toml.5 >"$root/usr/share/man/man5/zfs-nfs-replica.toml.5.gz"
chmod 644 "$root/usr/share/man/man5/zfs-nfs-replica.toml.5.gz"
# Machine-readable copyright (DEP-5) with the MIT licence text.
{
    cat <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: zfs-nfs-replica

Files: *
Copyright: 2026 zfs-nfs-replica developers
License: MIT
EOF
    sed -n '/^Permission/,$p' LICENSE | sed 's/^$/./; s/^/ /'
} >"$root/usr/share/doc/zfs-nfs-replica/copyright"
chmod 644 "$root/usr/share/doc/zfs-nfs-replica/copyright"
find "$root" -type d -exec chmod 755 {} +

# Shared-library dependencies of the binary, as dpkg-shlibdeps computes them
# (it wants a debian/control beside it: a scratch one).
shlib=$(
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/debian"
    printf 'Source: zfs-nfs-replica\n\nPackage: zfs-nfs-replica\nArchitecture: any\n' >"$tmp/debian/control"
    abs=$(realpath "$root/usr/bin/zfs-nfs-replica")
    cd "$tmp" && dpkg-shlibdeps -O -e"$abs" 2>/dev/null | sed -n 's/^shlibs:Depends=//p'
)
[[ -n "$shlib" ]] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

install -m 644 /dev/null "$root/DEBIAN/conffiles"
echo /etc/zfs-nfs-replica/config.toml >"$root/DEBIAN/conffiles"
for s in packaging/debian/*; do
    install -m 755 "$s" "$root/DEBIAN/$(basename "$s")"
done
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: zfs-nfs-replica
Version: $debver
Architecture: $arch
Maintainer: zfs-nfs-replica developers <zfs-nfs-replica@example.org>
Installed-Size: $size
Depends: $shlib, zfsutils-linux, sanoid, openssh-client
Suggests: prometheus-node-exporter
Section: admin
Priority: optional
Description: Active-passive ZFS pool replication for a Proxmox VE HA NFS container
 Keeps the ZFS pools of a Proxmox VE cluster replicated, active-passive,
 behind a highly available NFS container: the node that runs the guest takes
 snapshots (sanoid) and pushes incremental zfs send/receive streams of every
 pool to the standby nodes over ssh. Master detection through the Proxmox API,
 size and health guards, divergence kept and resolved explicitly.
EOF
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) \
    >"$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control"

deb=$out/zfs-nfs-replica_${debver}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
