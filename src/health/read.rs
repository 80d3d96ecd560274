//! Reading pool health on one side: one `zpool status -p` and one `zpool
//! list -H -p` for all pools, judged by [`super::assess`].

use std::path::Path;
use std::time::Duration;

use super::{Level, PoolHealth, assess};
use crate::runner::{Runner, stderr_head};
use crate::side::Side;
use crate::zfs::pool::parse_zpool_status;
use crate::zfs::{Op, parse_pool_list};

/// Where udev names disks by their serial numbers.
pub const BY_ID: &str = "/dev/disk/by-id";

/// Which of `disks` are missing under `by_id` (`/dev/disk/by-id`).
pub fn missing_disks(by_id: &Path, disks: &[String]) -> Vec<String> {
    disks
        .iter()
        .filter(|d| !by_id.join(d).exists())
        .cloned()
        .collect()
}

/// Read the health of `pools` on one side: one `zpool status -p` and one
/// `zpool list -H -p` for all of them, at once. `disks` gives, per pool,
/// the by-id names to look for (local side only).
pub async fn read<R: Runner>(
    runner: &R,
    side: Side<'_>,
    pools: &[String],
    disks: &dyn Fn(&str) -> Vec<String>,
    min_free: f64,
    timeout: Duration,
) -> Vec<PoolHealth> {
    if pools.is_empty() {
        return Vec::new();
    }
    let sop = Op::ZpoolStatus {
        pools: pools.to_vec(),
    };
    let lop = Op::PoolList {
        pools: pools.to_vec(),
    };
    let (scmd, lcmd) = (side.cmd(&sop), side.cmd(&lop));
    let (s, l) = tokio::join!(runner.output(&scmd, timeout), runner.output(&lcmd, timeout));
    // A missing pool makes both commands exit 1 but still report the others:
    // parse what they printed, and call a pool that is not in it missing.
    let statuses = match s {
        Ok(o) if !o.stdout.trim().is_empty() => {
            parse_zpool_status(&o.stdout).map_err(|e| format!("`{}`: {e}", side.show(&sop)))
        }
        Ok(o) => Err(format!(
            "`{}` failed: {}",
            side.show(&sop),
            stderr_head(&o.stderr)
        )),
        Err(e) => Err(e.to_string()),
    };
    let spaces = match l {
        Ok(o) => parse_pool_list(&o.stdout).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    pools
        .iter()
        .map(|p| match &statuses {
            Err(e) => PoolHealth::unknown(p, e.clone()),
            Ok(all) => assess(
                p,
                all.iter().find(|s| &s.name == p),
                spaces.iter().find(|s| &s.name == p),
                &disks(p),
                min_free,
            ),
        })
        .collect()
}

/// The zpools the configured pools live in, on the master (`targets`
/// false) or on the standbys (`targets` true), each once, in order.
pub fn zpools(cfg: &crate::config::Config, targets: bool) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for p in &cfg.pools {
        let z = if targets { p.target_zpool() } else { p.zpool() };
        if !v.iter().any(|x| x == z) {
            v.push(z.to_string());
        }
    }
    v
}

/// The health of this config's zpools on one side: the source zpools on
/// the master, the target zpools on a standby. Disks are looked up under
/// `/dev/disk/by-id` on this node only.
pub async fn of_side<R: Runner>(
    runner: &R,
    cfg: &crate::config::Config,
    side: Side<'_>,
    targets: bool,
) -> Vec<PoolHealth> {
    let local = matches!(side, Side::Local);
    let disks = |z: &str| -> Vec<String> {
        if !local {
            return Vec::new();
        }
        let want: Vec<String> = cfg
            .pools
            .iter()
            .filter(|p| (if targets { p.target_zpool() } else { p.zpool() }) == z)
            .flat_map(|p| p.disks.clone())
            .collect();
        missing_disks(Path::new(BY_ID), &want)
    };
    read(
        runner,
        side,
        &zpools(cfg, targets),
        &disks,
        cfg.health.min_free,
        cfg.timeouts.command.get(),
    )
    .await
}

/// Log each pool's health: ok at info, the rest at warn/error.
pub fn log(node: &str, all: &[PoolHealth]) {
    for h in all {
        match h.level {
            Level::Ok => tracing::info!(node = %node, "pool health: {}", h.summary()),
            Level::Warn => tracing::warn!(node = %node, "pool health: {}", h.summary()),
            Level::Fail => tracing::error!(node = %node, "pool health: {}", h.summary()),
        }
    }
}
