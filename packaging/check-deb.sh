#!/usr/bin/env bash
# Check the built Debian package (part of the test command, tests/run.sh):
#  1. its contents list every file it must ship (dpkg-deb -c);
#  2. lintian reports no error or warning (when lintian is installed);
#  3. it installs into a scratch root with dpkg (maintainer scripts run
#     chrootless, honouring DPKG_ROOT): files, conffile, state dir, the
#     timer not enabled, the binary runs, the shipped config refuses to run
#     unedited;
#  4. systemd-analyze verify finds nothing to say about the installed units,
#     and systemd-analyze security rates both services at most 5.0;
#  5. an upgrade keeps the operator's enable link; remove masks the units
#     (apt remove leaves nothing that can start); purge removes the enable
#     link, the mask and the state files, never the quarantine.
# usage: packaging/check-deb.sh PATH.deb
set -euo pipefail
deb=$(realpath "$1")
fail() { echo "check-deb: $*" >&2; exit 1; }

want=(
    ./usr/bin/zfs-nfs-replica
    ./usr/lib/systemd/system/zfs-nfs-replica.service
    ./usr/lib/systemd/system/zfs-nfs-replica.timer
    ./usr/lib/systemd/system/zfs-nfs-replica-boot.service
    ./etc/zfs-nfs-replica/config.toml
    ./usr/share/zfs-nfs-replica/zfs-nfs-replica-hook
    ./usr/share/doc/zfs-nfs-replica/README.md
    ./usr/share/doc/zfs-nfs-replica/copyright
    ./usr/share/doc/zfs-nfs-replica/examples/config.toml
    ./usr/share/doc/zfs-nfs-replica/examples/monitoring/zfs-nfs-replica.rules.yml
    ./usr/share/doc/zfs-nfs-replica/examples/monitoring/zfs-nfs-replica.grafana.json
    ./usr/share/man/man1/zfs-nfs-replica.1.gz
    ./usr/share/man/man1/zfs-nfs-replica-run.1.gz
    ./usr/share/man/man1/zfs-nfs-replica-status.1.gz
    ./usr/share/man/man1/zfs-nfs-replica-resolve.1.gz
    ./usr/share/man/man5/zfs-nfs-replica.toml.5.gz
    ./usr/share/bash-completion/completions/zfs-nfs-replica
    ./usr/share/zsh/vendor-completions/_zfs-nfs-replica
    ./usr/share/fish/vendor_completions.d/zfs-nfs-replica.fish
)
listing=$(dpkg-deb -c "$deb" | awk '{print $6}')
for f in "${want[@]}"; do
    grep -qxF "$f" <<<"$listing" || fail "$f is missing from the package"
done
dpkg-deb -f "$deb" Depends | grep -q zfsutils-linux || fail "Depends lacks zfsutils-linux"
for d in sanoid openssh-client; do
    dpkg-deb -f "$deb" Depends | grep -qw "$d" || fail "Depends lacks $d"
done
echo "check-deb: contents ok (${#want[@]} required files)"

if command -v lintian >/dev/null; then
    out=$(lintian --allow-root "$deb" 2>&1 || true)
    if grep -E '^[EW]: ' <<<"$out"; then
        fail "lintian reports errors or warnings"
    fi
    echo "check-deb: lintian ok"
else
    echo "check-deb: lintian not installed, skipped"
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
touch "$root/var/lib/dpkg/status"
dpkg() { command dpkg --root="$root" --force-script-chrootless --log=/dev/null "$@"; }
dpkg --force-depends -i "$deb" >/dev/null 2>&1 || fail "dpkg -i into a scratch root failed"
for f in "${want[@]}"; do
    [ -e "$root/${f#./}" ] || fail "${f#.} was not installed"
done
dpkg-query --root="$root" -W -f='${Conffiles}\n' zfs-nfs-replica |
    grep -q '^ /etc/zfs-nfs-replica/config.toml ' || fail "config.toml is not a conffile"
[ "$(stat -c %a "$root/var/lib/zfs-nfs-replica")" = 700 ] || fail "postinst did not create the state dir (0700)"
[ ! -e "$root/etc/systemd/system/timers.target.wants/zfs-nfs-replica.timer" ] ||
    fail "installing enabled the timer"
"$root/usr/bin/zfs-nfs-replica" --version | grep -q '^zfs-nfs-replica ' || fail "the binary does not run"
set +e
msg=$("$root/usr/bin/zfs-nfs-replica" -c "$root/etc/zfs-nfs-replica/config.toml" run 2>&1)
rc=$?
set -e
[ $rc = 2 ] && grep -q 'missing field `cluster`' <<<"$msg" ||
    fail "the shipped config must refuse to run unedited (exit $rc: $msg)"
echo "check-deb: scratch-root install ok"

if command -v systemd-analyze >/dev/null; then
    # The units' dependencies (sysinit.target, timers.target, ...) from this system.
    cp -n /usr/lib/systemd/system/*.target "$root/usr/lib/systemd/system/" 2>/dev/null || true
    out=$(systemd-analyze verify --man=no --root="$root" \
        /usr/lib/systemd/system/zfs-nfs-replica.service \
        /usr/lib/systemd/system/zfs-nfs-replica.timer \
        /usr/lib/systemd/system/zfs-nfs-replica-boot.service 2>&1) || fail "systemd-analyze verify: $out"
    # verify exits 0 on lines it ignores: anything it says is a finding.
    [ -z "$out" ] || fail "systemd-analyze verify: $out"
    echo "check-deb: systemd-analyze verify ok"
    # The hardening (README: "The systemd units"): the exposure systemd
    # computes, which was 9.6 (UNSAFE) before it.
    for u in zfs-nfs-replica.service zfs-nfs-replica-boot.service; do
        level=$(systemd-analyze security --offline=yes --root="$root" \
            "/usr/lib/systemd/system/$u" 2>&1 | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
        [ -n "$level" ] || fail "systemd-analyze security $u gave no level"
        awk -v l="$level" 'BEGIN { exit !(l <= 5.0) }' || fail "$u: exposure $level, above 5.0"
        echo "check-deb: $u exposure $level (systemd-analyze security)"
    done
else
    fail "systemd-analyze not found (apt-get install systemd)"
fi

# The operator enables the timer (what `systemctl enable` links).
wants="$root/etc/systemd/system/timers.target.wants/zfs-nfs-replica.timer"
mkdir -p "${wants%/*}"
ln -s /usr/lib/systemd/system/zfs-nfs-replica.timer "$wants"
# An upgrade (the same package again) keeps it enabled.
dpkg --force-depends -i "$deb" >/dev/null 2>&1 || fail "dpkg -i over itself failed"
[ -L "$wants" ] || fail "an upgrade dropped the operator's enable link"
echo '{}' > "$root/var/lib/zfs-nfs-replica/status.json"
mkdir -p "$root/var/lib/zfs-nfs-replica/quarantine/zpool1"
# Remove: nothing can start the units any more (masked).
dpkg --remove zfs-nfs-replica >/dev/null 2>&1 || fail "dpkg --remove failed"
[ "$(readlink "$root/etc/systemd/system/zfs-nfs-replica.timer")" = /dev/null ] ||
    fail "remove did not mask the timer"
dpkg --purge zfs-nfs-replica >/dev/null 2>&1 || fail "dpkg --purge failed"
[ ! -e "$root/usr/bin/zfs-nfs-replica" ] || fail "purge left the binary"
[ ! -e "$root/var/lib/zfs-nfs-replica/status.json" ] || fail "purge left the state"
[ -d "$root/var/lib/zfs-nfs-replica/quarantine" ] || fail "purge touched the quarantine"
[ ! -L "$wants" ] || fail "purge left the timer's enable link"
[ ! -L "$root/etc/systemd/system/zfs-nfs-replica.timer" ] || fail "purge left the mask"
echo "check-deb: remove masks the units; purge removes the enable link, the mask and the state (quarantine kept)"
