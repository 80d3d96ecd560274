#!/bin/bash
# Runs INSIDE the lab build chroot (called by tests/lab/build.sh).
# usage: mkinitramfs.sh KVER OUTDIR COMPRESS
# Assembles the guest root filesystem (merged-/usr layout) from the chroot's
# installed packages and writes OUTDIR/initramfs.img and OUTDIR/manifest.txt.
set -euo pipefail
KVER=$1 OUTDIR=$2 COMPRESS=${3:-gzip}
SRC=$(cd "$(dirname "$0")" && pwd)
S=/lab/stage
ML=/usr/lib/x86_64-linux-gnu
rm -rf "$S"
mkdir -p "$S" "$OUTDIR"
cd "$S"
mkdir -p usr/bin usr/sbin "usr/lib/x86_64-linux-gnu" usr/lib64 usr/share etc/ssh etc/lab \
    etc/sanoid root/.ssh proc sys dev run tmp var/log var/empty var/cache/sanoid var/lib \
    mnt/host mnt/lab pools
ln -s usr/bin bin
ln -s usr/sbin sbin
ln -s usr/lib lib
ln -s usr/lib64 lib64
ln -s ../run var/run
chmod 700 root root/.ssh
chmod 1777 tmp
chmod 755 var/empty
mknod -m 600 dev/console c 5 1
mknod -m 666 dev/null c 1 3

declare -A copied=()
# canonical (merged-/usr) path of $1: directory resolved, file name kept
canon() { echo "$(readlink -f "$(dirname "$1")")/$(basename "$1")"; }
copy_file() { # copy_file SRC [DST]: dereferenced copy into the stage
    local src=$1 dst=${2:-}
    [[ -n "$dst" ]] || dst=$(canon "$src")
    [[ -n "${copied[$dst]:-}" ]] && return 0
    copied[$dst]=1
    mkdir -p "$S$(dirname "$dst")"
    cp -L --preserve=mode "$src" "$S$dst"
}
copy_libs() { # the shared libraries ldd lists for ELF file $1
    local lib
    for lib in $(ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
        copy_file "$lib"
    done
}
copy_bin() { # copy_bin PATH...: executables plus their libraries
    local b
    for b in "$@"; do
        [[ -e "$b" ]] || { echo "mkinitramfs: missing $b" >&2; exit 1; }
        copy_file "$b"
        copy_libs "$b"
    done
}

# ---- programs
# setpriv (util-linux, not busybox's): the lab runs the tool within the
# systemd unit's capability bounding set (tests/common/lab.rs unit_limits).
for b in busybox bash sshd ssh ssh-keygen scp zfs zpool zdb zstream perl pv mbuffer lzop setpriv; do
    p=$(command -v "$b") || { echo "mkinitramfs: $b not installed" >&2; exit 1; }
    copy_bin "$p"
done
copy_bin /usr/lib/openssh/sftp-server
# OpenSSH 9.8+ (Debian 13) splits the server: sshd execs these per connection.
for b in /usr/lib/openssh/sshd-session /usr/lib/openssh/sshd-auth; do
    [[ -e $b ]] && copy_bin "$b"
done
# Debian userland where behaviour matters (as on a Proxmox node): GNU
# coreutils/grep/sed/findutils/gzip, procps (ps/pgrep/pkill: sanoid needs
# `ps -p PID -o args=`), mawk as awk, and dash as /bin/sh. busybox only fills
# the gaps (ip, hostname, insmod, mount, init, ...), see below.
for f in $(dpkg -L coreutils grep sed findutils gzip procps mawk dash | grep -E '^(/usr)?/s?bin/[^/]+$'); do
    [[ -f "$f" && -x "$f" ]] && copy_bin "$f"
done
copy_bin /usr/bin/awk
copy_file /usr/bin/ldd
ln -s zstream "$S/usr/sbin/zstreamdump"
# libgcc_s: glibc dlopen()s it for pthread_cancel/unwinding (zfs send -t
# aborts without it) and Rust binaries link it. Also libssl/libz for Rust
# binaries built on the host that link them.
for l in libgcc_s.so.1 libssl.so.3 libcrypto.so.3 libz.so.1 libstdc++.so.6; do
    [[ -e $ML/$l ]] && copy_file "$ML/$l"
done

# ---- busybox applets for everything not provided by a real binary above
while read -r applet; do
    dst=$(canon "/$applet")
    [[ -e "$S$dst" || -L "$S$dst" ]] && continue
    mkdir -p "$S$(dirname "$dst")"
    ln -s /usr/bin/busybox "$S$dst"
done < <(/usr/bin/busybox --list-full)
ln -sfn dash "$S/usr/bin/sh"

# ---- perl + sanoid (sanoid, syncoid, findoid and their perl modules)
for d in /usr/lib/x86_64-linux-gnu/perl-base /usr/lib/x86_64-linux-gnu/perl/5.* \
    /usr/share/perl/5.* /usr/share/perl5 /usr/lib/x86_64-linux-gnu/perl5; do
    [[ -d "$d" ]] || continue
    mkdir -p "$S$(dirname "$d")"
    cp -a "$d" "$S$(dirname "$d")/"
done
# prune what a runtime does not need: docs, C headers, CJK encodings, CPAN
rm -rf "$S"/usr/share/perl/5.*/pod "$S"/usr/share/perl/5.*/unicore/TestProp.pl \
    "$S"/usr/lib/x86_64-linux-gnu/perl/5.*/CORE/*.h \
    "$S"/usr/lib/x86_64-linux-gnu/perl/5.*/auto/Encode/{CN,JP,KR,TW} \
    "$S"/usr/lib/x86_64-linux-gnu/perl/5.*/Encode/{CN,JP,KR,TW}{,.pm} \
    "$S"/usr/share/perl/5.*/CPAN "$S"/usr/share/perl/5.*/CPAN.pm
find "$S/usr/share/perl"* "$S/usr/lib/x86_64-linux-gnu/perl"* -name '*.pod' -delete
# XS modules' libraries
while read -r so; do copy_libs "$so"; done < <(find "$S/usr/lib/x86_64-linux-gnu/perl"* -name '*.so')
for f in /usr/sbin/sanoid /usr/sbin/syncoid /usr/sbin/findoid; do [[ -e $f ]] && copy_file "$f"; done
[[ -d /usr/share/sanoid ]] && cp -a /usr/share/sanoid "$S/usr/share/"
cat >"$S/etc/sanoid/sanoid.conf" <<'EOF'
# ZFS lab: no dataset is managed by default. Add sections like
#   [zpool1/data]
#       use_template = lab
# (sanoid refuses a file without any section, hence the template below)
[template_lab]
	frequently = 0
	hourly = 24
	daily = 7
	monthly = 0
	yearly = 0
	autosnap = yes
	autoprune = yes
EOF

# ---- kernel modules: zfs + virtio net/rng/blk/9p, in dependency order
MODS="virtio_pci virtio_net virtio_rng virtio_blk 9pnet_virtio 9p zfs"
: >"$S/etc/lab/modules.order"
declare -A seen=()
for m in $MODS; do
    while read -r kind path _; do
        [[ "$kind" == insmod ]] || continue
        [[ -n "${seen[$path]:-}" ]] && continue
        seen[$path]=1
        dst=$(canon "$path")
        case "$dst" in
        *.ko.xz) dst=${dst%.xz}; mkdir -p "$S$(dirname "$dst")"; xz -dc "$path" >"$S$dst" ;;
        *.ko.zst) dst=${dst%.zst}; mkdir -p "$S$(dirname "$dst")"; zstd -qdc "$path" >"$S$dst" ;;
        *.ko.gz) dst=${dst%.gz}; mkdir -p "$S$(dirname "$dst")"; gzip -dc "$path" >"$S$dst" ;;
        *) copy_file "$path" "$dst" ;;
        esac
        echo "$dst" >>"$S/etc/lab/modules.order"
    done < <(modprobe -S "$KVER" --show-depends "$m")
done

# ---- /etc
cat >"$S/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
sshd:x:100:65534::/run/sshd:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$S/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
tty:x:5:
nogroup:x:65534:
EOF
cat >"$S/etc/shadow" <<'EOF'
root:*:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
sshd:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
EOF
chmod 640 "$S/etc/shadow"
echo /bin/bash >"$S/etc/shells"
echo /bin/sh >>"$S/etc/shells"
cat >"$S/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
shadow: files
hosts: files dns
networks: files
protocols: files
services: files
EOF
cp /etc/protocols /etc/services "$S/etc/" 2>/dev/null || true
ln -s /proc/self/mounts "$S/etc/mtab"
cat >"$S/etc/profile" <<'EOF'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=${HOME:-/root}
PS1='\u@\h:\w\$ '
EOF
cp "$S/etc/profile" "$S/root/.bashrc"
cp "$S/etc/profile" "$S/root/.profile"
cat >"$S/etc/ssh/sshd_config" <<'EOF'
# ZFS lab sshd (root login with keys only)
Port 22
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
# DEBUG1 logs "Starting session: command for root ..." per remote command
LogLevel DEBUG1
PidFile /run/sshd.pid
MaxStartups 200:30:400
MaxSessions 200
ClientAliveInterval 0
# OpenSSH 9.x negotiates sntrup761x25519 first: its key exchange costs about
# 1.4 s of emulated CPU per connection under TCG (curve25519: ~0.1 s). Every
# run of the tool opens one connection between the nodes; the tool itself
# takes whatever the peer offers, so this changes the lab's speed only.
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
SetEnv PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
Subsystem sftp internal-sftp
EOF
cat >"$S/root/.ssh/config" <<'EOF'
Host *
    User root
    IdentityFile /root/.ssh/id_ed25519
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
    ConnectTimeout 10
EOF
chmod 600 "$S/root/.ssh/config"
printf '/usr/lib/x86_64-linux-gnu\n/usr/local/lib\n' >"$S/etc/ld.so.conf"
ldconfig -r "$S"

cp "$SRC/init" "$S/init"
chmod 755 "$S/init"
echo "$KVER" >"$S/etc/lab/kernel-release"

# ---- archive
(cd "$S" && find . | LC_ALL=C sort >"$OUTDIR/manifest.txt")
case "$COMPRESS" in
none) comp=(cat) ;;
gzip) comp=(gzip -6) ;;
zstd) comp=(zstd -q -T0 -10) ;;
lz4) comp=(lz4 -q -l -9) ;;
*) echo "unknown compression $COMPRESS" >&2; exit 1 ;;
esac
(cd "$S" && find . | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 | "${comp[@]}") >"$OUTDIR/initramfs.img"
echo "mkinitramfs: $(du -sh "$S" | cut -f1) staged, $(du -h "$OUTDIR/initramfs.img" | cut -f1) $COMPRESS initramfs, $(wc -l <"$S/etc/lab/modules.order") modules" >&2
rm -rf "$S"
