//! One file per subcommand. Each returns an exit code from [`crate::exit`].

pub mod adopt;
pub mod assets;
pub mod check;
pub mod diverged;
pub mod handover;
pub mod history;
pub mod hook;
pub mod resolve;
pub mod role;
pub mod run;
pub mod standby;
pub mod status;

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

/// The operator's commands that act from the master (`resolve`, `adopt`):
/// this node must surely be master, by the same repeated check as `run`.
/// Returns this node's name, or the exit code after saying why not.
pub async fn require_master(cfg: &Config, what: &str) -> Result<String, u8> {
    let d = crate::pve::decide(cfg, crate::pve::Purpose::Run).await;
    match d.role {
        crate::pve::Role::Master => Ok(d.local),
        crate::pve::Role::Standby { master } => {
            tracing::error!(
                "{what} runs on the master, which is {master} (this node, {}, is a standby)",
                d.local
            );
            Err(crate::exit::REFUSED)
        }
        crate::pve::Role::Unsure { reason } => {
            tracing::error!("refusing {what}: nobody is surely master ({reason})");
            Err(crate::exit::REFUSED)
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

/// Is `op` already done, as `names` (every dataset and snapshot of the
/// side, as listed before the steps ran) show? What makes a resolve or an
/// adopt resumable: a step that ran (or half ran) before is recognised
/// from the real state and not run again.
fn already_done(op: &crate::zfs::Op, names: &std::collections::BTreeSet<String>) -> bool {
    use crate::zfs::Op;
    match op {
        Op::CreateContainer { dataset, .. } => names.contains(dataset),
        Op::Snapshot { snapshot, .. } => names.contains(snapshot),
        Op::SnapshotMany { snapshots } => snapshots.iter().all(|s| names.contains(s)),
        // The quarantine's name is new to this resolve: its existence is
        // the rename's (the live name may exist again: the clone's).
        Op::Rename { to, .. } => names.contains(to),
        Op::Clone { target, .. } => names.contains(target),
        Op::CopyLocal {
            snapshot, target, ..
        } => snapshot
            .split_once('@')
            .is_some_and(|(_, snap)| names.contains(&format!("{target}@{snap}"))),
        _ => false,
    }
}

/// Steps that cannot simply run twice, and whose effect a listing shows;
/// the others run again harmlessly (a hold, a mount, a property).
fn has_check(op: &crate::zfs::Op) -> bool {
    use crate::zfs::Op;
    matches!(
        op,
        Op::CreateContainer { .. }
            | Op::Snapshot { .. }
            | Op::SnapshotMany { .. }
            | Op::Rename { .. }
            | Op::Clone { .. }
            | Op::CopyLocal { .. }
    )
}

/// Errors that mean the step's effect is already there.
fn already_so(op: &crate::zfs::Op, stderr: &str) -> bool {
    use crate::zfs::Op;
    let e = stderr.to_ascii_lowercase();
    match op {
        Op::Hold { .. } | Op::HoldRecursive { .. } => e.contains("tag already exists"),
        Op::Promote { .. } => e.contains("not a cloned filesystem"),
        Op::Mount { .. } => e.contains("already mounted"),
        Op::Unmount { .. } => e.contains("not currently mounted"),
        _ => false,
    }
}

/// Run an operator command's steps in order on one side; the first failure
/// of a step that is not best-effort stops the rest. Steps already done
/// (`already_done`, from one listing of `roots` first) are skipped, so a
/// plan run again after a failure finishes it. Returns the steps done (as
/// shown) and the failure, if any.
pub async fn execute_steps<R: crate::runner::Runner>(
    runner: &R,
    cfg: &Config,
    side: crate::side::Side<'_>,
    roots: &[String],
    steps: &[crate::resolve::Step],
) -> (Vec<String>, Option<String>) {
    use tracing::{error, info, warn};
    let list = crate::zfs::Op::ListNames {
        roots: roots.to_vec(),
    };
    let names: std::collections::BTreeSet<String> = match runner
        .output(&side.cmd(&list), cfg.timeouts.command.get())
        .await
    {
        Ok(o) if o.success() => o.stdout.lines().map(str::to_string).collect(),
        Ok(o) => {
            return (
                Vec::new(),
                Some(format!(
                    "`{}` failed: {}",
                    side.show(&list),
                    crate::runner::stderr_head(&o.stderr)
                )),
            );
        }
        Err(e) => return (Vec::new(), Some(format!("`{}`: {e}", side.show(&list)))),
    };
    let mut done: Vec<String> = Vec::new();
    // Steps found done are skipped only from the start on: once one step
    // runs, the names listed before it say nothing about the steps after
    // it (a rename frees a name a later clone takes again).
    let mut resuming = true;
    for (i, s) in steps.iter().enumerate() {
        let shown = side.show(&s.op);
        if resuming && has_check(&s.op) {
            if already_done(&s.op, &names) {
                info!("step {}: {shown}: already done", i + 1);
                done.push(format!("{shown} (already done)"));
                continue;
            }
            resuming = false;
        }
        if s.destructive {
            warn!("DESTRUCTIVE step {}: {shown} ({})", i + 1, s.note);
        } else {
            info!("step {}: {shown}", i + 1);
        }
        // A copy moves data: it gets the transfer deadline, not a command's.
        let limit = if matches!(s.op, crate::zfs::Op::CopyLocal { .. }) {
            cfg.timeouts.transfer.get()
        } else {
            cfg.timeouts.command.get()
        };
        let err = match runner.output(&side.cmd(&s.op), limit).await {
            Ok(o) if o.success() => None,
            Ok(o) if already_so(&s.op, &o.stderr) => None,
            Ok(o) => Some(format!(
                "`{shown}` failed: {}",
                crate::runner::stderr_head(&o.stderr)
            )),
            Err(e) => Some(format!("`{shown}`: {e}")),
        };
        match err {
            None => done.push(shown),
            Some(e) if s.best_effort => warn!("step {} (best effort): {e}", i + 1),
            Some(e) => {
                error!(
                    "stopped at step {} of {}: {e}; the {} step(s) before it were done, none after it ran; run the same command again to finish it",
                    i + 1,
                    steps.len(),
                    done.len()
                );
                return (done, Some(e));
            }
        }
    }
    (done, None)
}
