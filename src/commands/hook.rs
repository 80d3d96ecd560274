//! `zfs-nfs-replica hook <vmid> <phase>`: the guest's Proxmox hookscript.
//!
//! `pre-start` promotes this node at once when the master checks (counting
//! the guest as starting here) agree: the pools become writable and sanoid
//! takes snapshots here, without waiting for the timer. The hook never
//! blocks or fails the guest's start: everything is bounded by
//! `[hook] timeout` and the process always exits 0 (see `main`).

use tracing::{info, warn};

use crate::cli::HookArgs;
use crate::config::Config;
use crate::pve::{self, Purpose};
use crate::role::{self, Role};
use crate::runner::SystemRunner;
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
            let limit = cfg.hook.timeout.get();
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
        "post-stop" => info!(
            "guest {} stopped on this node: nothing done here; the next run decides the role",
            args.vmid
        ),
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
        time: crate::state::now_rfc3339(),
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
    let mut ch = role::make_writable(&runner, cfg, false, cfg.hook.timeout.get()).await;
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
