//! One file per subcommand. Each returns an exit code from [`crate::exit`].

pub mod check;
pub mod hook;
pub mod run;

use crate::config::Config;
use crate::ssh::Target;

/// The short hostname (Proxmox node names are short hostnames).
pub fn short_hostname() -> Option<String> {
    let host = hostname()?;
    Some(host.split('.').next().unwrap_or(&host).to_string())
}

/// This node's Proxmox name without asking the API: `[cluster] node`, else
/// the short hostname.
pub fn local_node(cfg: &Config) -> Result<String, String> {
    if let Some(n) = &cfg.cluster.node {
        return Ok(n.to_string());
    }
    let short =
        short_hostname().ok_or("cannot read this machine's hostname; set [cluster] node")?;
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

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it on success (we also bound the search).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let s = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!s.is_empty()).then_some(s)
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
