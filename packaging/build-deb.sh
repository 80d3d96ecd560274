#!/usr/bin/env bash
# Build the Debian package with cargo-deb: the release binary, then the
# assets it generates itself (man pages, completions, commented config).
# usage: packaging/build-deb.sh   -> prints the path of the .deb
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null || {
    echo "cargo-deb not found: cargo install cargo-deb --locked" >&2
    exit 1
}
cargo build --release --locked >&2
rm -rf target/assets
./target/release/zfs-nfs-replica generate-assets target/assets >&2
mkdir -p target/assets/man
for m in target/assets/*.1; do
    gzip -9n -c "$m" > "target/assets/man/$(basename "$m").gz"
done
cargo deb --no-build --locked --output target/debian/ >&2
ls -1t target/debian/zfs-nfs-replica_*.deb | head -n 1
