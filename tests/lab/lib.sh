# shellcheck shell=bash disable=SC2034
# Common paths and helpers for the ZFS lab scripts (sourced, not executed).
#
#   LAB_DIR     this directory (tests/lab)
#   REPO_DIR    repository root
#   TARGET_DIR  $CARGO_TARGET_DIR or <repo>/target
#   LAB_CACHE   $LAB_CACHE or ${XDG_CACHE_HOME:-~/.cache}/zfs-nfs-replica-lab
#               (build chroots and images: outside the clone, so a new clone
#               or `cargo clean` reuses them; each image dir is keyed by what
#               it was built from, see build.sh)
#   LAB_RUN     $LAB_RUN_DIR or <target>/lab/run (pid files, logs, keys, ssh_config)

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$LAB_DIR/../.." && pwd)
if [[ -n "${CARGO_TARGET_DIR:-}" ]]; then
    TARGET_DIR=$(realpath -m "$CARGO_TARGET_DIR")
else
    TARGET_DIR=$REPO_DIR/target
fi
LAB_CACHE=$(realpath -m "${LAB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/zfs-nfs-replica-lab}")
LAB_RUN=$(realpath -m "${LAB_RUN_DIR:-$TARGET_DIR/lab/run}")
# image dir symlink written by build.sh and read by boot.sh, per ZFS suite
case "${LAB_ZFS_SUITE:-bookworm}" in
bookworm) LAB_CURRENT_LINK=current ;;
*) LAB_CURRENT_LINK=current-${LAB_ZFS_SUITE#bookworm-} ;;
esac

lab_now() { echo "${EPOCHREALTIME/,/.}"; }
# lab_elapsed START -> seconds since START with one decimal
lab_elapsed() { awk -v a="$1" -v b="$(lab_now)" 'BEGIN { printf "%.1f", b - a }'; }
lab_log() { printf '[lab %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
lab_die() { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }

# Is anything on this host listening on TCP port $1 (IPv4 or IPv6)?
lab_port_listening() {
    local hex
    hex=$(printf '%04X' "$1")
    awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Is pid $1 alive and a qemu started for run dir $2 (matched by its -pidfile argument)?
lab_is_our_qemu() {
    local pid=$1 pidfile=$2
    [[ -n "$pid" && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' '\n' </proc/"$pid"/cmdline 2>/dev/null | grep -qxF -- "$pidfile"
}
