#!/usr/bin/env bash
# Build the real-OpenZFS lab images: a guest kernel, an initramfs with ZFS, sshd,
# busybox and sanoid, and a self-contained qemu-system-x86_64 bundle.
#
# usage: tests/lab/build.sh [CACHE_DIR]
#
# Everything is installed into a Debian debootstrap chroot under the cache
# dir (Debian 12 by default, Debian 13 with LAB_ZFS_SUITE=trixie) (kernel, headers, zfs-dkms, zfsutils-linux, openssh, busybox-static,
# sanoid, qemu-system-x86). Nothing but `debootstrap` (and openssh-client, for
# boot.sh) is installed on the host; no kernel or dkms module ever is.
#
# Output: <cache>/<kernel-release>-zfs<zfs-version>/{vmlinuz,initramfs.img,qemu/}
#         <cache>/current -> that directory (current-backports for
#         LAB_ZFS_SUITE=bookworm-backports, current-trixie for trixie)
# Idempotent: a stamp of the installed package versions and of the lab scripts
# decides whether anything has to be redone.
#
# env:
#   LAB_MIRROR           Debian mirror (default http://deb.debian.org/debian)
#   LAB_SECURITY_MIRROR  (default http://deb.debian.org/debian-security)
#   LAB_ZFS_SUITE        bookworm (default: Debian 12, zfs 2.1.x, sanoid 2.1),
#                        bookworm-backports (newer zfs from backports/contrib)
#                        or trixie (Debian 13: kernel 6.12, zfs 2.3.x, sanoid
#                        2.2, as Proxmox VE 9); each gets its own chroot, lock
#                        and logs, so two suites build at the same time
#   LAB_UPDATE=1         apt-get update + upgrade the chroot (may give new
#                        kernel/zfs versions and therefore a new image dir)
#   LAB_INITRD_COMPRESS  none (default, fastest boot)|gzip|zstd|lz4
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ $EUID -eq 0 ]] || lab_die "build.sh must run as root (debootstrap/chroot)"

CACHE=$(realpath -m "${1:-$LAB_CACHE}")
mkdir -p "$CACHE"
ZFS_SUITE=${LAB_ZFS_SUITE:-bookworm}
# bookworm: Debian 12 (OpenZFS 2.1, sanoid 2.1), what Proxmox VE 8 users
# mostly run; trixie: Debian 13 (OpenZFS 2.3, sanoid 2.2), as on Proxmox VE 9.
case "$ZFS_SUITE" in
bookworm|bookworm-backports) SUITE=bookworm ;;
trixie) SUITE=trixie ;;
*) lab_die "LAB_ZFS_SUITE must be bookworm, bookworm-backports or trixie";;
esac
MIRROR=${LAB_MIRROR:-http://deb.debian.org/debian}
SEC_MIRROR=${LAB_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
ROOT=$CACHE/chroot-$ZFS_SUITE
# uncompressed: the kernel unpacks it ~1 s faster under TCG than gzip (81M vs 28M file)
COMPRESS=${LAB_INITRD_COMPRESS:-none}

# Packages installed in the chroot (all --no-install-recommends).
PKGS_BASE=(linux-image-amd64 linux-headers-amd64 openssh-server openssh-client
    busybox-static bash dash procps cpio gzip zstd lz4 xz-utils kmod pv mbuffer lzop
    qemu-system-x86 qemu-system-data seabios ipxe-qemu)
# zfs + sanoid in a second step (sanoid alone would pull in zfs-fuse)
PKGS_ZFS=(zfs-dkms zfsutils-linux sanoid libcapture-tiny-perl libconfig-inifiles-perl)

T_ALL=$(lab_now)
PHASE=
phase() { PHASE=$1; PHASE_T=$(lab_now); lab_log "phase $PHASE ..."; }
phase_done() { lab_log "phase $PHASE: $(lab_elapsed "$PHASE_T")s"; }

exec 9>"$CACHE/.build-$ZFS_SUITE.lock"
flock -n 9 || { lab_log "another build.sh holds $CACHE/.build-$ZFS_SUITE.lock, waiting"; flock 9; }

# ---------------------------------------------------------------- chroot mounts
# Only /proc is mounted into the chroot (no /dev bind mount: debootstrap creates
# the few device nodes needed), so a stray `rm -rf` of the cache cannot reach
# host devices.
umount_chroot() {
    local m
    # unmount anything below $ROOT, deepest first (also stale mounts of a killed run)
    for m in $(awk -v r="$ROOT/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done
}
mount_chroot() {
    mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
}
trap umount_chroot EXIT
in_chroot() {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true "$@"
}
umount_chroot

# Host query helpers that need no chroot (read the chroot's dpkg database).
chroot_pkg_version() {
    dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Version}' "$1" 2>/dev/null || true
}
chroot_kver() { # kernel release the linux-image-amd64 metapackage points at
    dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${Depends}' linux-image-amd64 2>/dev/null |
        grep -o 'linux-image-[0-9][^ ,]*' | head -1 | sed 's/^linux-image-//'
}

PKG_STAMP_WANT="suite=$ZFS_SUITE pkgs=${PKGS_BASE[*]} ${PKGS_ZFS[*]} v4"

# ---------------------------------------------------------------- host tools
need_host=()
command -v debootstrap >/dev/null || need_host+=(debootstrap)
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || need_host+=(openssh-client)
# relays each guest connection to the Proxmox API stand-in (boot.sh guestfwd)
command -v socat >/dev/null || need_host+=(socat)
if ((${#need_host[@]})); then
    phase host-tools
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_host[@]}" >/dev/null
    phase_done
fi

# ---------------------------------------------------------------- debootstrap
if [[ ! -f "$ROOT/.lab/debootstrap.done" ]]; then
    phase debootstrap
    rm -rf --one-file-system "$ROOT"
    debootstrap --variant=minbase --components=main,contrib \
        "$SUITE" "$ROOT" "$MIRROR" >"$CACHE/debootstrap-$ZFS_SUITE.log" 2>&1 ||
        { tail -30 "$CACHE/debootstrap-$ZFS_SUITE.log"; lab_die "debootstrap failed (log: $CACHE/debootstrap-$ZFS_SUITE.log)"; }
    mkdir -p "$ROOT/.lab"
    touch "$ROOT/.lab/debootstrap.done"
    phase_done
fi

# ---------------------------------------------------------------- packages
if [[ "$(cat "$ROOT/.lab/packages.done" 2>/dev/null)" != "$PKG_STAMP_WANT" || "${LAB_UPDATE:-0}" == 1 ]]; then
    phase packages
    # apt sources: main + contrib (zfs lives in contrib), updates, security.
    rm -f "$ROOT/etc/apt/sources.list"
    cat >"$ROOT/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SEC_MIRROR
Suites: $SUITE-security
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    if [[ "$ZFS_SUITE" == bookworm-backports ]]; then
        cat >>"$ROOT/etc/apt/sources.list.d/debian.sources" <<EOF

Types: deb
URIs: $MIRROR
Suites: $SUITE-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    cat >"$ROOT/etc/apt/apt.conf.d/90lab" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Dpkg::Use-Pty "false";
EOF
    # no docs/man/locales in the chroot; no fsync per file
    cat >"$ROOT/etc/dpkg/dpkg.cfg.d/90lab" <<'EOF'
force-unsafe-io
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    # never start services in the chroot
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod 755 "$ROOT/usr/sbin/policy-rc.d"
    mount_chroot
    # The guest initramfs is built by mkinitramfs.sh, not by initramfs-tools:
    # divert update-initramfs to a no-op (saves ~30 s per kernel install).
    if ! in_chroot dpkg-divert --list /usr/sbin/update-initramfs | grep -q lab; then
        in_chroot dpkg-divert --local --rename --divert /usr/sbin/update-initramfs.lab-real \
            --add /usr/sbin/update-initramfs >/dev/null
    fi
    printf '#!/bin/sh\n# diverted by zfs lab build.sh\nexit 0\n' >"$ROOT/usr/sbin/update-initramfs"
    chmod 755 "$ROOT/usr/sbin/update-initramfs"
    echo 'zfs-dkms zfs-dkms/note-incompatible-licenses note true' | in_chroot debconf-set-selections

    t=$(lab_now)
    in_chroot apt-get update -qq
    if [[ "${LAB_UPDATE:-0}" == 1 ]]; then
        in_chroot apt-get -y -qq full-upgrade >>"$CACHE/apt-$ZFS_SUITE.log" 2>&1
    fi
    zfs_target=()
    [[ "$ZFS_SUITE" == bookworm-backports ]] && zfs_target=(-t bookworm-backports)
    # download everything first (network), then install (CPU/disk, incl. dkms build)
    { in_chroot apt-get install -y -qq --download-only "${PKGS_BASE[@]}" &&
        in_chroot apt-get install -y -qq --download-only "${zfs_target[@]}" "${PKGS_ZFS[@]}"; } \
        >>"$CACHE/apt-$ZFS_SUITE.log" 2>&1 || { tail -30 "$CACHE/apt-$ZFS_SUITE.log"; lab_die "apt download failed"; }
    lab_log "  apt download: $(lab_elapsed "$t")s"
    t=$(lab_now)
    in_chroot apt-get install -y -qq "${PKGS_BASE[@]}" >>"$CACHE/apt-$ZFS_SUITE.log" 2>&1 ||
        { tail -30 "$CACHE/apt-$ZFS_SUITE.log"; lab_die "apt install failed (log: $CACHE/apt-$ZFS_SUITE.log)"; }
    lab_log "  apt install (kernel, headers, ssh, qemu, ...): $(lab_elapsed "$t")s"
    t=$(lab_now)
    # zfs-dkms postinst builds the module for every kernel with headers in the chroot
    in_chroot apt-get install -y -qq "${zfs_target[@]}" "${PKGS_ZFS[@]}" >>"$CACHE/apt-$ZFS_SUITE.log" 2>&1 ||
        { tail -30 "$CACHE/apt-$ZFS_SUITE.log"; lab_die "apt install of zfs failed (log: $CACHE/apt-$ZFS_SUITE.log)"; }
    lab_log "  apt install zfs-dkms + zfsutils (dkms build): $(lab_elapsed "$t")s"
    in_chroot apt-get -y -qq autoremove --purge >>"$CACHE/apt-$ZFS_SUITE.log" 2>&1 || true
    in_chroot apt-get clean
    echo "$PKG_STAMP_WANT" >"$ROOT/.lab/packages.done"
    phase_done
fi

KVER=$(chroot_kver)
[[ -n "$KVER" ]] || lab_die "cannot determine the chroot's kernel release"
ZFS_PKG_VER=$(chroot_pkg_version zfs-dkms)
ZFS_VER=$(sed -E 's/^[0-9]+://; s/-[^-]*$//' <<<"$ZFS_PKG_VER")
KEY="$KVER-zfs$ZFS_VER"
OUT=$CACHE/$KEY

# ---------------------------------------------------------------- dkms module
# (normally already built by zfs-dkms' postinst; this covers a kernel upgrade)
if ! ls "$ROOT/lib/modules/$KVER/updates/dkms/zfs.ko"* >/dev/null 2>&1; then
    phase dkms
    mount_chroot
    in_chroot dkms install "zfs/$ZFS_VER" -k "$KVER" >>"$CACHE/dkms-$ZFS_SUITE.log" 2>&1 ||
        { tail -40 "$CACHE/dkms-$ZFS_SUITE.log"; lab_die "dkms build of zfs $ZFS_VER for $KVER failed"; }
    phase_done
fi

# ---------------------------------------------------------------- images
stamp_inputs() {
    echo "key=$KEY"
    echo "compress=$COMPRESS"
    local p
    for p in linux-image-"$KVER" zfs-dkms zfsutils-linux openssh-server openssh-client \
        busybox-static sanoid perl qemu-system-x86 libc6 bash; do
        echo "$p=$(chroot_pkg_version "$p")"
    done
    sha256sum "$LAB_DIR/build.sh" "$LAB_DIR/guest/init" "$LAB_DIR/guest/mkinitramfs.sh" \
        "$LAB_DIR/guest/mkqemu.sh" | awk '{ print $1 }'
}
STAMP_WANT=$(stamp_inputs)
if [[ -f "$OUT/stamp" && "$(cat "$OUT/stamp")" == "$STAMP_WANT" ]]; then
    lab_log "images up to date: $OUT"
else
    phase initramfs
    mount_chroot
    rm -rf "$ROOT/lab"
    mkdir -p "$ROOT/lab/src" "$ROOT/lab/out"
    cp "$LAB_DIR/guest/init" "$LAB_DIR/guest/mkinitramfs.sh" "$LAB_DIR/guest/mkqemu.sh" "$ROOT/lab/src/"
    in_chroot /bin/bash /lab/src/mkinitramfs.sh "$KVER" /lab/out "$COMPRESS"
    phase_done
    phase qemu-bundle
    in_chroot /bin/bash /lab/src/mkqemu.sh /lab/out/qemu
    phase_done

    rm -rf "$OUT.new"
    mkdir -p "$OUT.new"
    cp "$ROOT/boot/vmlinuz-$KVER" "$OUT.new/vmlinuz"
    phase vmlinux
    # Uncompressed ELF vmlinux: qemu boots it through the PVH entry point,
    # which skips the xz decompressor (about 3 s under TCG). boot.sh uses it
    # when present, else vmlinuz.
    in_chroot /bin/sh -c '
        set -e
        v=/boot/vmlinuz-'"$KVER"'
        pos=$(LC_ALL=C grep -obUaP "\xfd7zXZ\x00" "$v" | head -1 | cut -d: -f1)
        [ -n "$pos" ] || { echo "vmlinuz is not xz-compressed" >&2; exit 1; }
        tail -c +$((pos + 1)) "$v" | xz -dc --single-stream >/lab/out/vmlinux
        [ "$(head -c 4 /lab/out/vmlinux | od -An -c | tr -d " ")" = "177ELF" ]
    ' && mv "$ROOT/lab/out/vmlinux" "$OUT.new/vmlinux" ||
        lab_log "WARNING: could not extract vmlinux; boot.sh will use vmlinuz"
    phase_done
    mv "$ROOT/lab/out/initramfs.img" "$ROOT/lab/out/qemu" "$ROOT/lab/out/manifest.txt" "$OUT.new/"
    echo "$STAMP_WANT" >"$OUT.new/stamp"
    rm -rf "$OUT"
    mv "$OUT.new" "$OUT"
    rm -rf "$ROOT/lab"
fi
ln -sfn "$KEY" "$CACHE/$LAB_CURRENT_LINK"

# sanity: the bundled qemu runs on this host
"$OUT/qemu/qemu-system-x86_64" --version | head -1 >&2 || lab_die "bundled qemu does not run"
lab_log "kernel $KVER, zfs $ZFS_PKG_VER"
lab_log "images: $OUT ($(du -sh "$OUT/initramfs.img" | cut -f1) initramfs)"
lab_log "total build.sh time: $(lab_elapsed "$T_ALL")s"
