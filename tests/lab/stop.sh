#!/usr/bin/env bash
# Stop the lab nodes started by boot.sh: kill each qemu by the pid in its pid
# file (SIGTERM, then SIGKILL after 10 s). A qemu is only killed if its command
# line carries this run dir's -pidfile, so a recycled pid is never hit; a lab
# qemu whose pid file was lost is found the same way.
# Exits non-zero if a lab qemu is still alive afterwards.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUN=$LAB_RUN

pids=()
for n in pve1 pve2 pve3; do
    pidfile=$RUN/$n.pid
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if lab_is_our_qemu "$pid" "$pidfile"; then
        pids+=("$pid")
    fi
    # fallback: a qemu started with this pid file whose pid file is gone/stale
    for d in /proc/[0-9]*; do
        p=${d#/proc/}
        [[ "$p" == "$pid" ]] && continue
        lab_is_our_qemu "$p" "$pidfile" && pids+=("$p")
    done
done

if ((${#pids[@]} == 0)); then
    lab_log "no lab qemu running"
else
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 100); do
        alive=()
        for p in "${pids[@]}"; do [[ -e /proc/$p ]] && alive+=("$p"); done
        ((${#alive[@]} == 0)) && break
        sleep 0.1
    done
    for p in "${pids[@]}"; do
        if [[ -e /proc/$p ]]; then
            lab_log "qemu $p ignored SIGTERM, sending SIGKILL"
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    sleep 0.2
    lab_log "stopped qemu pid(s) ${pids[*]}"
fi
for n in pve1 pve2 pve3; do rm -f "$RUN/$n.pid" "$RUN/$n.qmp"; done

left=()
for n in pve1 pve2 pve3; do
    for d in /proc/[0-9]*; do
        lab_is_our_qemu "${d#/proc/}" "$RUN/$n.pid" && left+=("${d#/proc/}")
    done
done
((${#left[@]} == 0)) || lab_die "lab qemu still alive: ${left[*]}"
