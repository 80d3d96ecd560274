#!/usr/bin/env bash
# Boot the lab nodes pve1 (node A) and pve2 (node B), and pve3 (node C) in a
# three-node lab, in the background and wait until each answers `ssh ... true`.
#
# usage: tests/lab/boot.sh            (build first: tests/lab/build.sh)
#
# env (defaults in brackets):
#   LAB_CACHE          image cache [${XDG_CACHE_HOME:-~/.cache}/zfs-nfs-replica-lab]
#   LAB_IMAGE_DIR      image dir [<cache>/current, or <cache>/current-backports
#                      with LAB_ZFS_SUITE=bookworm-backports]
#   LAB_RUN_DIR        run dir: pid files, consoles, keys, ssh_config [<target>/lab/run]
#   LAB_SSH_PORT_A     host port forwarded to pve1:22 [10022]
#   LAB_SSH_PORT_B     host port forwarded to pve2:22 [10023]
#   LAB_SSH_PORT_C     host port forwarded to pve3:22 [10026] (three nodes)
#   LAB_NODES          the nodes: "pve1 pve2" or "pve1 pve2 pve3" [pve1 pve2]
#   LAB_LINK_PORT      127.0.0.1 UDP ports carrying the nodes' private link.
#                      Two nodes: this one (pve1's end) and the next (pve2's)
#                      [10024]. Three nodes: one segment, UDP multicast group
#                      230.0.0.1 on this port, over loopback (every node sees
#                      every frame, as on a switch). Datagrams either way, so
#                      any node can be killed and booted again
#   LAB_SHARE          host dir shared read-only at /mnt/host [cargo target dir]
#   LAB_MEM            guest RAM in MiB [1024]
#   LAB_POOLS          pools created at boot [zpool1,zpool2] ("none": no pools)
#   LAB_POOL_SIZE      size of each pool's sparse file (guest tmpfs) [512M]
#   LAB_ARC_MAX        zfs_arc_max in bytes [268435456]
#   LAB_BOOT_TIMEOUT   seconds until both nodes must answer ssh [120]; on
#                      timeout the nodes are stopped unless LAB_KEEP_ON_FAIL=1
#   LAB_APPEND         extra kernel command line
#   LAB_API_PORT_A/B/C if set: 127.0.0.1 port of pve1's/pve2's/pve3's Proxmox API stand-in,
#                      reachable in that node at https://10.0.2.100:8006 (qemu guestfwd)
#   LAB_KERNEL         vmlinux (PVH boot, default) or vmlinuz (bzImage)
#   LAB_DISKS          1: the pools (and a small `labsys` disk for what a node
#                      keeps on its root filesystem) are virtio disks backed by
#                      sparse files in <run>/disks/, so a node can be killed
#                      and booted again with its data (guest/init) [0]
#   LAB_ONLY           boot only this node (the others keep running): a node
#                      killed by a test comes back
#   LAB_CPU            qemu -cpu model [qemu64]: the plain x86-64 model makes
#                      the libraries pick plain code paths, which TCG runs
#                      faster than the AVX2/AES-NI ones it emulates for
#                      `-cpu max` (zfs commands ~25% faster, measured)
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IMG=$(realpath -m "${LAB_IMAGE_DIR:-$LAB_CACHE/$LAB_CURRENT_LINK}")
RUN=$LAB_RUN
QEMU=$IMG/qemu/qemu-system-x86_64
PORT_A=${LAB_SSH_PORT_A:-10022}
PORT_B=${LAB_SSH_PORT_B:-10023}
PORT_C=${LAB_SSH_PORT_C:-10026}
LINK_PORT=${LAB_LINK_PORT:-10024}
SHARE=$(realpath -m "${LAB_SHARE:-$TARGET_DIR}")
MEM=${LAB_MEM:-1024}
POOLS=${LAB_POOLS:-zpool1,zpool2}
POOL_SIZE=${LAB_POOL_SIZE:-512M}
ARC_MAX=${LAB_ARC_MAX:-268435456}
TIMEOUT=${LAB_BOOT_TIMEOUT:-120}
read -r -a NODES <<<"$(tr ',' ' ' <<<"${LAB_NODES:-pve1 pve2}")"
case "${NODES[*]}" in
"pve1 pve2" | "pve1 pve2 pve3") ;;
*) lab_die "LAB_NODES: \"pve1 pve2\" or \"pve1 pve2 pve3\", not \"${NODES[*]}\"" ;;
esac
declare -A PORT=([pve1]=$PORT_A [pve2]=$PORT_B [pve3]=$PORT_C)
declare -A LINK_IP=([pve1]=192.168.100.10 [pve2]=192.168.100.20 [pve3]=192.168.100.30)
declare -A IDX=([pve1]=1 [pve2]=2 [pve3]=3)
declare -A API_FWD=()
# `cmd:` spawns one relay per guest connection; a `tcp:` chardev would be a
# single shared stream, and the tool opens several connections at once.
[[ -n "${LAB_API_PORT_A:-}" ]] && API_FWD[pve1]=",guestfwd=tcp:10.0.2.100:8006-cmd:socat - TCP:127.0.0.1:$LAB_API_PORT_A"
[[ -n "${LAB_API_PORT_B:-}" ]] && API_FWD[pve2]=",guestfwd=tcp:10.0.2.100:8006-cmd:socat - TCP:127.0.0.1:$LAB_API_PORT_B"
[[ -n "${LAB_API_PORT_C:-}" ]] && API_FWD[pve3]=",guestfwd=tcp:10.0.2.100:8006-cmd:socat - TCP:127.0.0.1:$LAB_API_PORT_C"

# the uncompressed vmlinux (PVH boot) starts ~3 s faster under TCG than the bzImage
KERNEL=$IMG/${LAB_KERNEL:-vmlinux}
[[ -f "$KERNEL" ]] || KERNEL=$IMG/vmlinuz
[[ -f "$KERNEL" && -f "$IMG/initramfs.img" && -x "$QEMU" ]] ||
    lab_die "no lab images in $IMG: run tests/lab/build.sh first"
command -v ssh >/dev/null && command -v ssh-keygen >/dev/null ||
    lab_die "ssh/ssh-keygen not found on the host (apt-get install openssh-client)"
mkdir -p "$RUN/guest" "$SHARE"

ssh_node() { ssh -F "$RUN/ssh_config" "$@"; }
running() { local p="$RUN/$1.pid"; lab_is_our_qemu "$(cat "$p" 2>/dev/null)" "$p"; }

# ---- key pair and ssh_config (kept across boots)
if [[ ! -f "$RUN/id_ed25519" ]]; then
    ssh-keygen -q -t ed25519 -N '' -C zfs-lab -f "$RUN/id_ed25519"
fi
cp "$RUN/id_ed25519.pub" "$RUN/guest/authorized_keys"
cp "$RUN/id_ed25519" "$RUN/id_ed25519.pub" "$RUN/guest/"
cat >"$RUN/ssh_config" <<EOF
# generated by tests/lab/boot.sh: ssh -F $RUN/ssh_config pve1
Host pve1
    HostName 127.0.0.1
    Port $PORT_A
Host pve2
    HostName 127.0.0.1
    Port $PORT_B
Host pve3
    HostName 127.0.0.1
    Port $PORT_C
Host *
    User root
    IdentityFile $RUN/id_ed25519
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
    ConnectTimeout 5
EOF
cat >"$RUN/lab.env" <<EOF
LAB_RUN_DIR=$RUN
LAB_SSH_CONFIG=$RUN/ssh_config
LAB_SSH_KEY=$RUN/id_ed25519
LAB_PVE1_PORT=$PORT_A
LAB_PVE2_PORT=$PORT_B
LAB_PVE1_LINK_IP=${LINK_IP[pve1]}
LAB_PVE2_LINK_IP=${LINK_IP[pve2]}
LAB_NODES="${NODES[*]}"
LAB_HOST_SHARE=$SHARE
LAB_GUEST_SHARE=/mnt/host
EOF

DISKS=${LAB_DISKS:-0}
# One MBR partition spanning a new disk image from sector 2048: ZFS given
# a whole disk partitions it itself and then waits for udev (which the
# guest has not) to show the partition; given a partition it uses it as is.
mbr_partition() {
    local img=$1 sectors le
    sectors=$(($(stat -c %s "$img") / 512 - 2048))
    le=$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((sectors & 255)) $((sectors >> 8 & 255)) \
        $((sectors >> 16 & 255)) $((sectors >> 24 & 255)))
    # boot flag, CHS start, type 0x83, CHS end, LBA start 2048, sectors
    printf "\\x00\\x00\\x02\\x00\\x83\\xfe\\xff\\xff\\x00\\x08\\x00\\x00$le" |
        dd of="$img" bs=1 seek=446 conv=notrunc status=none
    printf '\x55\xaa' | dd of="$img" bs=1 seek=510 conv=notrunc status=none
}
# The disks of a node: -drive/-device arguments, files created on first use.
disk_args() {
    local n=$1 i=8 p
    [[ $DISKS == 1 ]] || return 0
    mkdir -p "$RUN/disks"
    for p in labsys $(tr ',' ' ' <<<"$POOLS"); do
        [[ $p == none ]] && continue
        local img=$RUN/disks/$n-$p.img size=$POOL_SIZE
        [[ $p == labsys ]] && size=128M # ZFS needs 64M; the partition starts at 1M
        [[ -f $img ]] || { truncate -s "$size" "$img" && mbr_partition "$img"; }
        printf -- '-drive\nfile=%s,if=none,id=d%s,format=raw,cache=unsafe\n-device\nvirtio-blk-pci,drive=d%s,serial=%s,addr=0x%x\n' \
            "$img" "$i" "$i" "$p" "$i"
        i=$((i + 1))
    done
}

# ---- already running?
n_running=0
for n in "${NODES[@]}"; do running "$n" && n_running=$((n_running + 1)); done
START=()
if [[ -n "${LAB_ONLY:-}" ]]; then
    running "$LAB_ONLY" && lab_die "$LAB_ONLY is running already"
    START=("$LAB_ONLY")
elif ((n_running == ${#NODES[@]})); then
    lab_log "every node already running (tests/lab/stop.sh stops them)"
elif ((n_running > 0)); then
    lab_die "only some lab nodes are running: run tests/lab/stop.sh first"
else
    for n in "${NODES[@]}"; do
        lab_port_listening "${PORT[$n]}" && lab_die "host port ${PORT[$n]} is already in use (set LAB_SSH_PORT_A/B/C, LAB_LINK_PORT)"
    done
    START=("${NODES[@]}")
fi
if ((${#START[@]})); then
    T0=$(lab_now)
    for n in "${START[@]}"; do
        i=${IDX[$n]}
        # The link: UDP datagrams between two local ports (pve1's, then
        # pve2's), so either end can die and come back; with three nodes, a
        # multicast group on loopback that every node joins.
        if ((${#NODES[@]} > 2)); then
            link="mcast=230.0.0.1:$LINK_PORT,localaddr=127.0.0.1"
        elif [[ $n == pve1 ]]; then
            link="udp=127.0.0.1:$((LINK_PORT + 1)),localaddr=127.0.0.1:$LINK_PORT"
        else
            link="udp=127.0.0.1:$LINK_PORT,localaddr=127.0.0.1:$((LINK_PORT + 1))"
        fi
        mapfile -t disks < <(disk_args "$n")
        rm -f "$RUN/$n.pid" "$RUN/$n.qmp"
        : >"$RUN/$n.console"
        # -daemonize returns once qemu is initialised (so pve1's link socket is
        # listening before pve2 connects); -nographic is incompatible with it,
        # so the serial console goes to a file and there is no monitor on stdio
        # (a QMP socket is available instead).
        if ! "$QEMU" -name "$n,process=lab-$n" \
            -accel tcg -cpu "${LAB_CPU:-qemu64}" -m "$MEM" -smp 1 \
            -nodefaults -display none -no-reboot \
            -serial "file:$RUN/$n.console" \
            -qmp "unix:$RUN/$n.qmp,server=on,wait=off" \
            -kernel "$KERNEL" -initrd "$IMG/initramfs.img" \
            -append "console=ttyS0 panic=-1 quiet lab.node=$n lab.ip=${LINK_IP[$n]} lab.pools=$POOLS lab.poolsize=$POOL_SIZE lab.arcmax=$ARC_MAX lab.disks=$DISKS ${LAB_APPEND:-}" \
            -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${PORT[$n]}-:22${API_FWD[$n]:-}" \
            -device "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:0$i,addr=0x3,romfile=" \
            -netdev "socket,id=n1,$link" \
            -device "virtio-net-pci,netdev=n1,mac=52:54:00:01:00:0$i,addr=0x4,romfile=" \
            -device virtio-rng-pci,addr=0x5 \
            -fsdev "local,id=fs0,path=$SHARE,security_model=none,readonly=on" \
            -device virtio-9p-pci,fsdev=fs0,mount_tag=host,addr=0x6 \
            -fsdev "local,id=fs1,path=$RUN/guest,security_model=none,readonly=on" \
            -device virtio-9p-pci,fsdev=fs1,mount_tag=lab,addr=0x7 \
            "${disks[@]}" \
            -daemonize -pidfile "$RUN/$n.pid" >"$RUN/$n.qemu.log" 2>&1; then
            cat "$RUN/$n.qemu.log" >&2
            "$LAB_DIR/stop.sh" >/dev/null 2>&1 || true
            lab_die "qemu for $n failed to start"
        fi
        lab_log "$n: qemu pid $(cat "$RUN/$n.pid"), ssh port ${PORT[$n]}, console $RUN/$n.console"
    done
fi

# ---- wait for ssh on every node
T_WAIT=$(lab_now)
deadline=$((SECONDS + TIMEOUT))
declare -A up=()
WAIT_FOR=("${NODES[@]}")
[[ -n "${LAB_ONLY:-}" ]] && WAIT_FOR=("$LAB_ONLY")
while ((${#up[@]} < ${#WAIT_FOR[@]})); do
    for n in "${WAIT_FOR[@]}"; do
        [[ -n "${up[$n]:-}" ]] && continue
        if ! running "$n"; then
            tail -30 "$RUN/$n.console" >&2 || true
            "$LAB_DIR/stop.sh" >/dev/null 2>&1 || true
            lab_die "$n: qemu exited during boot (console: $RUN/$n.console)"
        fi
        if ssh_node -o ConnectTimeout=3 "$n" true </dev/null >/dev/null 2>&1; then
            up[$n]=1
            lab_log "$n: ssh up after $(lab_elapsed "${T0:-$T_WAIT}")s"
        fi
    done
    ((${#up[@]} == ${#WAIT_FOR[@]})) && break
    if ((SECONDS >= deadline)); then
        for n in "${WAIT_FOR[@]}"; do
            [[ -n "${up[$n]:-}" ]] && continue
            echo "---- $n console (last 30 lines) ----" >&2
            tail -30 "$RUN/$n.console" >&2 || true
        done
        if [[ "${LAB_KEEP_ON_FAIL:-0}" == 1 ]]; then
            lab_die "lab nodes not reachable over ssh within ${TIMEOUT}s (left running: tests/lab/stop.sh)"
        fi
        "$LAB_DIR/stop.sh" >/dev/null 2>&1 || true
        lab_die "lab nodes not reachable over ssh within ${TIMEOUT}s (stopped; LAB_KEEP_ON_FAIL=1 keeps them)"
    fi
    sleep 0.5
done

echo "ZFS lab is up ($(lab_elapsed "${T0:-$T_WAIT}")s): images $IMG"
for n in "${NODES[@]}"; do
    echo "  ssh -F $RUN/ssh_config $n      # host port ${PORT[$n]}, link ${LINK_IP[$n]}"
done
cat <<EOF
  inside a node: ssh pve1 / ssh pve2 / ssh pve3 go over the private link (eth1)
  host dir $SHARE is /mnt/host (read-only) in every node
  consoles: $RUN/<node>.console; env: $RUN/lab.env
  stop: $LAB_DIR/stop.sh
EOF
