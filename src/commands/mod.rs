//! One file per subcommand. Each returns an exit code from [`crate::exit`].

pub mod check;
pub mod history;
pub mod hook;
pub mod run;

use crate::config::Config;
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
