#!/bin/bash
# The life test, long: tests/lab/life.sh [--events N] [--seed S]
# Plays N random events (default 300) from seed S (default: from the clock)
# on the real-ZFS lab, checking every invariant after each
# (tests/common/life.rs). A fault prints the seed, the step and the last
# events; the same seed and count replay it.
set -euo pipefail
cd "$(dirname "$0")/../.."
events=300 seed=
while [[ $# -gt 0 ]]; do
    case $1 in
        --events) events=$2; shift 2 ;;
        --seed) seed=$2; shift 2 ;;
        *) echo "usage: $0 [--events N] [--seed S]" >&2; exit 2 ;;
    esac
done
[[ -n $seed ]] || seed=$(( $(date +%s%N) % 1000000007 ))
cargo build --release --locked
echo "life test: LIFE_SEED=$seed LIFE_EVENTS=$events" >&2
LIFE_SEED=$seed LIFE_EVENTS=$events LAB_PARALLEL=1 \
    LAB_BINARY=$PWD/target/release/zfs-nfs-replica \
    exec cargo test --locked --test lab -- --exact lab_life_of_a_cluster --nocapture
