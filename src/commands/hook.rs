//! `zfs-nfs-replica hook <vmid> <phase>`: the guest's Proxmox hookscript.
//!
//! `pre-start` promotes this node when the master checks (counting the
//! guest as starting here) agree: after a planned migration the old master
//! first hands its last writes over (`src/handover.rs`), then the pools
//! become writable and sanoid takes snapshots here, without waiting for the
//! timer. `post-stop` makes this node a standby at once (`standby`): the
//! guest no longer writes here. The hook never fails the guest's start: everything is bounded by
//! `[hook] handover_timeout` + `[hook] timeout`, and the process always
//! exits 0 (see `main`).

use tracing::{info, warn};

use crate::cli::HookArgs;
use crate::config::Config;
use crate::pve::Role;
use crate::pve::{self, Purpose};
use crate::report::RoleName;
use crate::role;
use crate::runner::{Runner, SystemRunner};
use crate::state::{self, Promotion};

pub async fn hook(cfg: &Config, args: &HookArgs) {
    if args.vmid != cfg.cluster.guest {
        info!(
            "hook for guest {} ignored: the configured guest is {}",
            args.vmid, cfg.cluster.guest
        );
        return;
    }
    match args.phase.as_str() {
        "pre-start" => {
            // A handover may take its own time first, then the promotion.
            let limit = cfg.hook.timeout.get() + cfg.hook.handover_timeout.get();
            let p = match tokio::time::timeout(limit, promote(cfg)).await {
                Ok(p) => p,
                Err(_) => {
                    let msg = format!(
                        "gave up after {}s ([hook] timeout); the guest starts anyway and the next timer run decides",
                        limit.as_secs()
                    );
                    warn!("pre-start: {msg}");
                    promotion(cfg, "?", false, Vec::new(), vec![msg])
                }
            };
            if let Err(e) = state::record_promotion(&cfg.paths.state_dir, &p) {
                warn!("pre-start: cannot record the promotion: {e}");
            }
        }
        // The guest no longer writes here: this node is not master any
        // more until a start here promotes it again (a restart in place, a
        // migration back). Sanoid stops snapshotting and the datasets become
        // read-only at once, also when the node the guest moves to cannot
        // reach this one for a handover (what is here then is kept as a
        // divergence, and must not grow).
        "post-stop" => {
            info!(
                "guest {} stopped on this node: this node becomes a standby until the guest starts here again",
                args.vmid
            );
            if tokio::time::timeout(cfg.hook.timeout.get(), super::standby::standby(cfg))
                .await
                .is_err()
            {
                warn!(
                    "post-stop: gave up after {}s ([hook] timeout); the next timer run decides",
                    cfg.hook.timeout.get().as_secs()
                );
            }
        }
        "post-start" | "pre-stop" => {}
        other => warn!("hook phase `{other}` unknown: nothing done"),
    }
}

fn promotion(
    cfg: &Config,
    node: &str,
    promoted: bool,
    actions: Vec<String>,
    errors: Vec<String>,
) -> Promotion {
    Promotion {
        time: crate::units::now_stamp(),
        node: node.to_string(),
        guest: cfg.cluster.guest,
        promoted,
        actions,
        errors,
    }
}

async fn promote(cfg: &Config) -> Promotion {
    let d = pve::decide(cfg, Purpose::PreStart).await;
    match d.role {
        Role::Master => {}
        Role::Standby { master } => {
            let msg = format!(
                "not promoted: the checks place guest {} on {master}",
                cfg.cluster.guest
            );
            warn!("pre-start: {msg}");
            return promotion(cfg, &d.local, false, Vec::new(), vec![msg]);
        }
        Role::Unsure { reason } => {
            let msg = format!("not promoted: {reason}");
            warn!("pre-start: {msg}");
            return promotion(cfg, &d.local, false, Vec::new(), vec![msg]);
        }
    }
    let runner = SystemRunner {
        kill_grace: cfg.timeouts.kill_grace.get(),
    };
    let mut ch = role::Changes::default();
    // A planned migration: the guest ran on another node, which still
    // holds the writes made after its last snapshot. It hands them over
    // before anything here becomes writable. Which node: the master this
    // node last knew as its standby; else (its own record says master, or
    // none: it crashed as master and booted again, or the guest restarts
    // in place) every other node, each of which hands over only if it was
    // master itself (a restart in place costs one answer per node).
    let previous = state::load_role(&cfg.paths.state_dir).ok().flatten();
    let from: Vec<String> = match previous {
        Some(r) if r.role == RoleName::Standby && r.master != d.local => vec![r.master],
        _ => cfg
            .cluster
            .nodes
            .keys()
            .filter(|n| n.as_str() != d.local)
            .map(|n| n.to_string())
            .collect(),
    };
    let started = std::time::Instant::now();
    for old in &from {
        let budget = crate::handover::within(cfg.hook.handover_timeout.get(), started.elapsed());
        let r = super::handover::pull(&runner, cfg, old, &d.local, budget).await;
        if r.complete() {
            info!("pre-start: {}", r.line());
            ch.done.push(r.line());
        } else {
            warn!(
                "pre-start: {}; promoting now: what {old} holds beyond what arrived is a divergence (`zfs-nfs-replica diverged`)",
                r.line(),
            );
            ch.errors.push(r.line());
        }
    }
    // From here on this node is about to be master: an answer "standby"
    // it gave a peer a moment ago no longer lets anything be written here.
    super::role::forget_answer(cfg);
    if !from.is_empty() {
        // Whatever happened, no receive may run into pools about to be
        // written here.
        let stop = crate::zfs::Op::StopReceives {
            roots: cfg.pools.iter().map(|p| p.name.to_string()).collect(),
        };
        if let Err(e) = runner
            .output(&stop.to_cmd(), cfg.timeouts.command.get())
            .await
        {
            ch.errors.push(format!("`{stop}`: {e}"));
        }
    }
    // This node is master from now on, as its next run would record it: a
    // migration away from here asks this node for a handover.
    if let Err(e) = state::record_role(&cfg.paths.state_dir, RoleName::Master, &d.local) {
        ch.errors
            .push(format!("cannot record this node's role: {e}"));
    }
    let promoted = role::make_writable(&runner, cfg, &[], false, cfg.hook.timeout.get()).await;
    ch.done.extend(promoted.done);
    ch.errors.extend(promoted.errors);
    match role::set_autosnap(cfg, true, false) {
        Ok(Some(line)) => ch.done.push(format!("sanoid: {line}")),
        Ok(None) => {}
        Err(e) => ch.errors.push(format!("sanoid config left untouched: {e}")),
    }
    role::log_changes("pre-start", &ch);
    info!(
        "pre-start: promoted {} to master for guest {} ({} change(s), {} error(s))",
        d.local,
        cfg.cluster.guest,
        ch.done.len(),
        ch.errors.len()
    );
    promotion(cfg, &d.local, true, ch.done, ch.errors)
}
