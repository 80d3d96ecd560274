//! `zfs-nfs-replica check`: the configuration parses, the Proxmox API answers
//! (one master check), every peer answers over ssh, and the configured pools
//! exist on both sides.

use tracing::{error, info};

use crate::config::Config;
use crate::exit::Exit;
use crate::health;
use crate::pve::Role;
use crate::runner::{Runner, SystemRunner};
use crate::side::Side;
use crate::ssh::Peer;

pub async fn check(cfg: &Config) -> Exit {
    let local = match super::local_node(cfg) {
        Ok(n) => n,
        Err(e) => {
            error!("{e}");
            return Exit::Config;
        }
    };
    crate::outln!(
        "config: ok ({} pool(s), this node: {local})",
        cfg.pools.len()
    );
    let mut code = Exit::Ok;
    // One master check (not the repeated one): is the API reachable with
    // this token and CA, and what does it say?
    let mut once = cfg.clone();
    once.checks.count = 1;
    let d = crate::pve::decide(&once, crate::pve::Purpose::Run).await;
    match d.role {
        Role::Master => crate::outln!(
            "proxmox {}: ok, guest {} runs here: this node ({}) is master",
            cfg.proxmox.url,
            cfg.cluster.guest,
            d.local
        ),
        Role::Standby { master } => crate::outln!(
            "proxmox {}: ok, guest {} runs on {master}: this node ({}) is a standby",
            cfg.proxmox.url,
            cfg.cluster.guest,
            d.local
        ),
        Role::Unsure { reason } => {
            crate::outln!("proxmox {}: FAILED: {reason}", cfg.proxmox.url);
            code = Exit::Refused;
        }
    }
    let runner = SystemRunner {
        kill_grace: cfg.timeouts.kill_grace.get(),
    };
    code = code.and(show_pools(&runner, cfg, Side::Local, &local, false).await);
    for t in super::peers(cfg, &local) {
        match Peer::connect(&runner, &cfg.ssh, &t, &cfg.paths.run_dir).await {
            Ok(peer) => {
                crate::outln!("ssh {} ({}): ok", t.name, t.addr);
                crate::outln!("  key {}", key_mode(&runner, cfg, &peer).await);
                code = code.and(show_pools(&runner, cfg, Side::Remote(&peer), &t.name, true).await);
                peer.close(cfg.ssh.connect_timeout.get()).await;
            }
            Err(e) => {
                crate::outln!("ssh {} ({}): FAILED: {e}", t.name, t.addr);
                code = code.and(Exit::Transient);
            }
        }
    }
    info!("check finished with exit code {}", code.code());
    code
}

async fn show_pools(
    runner: &SystemRunner,
    cfg: &Config,
    side: Side<'_>,
    node: &str,
    targets: bool,
) -> Exit {
    let mut code = Exit::Ok;
    for h in health::read::of_side(runner, cfg, side, targets).await {
        crate::outln!("  {node:<12} {}", h.summary());
        if h.level == health::Level::Fail {
            code = code.and(Exit::Refused);
        }
    }
    code
}

/// What the replication key may do on the peer: a plain `true` is refused
/// by the forced command (`serve`, exit 6) and runs with a full shell.
async fn key_mode(runner: &SystemRunner, cfg: &Config, peer: &Peer) -> String {
    let probe = crate::cmdline::Cmd::new("true");
    match runner
        .output(
            &peer.remote(&probe),
            cfg.ssh.connect_timeout.get() + cfg.timeouts.command.get(),
        )
        .await
    {
        Ok(o) if o.status.code() == Some(i32::from(Exit::ServeRefused.code())) => {
            "restricted to `zfs-nfs-replica serve`: ok".into()
        }
        Ok(o) if o.success() => {
            tracing::warn!(
                "the replication key has a full shell on {}: restrict it (README: Least privilege)",
                peer.name
            );
            "WARNING: a full shell (restrict it: command=\"/usr/bin/zfs-nfs-replica serve\",restrict; README: Least privilege)".into()
        }
        Ok(o) => format!(
            "unknown: `true` exited {:?}: {}",
            o.status.code(),
            crate::runner::stderr_head(&o.stderr)
        ),
        Err(e) => format!("unknown: {e}"),
    }
}
