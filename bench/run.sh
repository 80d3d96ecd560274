#!/usr/bin/env bash
# The benchmarks, measured side by side in one run, written to
# bench/RESULTS.md with the date, the machine and the exact commands:
#   - planner scale: pure parse + plan of 1k..1M snapshots (benches/planner.rs);
#   - in the real-ZFS lab: the idle cycle against syncoid and the ideal,
#     an incremental transfer against the raw zfs pipe and syncoid, and the
#     footprint (benches/lab.rs).
#
# usage: bench/run.sh [--runs N]     (default 5; as root: the lab needs it)
#        bench/run.sh --smoke        (a tiny version of each, nothing written)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=5
smoke=0
while [ $# -gt 0 ]; do
    case "$1" in
    --runs) runs=$2; shift 2 ;;
    --smoke) smoke=1; shift ;;
    *) echo "usage: bench/run.sh [--runs N | --smoke]" >&2; exit 2 ;;
    esac
done
if [ $smoke = 1 ]; then
    cargo bench --locked --bench planner -- --runs 1 --max 10000
    cargo bench --locked --bench lab -- --smoke
    exit 0
fi
# The pools live in sparse files on each guest's tmpfs, and every snapshot
# received touches new blocks: the full tree (2 x 1300 snapshots) grows the
# standby's tmpfs by ~1 GiB, more than the lab's default 1 GiB guest holds.
export LAB_MEM=${LAB_MEM:-3072}
out=bench/RESULTS.md
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.planner" "$tmp.lab"' EXIT
planner_cmd="cargo bench --locked --bench planner -- --runs $runs"
lab_cmd="cargo bench --locked --bench lab -- --runs $runs"
started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
$planner_cmd | tee -a "$tmp.planner"
$lab_cmd | tee -a "$tmp.lab"
{
    echo "# Benchmark results"
    echo
    echo "Measured by \`bench/run.sh --runs $runs\` (started $started, finished $(date -u +%Y-%m-%dT%H:%M:%SZ)),"
    echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo ' (with local changes)')."
    echo
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
    echo "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -sr); lab guests under qemu TCG (no KVM, 1 vCPU, $LAB_MEM MiB each),"
    echo "Lab image $(basename "$(. tests/lab/lib.sh; readlink -f "$LAB_CACHE/current")") (Debian 12 kernel and OpenZFS), syncoid from Debian 12's sanoid package."
    echo
    echo "Commands: \`$planner_cmd\`, then \`$lab_cmd\`."
    echo
    echo "## Planner scale"
    echo
    grep -v '^planner:' "$tmp.planner"
    echo
    echo "## In the lab"
    echo
    cat "$tmp.lab"
} > "$tmp"
rm -f "$tmp.planner" "$tmp.lab"
# Keep the hand-written analysis below the marker, if there is one.
if [ -f "$out" ] && grep -q '^<!-- analysis -->' "$out"; then
    sed -n '/^<!-- analysis -->/,$p' "$out" >> "$tmp"
fi
cp "$tmp" "$out"
echo "written: $out"
