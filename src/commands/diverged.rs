//! `zfs-nfs-replica diverged`: every dataset whose standby copy holds
//! something the master does not (snapshots after the common one,
//! unsnapshotted writes, or no snapshot in common at all), across all
//! pools and standbys, with the evidence, plus what earlier resolves set
//! aside. Read-only; runs on any node: the master lists its standbys, a
//! standby lists itself against the master.

use tracing::{error, info};

use crate::config::Config;
use crate::engine::list_pair;
use crate::exit::Exit;
use crate::pve::Role;
use crate::resolve;
use crate::runner::SystemRunner;
use crate::side::Side;
use crate::ssh::{Peer, Target};

pub async fn diverged(cfg: &Config) -> Exit {
    // One check, as `check` does: this command changes nothing, it only has
    // to know which way replication goes.
    let mut once = cfg.clone();
    once.checks.count = 1;
    let d = crate::pve::decide(&once, crate::pve::Purpose::Run).await;
    let master = match d.role {
        Role::Master => d.local.clone(),
        Role::Standby { master } => master,
        Role::Unsure { reason } => {
            error!("cannot tell which node is the source: nobody is surely master ({reason})");
            return Exit::Refused;
        }
    };
    let runner = SystemRunner {
        kill_grace: cfg.timeouts.kill_grace.get(),
    };
    // The master compares itself with every standby; a standby compares the
    // master with itself.
    let (remote_nodes, local_is_source): (Vec<Target>, bool) = if master == d.local {
        (super::peers(cfg, &d.local), true)
    } else {
        (
            super::peers(cfg, &d.local)
                .into_iter()
                .filter(|t| t.name == master)
                .collect(),
            false,
        )
    };
    let mut code = Exit::Ok;
    let mut found = 0usize;
    for t in remote_nodes {
        let peer = match Peer::connect(&runner, &cfg.ssh, &t, &std::env::temp_dir()).await {
            Ok(p) => p,
            Err(e) => {
                error!("{e}");
                code = code.and(Exit::Transient);
                continue;
            }
        };
        let (src_node, dst_node) = if local_is_source {
            (d.local.as_str(), t.name.as_str())
        } else {
            (t.name.as_str(), d.local.as_str())
        };
        for pool in &cfg.pools {
            let (sroot, droot) = (pool.name.as_str(), pool.target());
            let (sside, dside) = if local_is_source {
                (Side::Local, Side::Remote(&peer))
            } else {
                (Side::Remote(&peer), Side::Local)
            };
            let (src, dst, quarantine) = match list_pair(
                &runner,
                cfg.timeouts.command.get(),
                (sside, sroot),
                (dside, droot),
            )
            .await
            {
                Ok(x) => x,
                Err(e) => {
                    error!("pool {sroot}: {e}");
                    code = code.and(Exit::Transient);
                    continue;
                }
            };
            for e in resolve::evidence(&src, sroot, &dst, droot, droot)
                .iter()
                .filter(|e| e.diverged())
            {
                // Changes that touch no file or block are the next run's to
                // roll back, as the run decides them (the same check).
                if e.kind() == "receiver-modified"
                    && let Some(c) = &e.common
                {
                    let volume = dst
                        .datasets
                        .get(&e.target)
                        .is_some_and(|d| d.kind == crate::zfs::Kind::Volume);
                    if let Ok(Some(why)) = crate::engine::changed_in_nothing(
                        &runner,
                        dside,
                        &e.target,
                        &c.name,
                        volume,
                        cfg.timeouts.command.get(),
                    )
                    .await
                    {
                        crate::outln!(
                            "{} -> {dst_node}:{}: not diverged: {} B changed since @{}, and {why}: the next run rolls it back and sends",
                            e.source,
                            e.target,
                            e.written,
                            c.name
                        );
                        continue;
                    }
                }
                found += 1;
                crate::outln!("{} -> {dst_node}:{}: {}", e.source, e.target, e.kind());
                for l in e.lines(src_node, dst_node) {
                    crate::outln!("    {l}");
                }
                crate::outln!(
                    "    keep it and re-sync, on {src_node}: zfs-nfs-replica resolve '{}' --keep-divergent",
                    e.source
                );
            }
            for q in quarantine {
                crate::outln!("quarantine on {dst_node}: {q} (kept)");
            }
        }
        peer.close(cfg.ssh.connect_timeout.get()).await;
    }
    if found > 0 {
        crate::outln!(
            "{found} diverged dataset(s): nothing is replicated into them until resolved"
        );
        code = code.and(Exit::Refused);
    } else if code == Exit::Ok {
        crate::outln!("no diverged dataset");
    }
    info!("diverged finished with exit code {}", code.code());
    code
}
