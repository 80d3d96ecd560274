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

use tracing::{info, warn};

use crate::config::Config;
use crate::exit::Exit;
use crate::role;
use crate::runner::SystemRunner;

pub async fn standby(cfg: &Config) -> Exit {
    let mut code = Exit::Ok;
    match role::set_autosnap(cfg, false, false) {
        Ok(Some(done)) => info!("standby: sanoid.conf: {done}"),
        Ok(None) => {}
        Err(e) => {
            warn!("standby: sanoid.conf left as it is: {e}");
            code = Exit::Refused;
        }
    }
    let runner = SystemRunner {
        kill_grace: cfg.timeouts.kill_grace.get(),
    };
    let ch = role::make_readonly(&runner, cfg, &[], false, cfg.timeouts.command.get()).await;
    role::log_changes("standby", &ch);
    if !ch.errors.is_empty() && code == Exit::Ok {
        code = Exit::Transient;
    }
    code
}
