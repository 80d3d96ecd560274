#!/bin/bash
# See it run, without a cluster: as root on a Debian 12 machine with the
# test command's packages (tests/run.sh installs them), builds the lab image
# if needed, boots two nodes with the Proxmox API stand-in, installs the tool
# on both and walks through a first sync, an incremental, a planned
# migration, a crash failover with its divergence resolved, and `status` on
# both nodes (tests/lab/demo.rs). About 5 minutes under TCG.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (the lab boots qemu guests)" >&2; exit 1; }
tests/lab/build.sh
cargo build --release --locked
LAB_BINARY=$PWD/target/release/zfs-nfs-replica exec cargo test --locked --test demo
