//! Who is master, asked of Proxmox: the API over verified HTTPS, cross-checked
//! with the local cluster filesystem, `[checks] count` times spaced by
//! `[checks] interval`. Any doubt, or any change between checks, means
//! nobody is master.

pub mod answers;
pub mod client;
pub mod decision;
pub mod judge;

use std::time::Duration;

use tracing::{debug, info, warn};

use crate::config::Config;
use answers::{parse_cluster_status, parse_guest_status, parse_ha_status, parse_resources};
use client::Client;
pub use decision::{Answer, Decision, Role};
use judge::{Context, Observation, Verdict, VmList};

/// Why the checks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The timer's run.
    Run,
    /// The `pre-start` hook: the guest is starting on this node.
    PreStart,
}

/// Run the repeated check and decide this node's role.
pub async fn decide(cfg: &Config, purpose: Purpose) -> Decision {
    let ctx = Context {
        vmid: cfg.cluster.guest,
        nodes: cfg.cluster.nodes.keys().map(|n| n.to_string()).collect(),
        configured: cfg.cluster.node.as_ref().map(|n| n.to_string()),
        hostname: short_hostname(),
        starting_here: purpose == Purpose::PreStart,
    };
    let fallback = ctx
        .configured
        .clone()
        .or(ctx.hostname.clone())
        .unwrap_or_else(|| "?".into());
    let unsure = |local: String, reason: String| Decision {
        local,
        role: Role::Unsure { reason },
        ha_sid: None,
    };
    let client = match Client::new(&cfg.proxmox) {
        Ok(c) => c,
        Err(e) => return unsure(fallback, e.to_string()),
    };
    let count = cfg.checks.count;
    // One check is a few requests, two of them in sequence: bound the whole.
    let check_deadline = cfg.proxmox.timeout.get() * 2 + Duration::from_secs(1);
    let mut first: Option<Verdict> = None;
    for i in 1..=count {
        if i > 1 {
            tokio::time::sleep(cfg.checks.interval.get()).await;
        }
        let got = tokio::time::timeout(check_deadline, check_once(&client, cfg, &ctx))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no complete answer within {}s",
                    check_deadline.as_secs()
                ))
            });
        let v = match got {
            Ok(v) => v,
            Err(reason) => {
                warn!("master check {i}/{count} failed: {reason}");
                let local = first.map(|f| f.local).unwrap_or(fallback);
                return unsure(local, format!("check {i} of {count}: {reason}"));
            }
        };
        debug!(
            "master check {i}/{count}: guest {} runs on {}",
            ctx.vmid, v.master
        );
        match &first {
            None => first = Some(v),
            Some(f) if *f != v => {
                let reason = format!(
                    "the answer changed between checks: check 1 placed guest {} on `{}` (this node `{}`), check {i} on `{}` (this node `{}`)",
                    ctx.vmid, f.master, f.local, v.master, v.local
                );
                warn!("master check {i}/{count} failed: {reason}");
                return unsure(f.local.clone(), reason);
            }
            Some(_) => {}
        }
    }
    let v = first.expect("count >= 1");
    info!(
        "{count} of {count} master checks agree: guest {} runs on {}",
        ctx.vmid, v.master
    );
    let role = if v.master == v.local {
        Role::Master
    } else {
        Role::Standby {
            master: v.master.clone(),
        }
    };
    Decision {
        local: v.local,
        role,
        ha_sid: v.ha_sid,
    }
}

/// One check: the three cluster-wide answers concurrently, then the guest's
/// own status when it is placed on this node (asked of this node only: asking
/// another node is forwarded there and hangs if it is dead).
async fn check_once(client: &Client, cfg: &Config, ctx: &Context) -> Result<Verdict, String> {
    let vmid = cfg.cluster.guest;
    let (status, resources, ha) = tokio::join!(
        client.get("/cluster/status"),
        client.get("/cluster/resources?type=vm"),
        client.get("/cluster/ha/status/current"),
    );
    let status = parse_cluster_status(&status.map_err(|e| e.to_string())?)?;
    let guest = parse_resources(&resources.map_err(|e| e.to_string())?, vmid)?;
    let sid = guest
        .as_ref()
        .map(|g| g.sid(vmid))
        .unwrap_or_else(|| format!("ct:{vmid}"));
    let ha = parse_ha_status(&ha.map_err(|e| e.to_string())?, &sid)?;
    let local = judge::local_node(&status, ctx)?;
    // Skip the guest's own status when the cluster view already says its
    // node is gone: the rules report that, and the request could hang.
    let node_gone = |g: &answers::GuestRow| {
        g.status.as_deref() == Some("unknown")
            || status
                .nodes
                .iter()
                .any(|n| n.name == g.node && n.online == Some(false))
    };
    let here = match &guest {
        Some(g) if g.node == local && !node_gone(g) => {
            let path = format!("/nodes/{local}/{}/{vmid}/status/current", g.kind);
            let v = client.get(&path).await.map_err(|e| e.to_string())?;
            Some(parse_guest_status(&v, &path)?)
        }
        _ => None,
    };
    let obs = Observation {
        status,
        guest,
        ha,
        here,
        vmlist: read_vmlist(&cfg.proxmox.vmlist, vmid),
    };
    judge::judge(&obs, ctx)
}

/// Where the cluster places the guest now, as this node's API and its
/// `.vmlist` agree (for a handover: the old master checks that the guest
/// has moved before it gives its last writes away). `(node, status)`.
pub async fn placement(cfg: &Config) -> Result<(String, Option<String>), String> {
    let client = Client::new(&cfg.proxmox).map_err(|e| e.to_string())?;
    let vmid = cfg.cluster.guest;
    let v = tokio::time::timeout(
        cfg.proxmox.timeout.get() + Duration::from_secs(1),
        client.get("/cluster/resources?type=vm"),
    )
    .await
    .map_err(|_| "the API did not answer in time".to_string())?
    .map_err(|e| e.to_string())?;
    let Some(g) = parse_resources(&v, vmid)? else {
        return Err(format!("guest {vmid} is not in the API's answer"));
    };
    match read_vmlist(&cfg.proxmox.vmlist, vmid) {
        VmList::Places(Some(n)) if n != g.node => {
            return Err(format!(
                "the API places guest {vmid} on {}, this node's .vmlist on {n}",
                g.node
            ));
        }
        VmList::Bad(e) => return Err(e),
        _ => {}
    }
    Ok((g.node, g.status))
}

fn read_vmlist(path: &std::path::Path, vmid: u32) -> VmList {
    match crate::files::read_text_if_exists(path, crate::files::DEFAULT_LIMIT) {
        Ok(None) => {
            debug!("{}: absent, no local cross-check", path.display());
            VmList::Absent
        }
        Err(e) => VmList::Bad(e.to_string()),
        Ok(Some(text)) => match answers::parse_vmlist(&text, vmid) {
            Ok(n) => VmList::Places(n),
            Err(e) => VmList::Bad(format!("{}: {e}", path.display())),
        },
    }
}

/// The short hostname: the Proxmox node name when the API does not say.
pub fn short_hostname() -> Option<String> {
    let host = hostname()?;
    Some(host.split('.').next().unwrap_or(&host).to_string())
}

fn hostname() -> Option<String> {
    let u = rustix::system::uname();
    let s = u.nodename().to_string_lossy().trim().to_string();
    (!s.is_empty()).then_some(s)
}
