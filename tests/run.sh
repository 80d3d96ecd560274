#!/usr/bin/env bash
# The test command (README "Testing"): installs what the tests need on a fresh
# Debian 12 machine (as root), then runs every check and test, and prints
# where the time went (a table of phases and of lab scenarios) at the end,
# whether it passed or not.
#
#   tests/run.sh            the whole suite (what CI runs, .ci/run)
#
# Everything is built once: `cargo build --release` makes the binary that the
# real-ZFS lab runs and the Debian package ships; `cargo test` builds the test
# crates (debug). The lab images (Debian 13, then Debian 12) are built in the
# background from the start (debootstrap + dkms), while the Rust code
# compiles, and cached outside the clone (tests/lab/README.md, "Where things
# live"). Every lab scenario runs on Debian 13; a core set on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }
T0=$(now)
timings=$(mktemp -d)
# phase NAME: start timing a phase (ends the previous one).
phase_name=
phase_t=
phase_end() {
    if [[ -n "$phase_name" ]]; then
        printf '%s\t%s\n' "$phase_name" "$(since "$phase_t")" >>"$timings/phases"
        phase_name=
    fi
}
phase() {
    phase_end
    phase_name=$1
    phase_t=$(now)
    echo "== $1"
}
report() {
    local rc=$?
    phase_end
    echo
    echo "== where the time went (seconds)"
    if [[ -f "$timings/phases" ]]; then
        awk -F'\t' '{ printf "  %-58s %6d\n", $1, $2 }' "$timings/phases"
    fi
    printf '  %-58s %6d\n' "whole command" "$(since "$T0")"
    if [[ -s "$timings/lab" ]]; then
        echo
        echo "== lab scenarios (seconds each, on whichever lab was free; the labs run side by side)"
        sort -t$'\t' -k2,2nr "$timings/lab" | awk -F'\t' '{ printf "  %-72s %6.1f\n", $1, $2 }'
    fi
    rm -rf "$timings"
    [[ $rc -eq 0 ]] && echo "== all passed" || echo "== FAILED (exit $rc)"
    exit $rc
}
trap report EXIT

phase "packages"
need_pkgs=()
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
command -v ssh >/dev/null || need_pkgs+=(openssh-client)
command -v ssh-keygen >/dev/null || need_pkgs+=(openssh-client)
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v curl >/dev/null || need_pkgs+=(curl ca-certificates)
command -v pkill >/dev/null || need_pkgs+=(procps)
command -v socat >/dev/null || need_pkgs+=(socat)
command -v objcopy >/dev/null || need_pkgs+=(binutils)
# The lab image (tests/lab/build.sh).
command -v debootstrap >/dev/null || need_pkgs+=(debootstrap)
# The Debian package (packaging/build-deb.sh, check-deb.sh).
command -v dpkg-deb >/dev/null || need_pkgs+=(dpkg)
command -v dpkg-shlibdeps >/dev/null || need_pkgs+=(dpkg-dev)
command -v lintian >/dev/null || need_pkgs+=(lintian)
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
command -v gzip >/dev/null || need_pkgs+=(gzip)
# The Prometheus text format, checked with the official client's parser
# (tests/prometheus.rs).
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null || need_pkgs+=(python3-prometheus-client)
# promtool (Prometheus's rule checker and unit tester, tests/monitoring.rs):
# extracted from Debian's prometheus package into target/tools/, not
# installed (the package would start a Prometheus server).
if [ -z "${PROMTOOL:-}" ] && ! command -v promtool >/dev/null && [ ! -x target/tools/promtool ]; then
    need_promtool=1
fi
if [ ${#need_pkgs[@]} -gt 0 ] || [ -n "${need_promtool:-}" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${need_pkgs[*]} (run as root, or install them)" >&2
        exit 1
    fi
    echo "installing: ${need_pkgs[*]}${need_promtool:+ promtool (from the prometheus package)}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # The package's own sshd service is not started here (no systemd in CI);
    # the tests start their own sshd on loopback.
    if [ ${#need_pkgs[@]} -gt 0 ]; then
        apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
    fi
    if [ -n "${need_promtool:-}" ]; then
        d=$(mktemp -d)
        (cd "$d" && apt-get download -q prometheus 2>/dev/null && dpkg-deb -x prometheus_*.deb x)
        install -D -m 755 "$d/x/usr/bin/promtool" target/tools/promtool
        rm -rf "$d"
    fi
fi

# The lab image, in the background: mostly downloads, dpkg and one dkms
# build, which overlap with the compilation below.
# Both lab images in the background, Debian 13 first (every scenario runs on
# it), then Debian 12 (the core set below); each says when it is done.
lab_dir=$(mktemp -d)
lab_t=$(now)
(
    for suite in trixie bookworm; do
        LAB_ZFS_SUITE=$suite tests/lab/build.sh >"$lab_dir/$suite.log" 2>&1
        echo $? >"$lab_dir/$suite.rc"
        printf '%s\t%s\n' "lab image $suite (tests/lab/build.sh, in the background)" \
            "$(since "$lab_t")" >>"$timings/lab-build"
    done
) &
lab_pid=$!
wait_image() { # wait_image SUITE: until its build is done; fails the command if it failed
    while [[ ! -f "$lab_dir/$1.rc" ]]; do sleep 2; done
    sed 's/^/  /' "$lab_dir/$1.log" | tail -n 4
    [[ "$(cat "$lab_dir/$1.rc")" == 0 ]] || {
        cat "$lab_dir/$1.log" >&2
        echo "tests/lab/build.sh failed for $1" >&2
        exit 1
    }
}

phase "cargo fmt --check"
cargo fmt --all -- --check
phase "cargo clippy --all-targets"
cargo clippy --all-targets --locked -- -D warnings
phase "cargo build --release (the binary the lab runs and the package ships)"
cargo build --release --locked
phase "cargo test: unit and integration tests (all but the lab)"
tests=()
for t in tests/*.rs; do
    t=$(basename "$t" .rs)
    [[ $t == lab ]] || tests+=(--test "$t")
done
cargo test --locked --lib --bins "${tests[@]}" --bench planner

phase "waiting for the Debian 13 lab image"
wait_image trixie

phase "real-ZFS lab scenarios, every one, on Debian 13 (OpenZFS 2.3, sanoid 2.2)"
# The life test plays a fixed budget of events from a fixed seed here, so
# that a run of this command is reproducible (LIFE_SEED / LIFE_EVENTS
# override; tests/lab/life.sh plays long runs from random seeds).
LAB_ZFS_SUITE=trixie LIFE_SEED=${LIFE_SEED:-12} LIFE_EVENTS=${LIFE_EVENTS:-30} \
    LAB_BINARY=$repo/target/release/zfs-nfs-replica LAB_TIMINGS=$timings/lab \
    cargo test --locked --test lab

phase "waiting for the Debian 12 lab image"
wait_image bookworm
wait "$lab_pid" || true
cat "$timings/lab-build" >>"$timings/phases"

# On Debian 12 (OpenZFS 2.1, sanoid 2.1, what most Proxmox VE 8 nodes run):
# the core set, where the two versions could differ: full and incremental
# streams with a zvol, a resumed receive, a failover mid-stream (the
# partial receive discarded), raw encryption, the handover and
# a failover with divergence and resolve, sanoid on both roles, the
# delegated (zfs allow) permissions, and large blocks that cannot go back. Every scenario passes on both images
# by hand: LAB_ZFS_SUITE=bookworm cargo test --test lab.
phase "real-ZFS lab scenarios, the core set, on Debian 12 (OpenZFS 2.1, sanoid 2.1)"
LAB_ZFS_SUITE=bookworm LAB_BINARY=$repo/target/release/zfs-nfs-replica \
    LAB_TIMINGS=$timings/lab-bookworm \
    cargo test --locked --test lab -- --exact \
    lab_check_reaches_the_peer_and_lists_both_sides \
    lab_initial_full_sync_of_nested_datasets_and_a_zvol \
    lab_a_fast_listing_replicates_like_a_full_one_and_the_next_full_one_finds_a_leaked_hold \
    lab_a_transfer_killed_mid_stream_resumes_from_the_token \
    lab_a_failover_mid_stream_discards_the_partial_receive_and_the_failback_converges \
    lab_raw_send_of_an_encrypted_dataset \
    lab_a_planned_migration_hands_the_last_writes_over_and_back \
    lab_failover_with_unreplicated_writes_on_the_old_master_is_diverged_and_kept \
    lab_sanoid_snapshots_exactly_what_the_role_allows \
    lab_replication_as_a_non_root_user_with_zfs_allow \
    lab_large_blocks_a_copy_without_them_cannot_send_back_and_the_remedy_works
[[ -f "$timings/lab-bookworm" ]] && sed 's/^/debian12: /' "$timings/lab-bookworm" >>"$timings/lab"

phase "Debian package: build from the release binary, contents, lintian, install, verify, purge"
deb=$(packaging/build-deb.sh)
packaging/check-deb.sh "$deb"

# The lab's watchdog stops the nodes once the test process is gone; make sure
# it did: no test run may leave a qemu behind.
phase "no lab machine left running"
for _ in $(seq 1 30); do
    pgrep -f '[q]emu-system.*lab/run-test-' >/dev/null || break
    sleep 0.5
done
if pgrep -af '[q]emu-system.*lab/run-test-'; then
    echo "qemu processes of the lab are still running after the tests" >&2
    exit 1
fi
