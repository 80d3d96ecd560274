#!/usr/bin/env bash
# Smoke test of a booted lab (tests/lab/boot.sh): real OpenZFS operations on
# pve1 and pve2 and replication between them over the private link.
# Prints every command and its verbatim output. Re-runnable: it destroys the
# datasets it creates (zpool1/smoke*, zpool2/smoke-empty) first.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CFG=$LAB_RUN/ssh_config
[[ -f "$CFG" ]] || lab_die "no $CFG: boot the lab first (tests/lab/boot.sh)"

n_fail=0
run() { # run NODE 'remote command': print it, run it, print output
    local node=$1 cmd=$2 t rc=0
    printf '\n### %s$ %s\n' "$node" "$cmd"
    t=$(lab_now)
    ssh -F "$CFG" "$node" "$cmd" 2>&1 || rc=$?
    printf '### (exit %d, %ss)\n' "$rc" "$(lab_elapsed "$t")"
    return 0
}
check() { # check NAME NODE 'remote command' — must exit 0
    local name=$1 node=$2 cmd=$3
    if ssh -F "$CFG" "$node" "$cmd" >/dev/null 2>&1; then
        echo "ok   - $name"
    else
        echo "FAIL - $name"
        n_fail=$((n_fail + 1))
    fi
}

for n in pve1 pve2; do
    run "$n" 'zfs destroy -r zpool1/smoke 2>/dev/null; zfs destroy -r zpool1/smoke-enc 2>/dev/null; zfs destroy -r zpool2/smoke-empty 2>/dev/null; true'
done

run pve1 'hostname; uname -r; zfs version; echo PATH=$PATH; ls -l /bin/sh'
run pve1 'zpool list'
run pve2 'zpool list'
run pve1 'zfs create zpool1/smoke && zfs snapshot zpool1/smoke@s1 && zfs list -t all -r -o name,used,referenced,mountpoint,mounted zpool1/smoke'
run pve1 'zfs send zpool1/smoke@s1 | ssh pve2 zfs recv -u zpool1/smoke'
run pve2 'zfs list -t all -r -o name,used,referenced zpool1/smoke'

# ---- interrupted incremental receive + resume with send -t
run pve1 'dd if=/dev/urandom of=/zpool1/smoke/data bs=1M count=64 status=none && zfs snapshot zpool1/smoke@s2 && zfs list -t all -r -o name,used,referenced zpool1/smoke'
run pve1 'zfs send -i @s1 zpool1/smoke@s2 | head -c 20000000 | ssh pve2 zfs recv -s -u zpool1/smoke'
run pve2 'zfs get -H -o value receive_resume_token zpool1/smoke'
TOKEN=$(ssh -F "$CFG" pve2 'zfs get -H -o value receive_resume_token zpool1/smoke')
run pve1 "zfs send -nvP -t $TOKEN"
run pve1 "zfs send -t $TOKEN | ssh pve2 zfs recv -s -u zpool1/smoke"
run pve2 'zfs get -H -o value receive_resume_token zpool1/smoke; zfs list -t all -r -o name,used,referenced zpool1/smoke'

# ---- progress output of zfs send -v -P (stderr, one line per second)
run pve1 'zfs send -v -P zpool1/smoke@s2 2>/tmp/send-progress.txt | ssh pve2 zfs recv -u -F zpool1/smoke-copy; cat /tmp/send-progress.txt'
run pve1 'zfs send -nvP -i @s1 zpool1/smoke@s2; zfs send -nvP -I @s1 zpool1/smoke@s2'

# ---- holds
run pve1 'zfs hold lab_keep zpool1/smoke@s2 && zfs holds -H zpool1/smoke@s2; zfs destroy zpool1/smoke@s2; zfs release lab_keep zpool1/smoke@s2 && zfs holds -H zpool1/smoke@s2'

# ---- encrypted dataset, raw send
run pve1 'echo lab-passphrase-1 | zfs create -o encryption=on -o keyformat=passphrase zpool1/smoke-enc && echo secret >/zpool1/smoke-enc/f && zfs snapshot zpool1/smoke-enc@s1 && zfs get -H -o property,value encryption,keyformat,keystatus zpool1/smoke-enc'
run pve1 'zfs send -w zpool1/smoke-enc@s1 | ssh pve2 zfs recv -u zpool1/smoke-enc'
run pve2 'zfs get -H -o property,value encryption,keystatus,encryptionroot zpool1/smoke-enc; echo lab-passphrase-1 | zfs load-key zpool1/smoke-enc && zfs mount zpool1/smoke-enc && cat /zpool1/smoke-enc/f'

# ---- referenced of a fresh empty filesystem on a fresh pool
run pve2 'zfs create zpool2/smoke-empty && zfs list -Hp -o name,referenced,written zpool2 zpool2/smoke-empty'

# ---- host share, tools, sanoid, sshd log
# shellcheck disable=SC1091
. "$LAB_RUN/lab.env"
case "$LAB_RUN/" in
"$LAB_HOST_SHARE"/*) T9=$LAB_RUN/9p-test ;; # the run dir is inside the share (default)
*) T9=$LAB_HOST_SHARE/lab-9p-test ;;
esac
G9=/mnt/host/${T9#"$LAB_HOST_SHARE"/}
mkdir -p "$T9"
cp /bin/true "$T9/true"
run pve1 "$G9/true && echo 'host /bin/true ran from $G9/true'"
run pve2 'for t in sha256sum dd timeout sleep kill pgrep ps ssh perl sanoid syncoid mbuffer pv; do printf "%s " "$(command -v $t)"; done; echo; echo x | sha256sum; timeout 1 sleep 5; echo "timeout exit=$?"'
run pve2 'sanoid --version && sanoid --cron --verbose 2>&1 | tail -3'
run pve1 'mkdir -p /tmp/sanoid-smoke && cp /etc/sanoid/sanoid.conf /tmp/sanoid-smoke/ && printf "[zpool1/smoke]\n\tuse_template = lab\n" >>/tmp/sanoid-smoke/sanoid.conf && sanoid --configdir=/tmp/sanoid-smoke --take-snapshots --verbose 2>&1 | tail -4 && zfs list -H -t snapshot -o name -r zpool1/smoke | grep autosnap'
run pve2 'grep -c "Starting session: command" /var/log/sshd.log; grep "Starting session: command" /var/log/sshd.log | tail -1'

echo
check "pools exist on pve1" pve1 'zpool list zpool1 zpool2'
check "pools exist on pve2" pve2 'zpool list zpool1 zpool2'
check "replicated snapshot s2 on pve2" pve2 'zfs list zpool1/smoke@s2'
check "no resume token left on pve2" pve2 '[ "$(zfs get -H -o value receive_resume_token zpool1/smoke)" = - ]'
check "raw-received dataset is encrypted" pve2 '[ "$(zfs get -H -o value encryption zpool1/smoke-enc)" = aes-256-gcm ]'
check "progress lines in send -v -P output" pve1 'grep -qE "^[0-9]{2}:[0-9]{2}:[0-9]{2}	[0-9]+	zpool1/smoke@s2$" /tmp/send-progress.txt'
check "9p share readable" pve1 "test -x $G9/true"
check "sanoid took snapshots" pve1 'zfs list -H -t snapshot -o name -r zpool1/smoke | grep -q autosnap_'
echo "$((8 - n_fail)) passed, $n_fail failed"
((n_fail == 0))
