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
# crates (debug). The lab image is built in the background from the start
# (debootstrap + dkms), while the Rust code compiles, and cached outside the
# clone (tests/lab/README.md, "Where things live").
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
lab_log=$(mktemp)
lab_t=$(now)
(
    tests/lab/build.sh >"$lab_log" 2>&1
    echo $? >"$lab_log.rc"
    printf '%s\t%s\n' "lab image (tests/lab/build.sh, in the background)" \
        "$(since "$lab_t")" >"$timings/lab-build"
) &
lab_pid=$!

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

phase "waiting for the lab image"
wait "$lab_pid" || true
cat "$lab_log" | sed 's/^/  /' | tail -n 8
[[ "$(cat "$lab_log.rc" 2>/dev/null)" == 0 ]] || {
    cat "$lab_log" >&2
    echo "tests/lab/build.sh failed" >&2
    exit 1
}
cat "$timings/lab-build" >>"$timings/phases"
rm -f "$lab_log" "$lab_log.rc"

phase "real-ZFS lab scenarios (cargo test --test lab)"
# The life test plays a fixed budget of events from a fixed seed here, so
# that a run of this command is reproducible (LIFE_SEED / LIFE_EVENTS
# override; tests/lab/life.sh plays long runs from random seeds).
LIFE_SEED=${LIFE_SEED:-12} LIFE_EVENTS=${LIFE_EVENTS:-30} \
    LAB_BINARY=$repo/target/release/zfs-nfs-replica LAB_TIMINGS=$timings/lab \
    cargo test --locked --test lab

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
