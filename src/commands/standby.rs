//! `zfs-nfs-replica standby`: make this node a standby now, without asking
//! anyone: sanoid takes no snapshot of the managed datasets and they become
//! read-only.
//!
//! The boot unit (`zfs-nfs-replica-boot.service`) runs it before sanoid,
//! the guests and HA start. A node coming back (after a crash, a power cut,
//! maintenance) does not know yet who is master: the cluster may have
//! moved the guest while it was away, and its sanoid.conf and datasets are
//! still those of a master. Left so, sanoid would snapshot its copies (a
//! divergence the next run refuses) before the first timer run. If the
//! guest does start here, its `pre-start` hook promotes this node again;
//! otherwise the next timer run decides, as always.

use std::time::Duration;

use tracing::{error, info, warn};

use crate::cmdline::Cmd;
use crate::config::Config;
use crate::exit::Exit;
use crate::role;
use crate::runner::{Runner, SystemRunner};

/// How long `pct status` may take (at boot, before the guests start).
const PCT_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn standby(cfg: &Config) -> Exit {
    let runner = SystemRunner {
        kill_grace: cfg.timeouts.kill_grace.get(),
    };
    // Run by hand (or `systemctl enable --now` of the boot unit) on the
    // node the guest runs on, this would make the datasets it serves
    // read-only under it. At boot the guest cannot run yet.
    let vmid = cfg.cluster.guest;
    if guest_running_here(&runner, vmid).await == Some(true) {
        error!(
            "guest {vmid} runs on this node: it is the master here, and `standby` would make the datasets it serves read-only. \
             `standby` is for a node coming back (zfs-nfs-replica-boot.service runs it at boot, before the guests start). Nothing changed."
        );
        return Exit::Refused;
    }
    let mut code = Exit::Ok;
    match role::set_autosnap(cfg, false, false) {
        Ok(Some(done)) => info!("standby: sanoid.conf: {done}"),
        Ok(None) => {}
        Err(e) => {
            warn!("standby: sanoid.conf left as it is: {e}");
            code = Exit::Refused;
        }
    }
    let ch = role::make_readonly(&runner, cfg, &[], false, cfg.timeouts.command.get()).await;
    role::log_changes("standby", &ch);
    if !ch.errors.is_empty() && code == Exit::Ok {
        code = Exit::Transient;
    }
    code
}

/// Does `pct status VMID` say the guest runs on this node? None when it
/// cannot tell: no `pct` (not a Proxmox node), the guest is not a
/// container of this node, or no answer within [`PCT_TIMEOUT`].
async fn guest_running_here<R: Runner>(runner: &R, vmid: u32) -> Option<bool> {
    let cmd = Cmd::new("pct").args(["status".to_string(), vmid.to_string()]);
    let out = runner.output(&cmd, PCT_TIMEOUT).await.ok()?;
    if !out.success() {
        return None;
    }
    Some(out.stdout.split_whitespace().eq(["status:", "running"]))
}
