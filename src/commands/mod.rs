//! One file per subcommand. Each returns an exit code from [`crate::exit`].

pub mod adopt;
pub mod assets;
pub mod authorized_key;
pub mod check;
pub mod diverged;
pub mod handover;
pub mod history;
pub mod hook;
pub mod resolve;
pub mod role;
pub mod run;
pub mod serve;
pub mod standby;
pub mod status;

use crate::config::Config;
use crate::exit::Exit;
use crate::ssh::Target;

/// This node's Proxmox name without asking the API: `[cluster] node`, else
/// the short hostname.
pub fn local_node(cfg: &Config) -> Result<String, String> {
    if let Some(n) = &cfg.cluster.node {
        return Ok(n.to_string());
    }
    let short = crate::pve::short_hostname()
        .ok_or("cannot read this machine's hostname; set [cluster] node")?;
    if cfg.cluster.nodes.keys().any(|n| n.as_str() == short) {
        Ok(short)
    } else {
        Err(format!(
            "this node's hostname `{short}` is not one of [cluster] nodes ({}); set [cluster] node",
            cfg.cluster
                .nodes
                .keys()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Every node but this one.
pub fn peers(cfg: &Config, local: &str) -> Vec<Target> {
    cfg.cluster
        .nodes
        .iter()
        .filter(|(n, _)| n.as_str() != local)
        .map(|(n, a)| Target {
            name: n.to_string(),
            addr: a.clone(),
        })
        .collect()
}

/// The operator's commands that act from the master (`resolve`, `adopt`):
/// this node must surely be master, by the same repeated check as `run`.
/// Returns this node's name, or the exit code after saying why not.
pub async fn require_master(cfg: &Config, what: &str) -> Result<String, Exit> {
    let d = crate::pve::decide(cfg, crate::pve::Purpose::Run).await;
    match d.role {
        crate::pve::Role::Master => Ok(d.local),
        crate::pve::Role::Standby { master } => {
            tracing::error!(
                "{what} runs on the master, which is {master} (this node, {}, is a standby)",
                d.local
            );
            Err(Exit::Refused)
        }
        crate::pve::Role::Unsure { reason } => {
            tracing::error!("refusing {what}: nobody is surely master ({reason})");
            Err(Exit::Refused)
        }
    }
}

/// The peer to act on: the one named, or the only one.
pub fn pick_peer(cfg: &Config, local: &str, named: Option<&str>) -> Result<Target, String> {
    let all = peers(cfg, local);
    match named {
        Some(n) => all
            .into_iter()
            .find(|t| t.name == n)
            .ok_or_else(|| format!("--peer {n}: not one of the other nodes in [cluster] nodes")),
        None if all.len() == 1 => Ok(all.into_iter().next().expect("one")),
        None => Err(format!(
            "{} peers ({}): name one with --peer",
            all.len(),
            all.iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The configured pool a dataset (source name) belongs to.
pub fn pool_of_dataset<'a>(cfg: &'a Config, dataset: &str) -> Option<&'a crate::config::Pool> {
    cfg.pools
        .iter()
        .find(|p| crate::zfs::names::is_at_or_below(dataset, p.name.as_str()))
}

/// Where an operator command keeps its ssh control socket: dry-run must
/// not create anything in the run directory.
pub fn socket_dir(cfg: &Config, dry_run: bool) -> std::path::PathBuf {
    if dry_run {
        std::env::temp_dir()
    } else {
        cfg.paths.run_dir.clone()
    }
}

/// The executor of a command's steps, with the configured deadlines.
pub fn executor<'a, R: crate::runner::Runner>(
    runner: &'a R,
    cfg: &Config,
    dry_run: bool,
) -> crate::execute::Executor<'a, R> {
    crate::execute::Executor::new(runner, dry_run, cfg.timeouts.command.get())
        .with_transfer_timeout(cfg.timeouts.transfer.get())
}
