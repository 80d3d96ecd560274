//! What each role does to this node, besides replicating: sanoid's
//! `autosnap`, the pools' `readonly`, and (on a standby) how far behind the
//! received copy is. Who is master is decided in [`crate::pve`]
//! ([`crate::pve::decision`]).

use std::time::Duration;

use tracing::{info, warn};

use crate::config::Config;
use crate::execute::{Executor, Ran};
use crate::runner::{Runner, stderr_head};
use crate::sanoid;
use crate::side::Side;
use crate::step::{Step, step};
use crate::zfs::{self, Op};

/// What a role change did (or, in dry-run, would do): one line each.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    pub done: Vec<String>,
    pub errors: Vec<String>,
}

impl Changes {
    fn add(&mut self, ran: Ran) {
        self.done.extend(ran.done);
        self.errors.extend(ran.warnings);
        self.errors.extend(ran.failure.map(|f| f.message));
    }
}

/// Make sanoid's `autosnap` follow the role in every section at or below
/// the managed datasets (`on`: master). Returns a line describing the
/// change, or None when there was nothing to do; what the operator should
/// know about the file (a comment moved, a managed dataset no section
/// covers) is logged. An error leaves the file as it was.
pub fn set_autosnap(cfg: &Config, on: bool, dry_run: bool) -> Result<Option<String>, String> {
    let managed = cfg.sanoid_datasets();
    if managed.is_empty() {
        return Ok(None);
    }
    let planned = sanoid::plan(&cfg.sanoid.config, &managed, on).map_err(|e| e.to_string())?;
    for n in &planned.rewrite.notes {
        info!("sanoid.conf: {n}");
    }
    if !planned.changes() {
        return Ok(None);
    }
    if dry_run {
        return Ok(Some(format!("would set {}", planned.describe(on))));
    }
    sanoid::apply(&planned).map_err(|e| e.to_string())?;
    Ok(Some(format!(
        "set {} (previous file kept as {})",
        planned.describe(on),
        planned.backup().display()
    )))
}

/// Make the pools' datasets writable again: every dataset a standby receive
/// left `readonly=on` (a local value) goes back to its received or inherited
/// value; filesystems that this unlocks and that should be mounted are
/// mounted, so the guest finds its data. Excluded subtrees are not touched.
pub async fn make_writable<R: Runner>(
    runner: &R,
    cfg: &Config,
    only: &[String],
    dry_run: bool,
    timeout: Duration,
) -> Changes {
    let mut ch = Changes::default();
    let mut ex = Executor::new(runner, dry_run, timeout);
    // Only the pools this run was asked to handle (`--pool`).
    let pools: Vec<&crate::config::Pool> = selected(cfg, only);
    // One `zfs get` for every pool; if that fails (a pool missing), one per
    // pool, so the others still get their role.
    let all: Vec<String> = pools.iter().map(|p| p.name.to_string()).collect();
    let batch = match role_props(runner, &all, timeout).await {
        Ok(p) => Some(p),
        Err(_) if all.len() > 1 => None,
        Err(e) => {
            ch.errors.push(e);
            return ch;
        }
    };
    for pool in pools {
        let props = match &batch {
            Some(p) => p.clone(),
            None => match role_props(runner, &[pool.name.to_string()], timeout).await {
                Ok(p) => p,
                Err(e) => {
                    ch.errors.push(e);
                    continue;
                }
            },
        };
        let steps = writable_steps(pool, &props);
        ch.add(ex.run(Side::Local, &steps).await);
    }
    ch
}

/// The steps that make one pool's copy the master's: every managed dataset
/// a standby receive left `readonly=on` goes back to its received or
/// inherited value, then the filesystems this unlocks are mounted (best
/// effort; parents sort before children, so mounts nest correctly). A
/// quarantine stays read-only whatever the role.
///
/// Last, the partial state of every interrupted receive into a managed
/// dataset is discarded (`zfs receive -A`): a master is never received
/// into, so that stream can never complete here (a planned handover has
/// already resumed what it could), and its space would count in this
/// pool's `used` against its replicas for as long as this node is master,
/// and against this node's own source once it is a standby again (the
/// pool-level size guard then refuses the pool). Only a partial stream is
/// lost; its data is whole on the node that sent it.
pub fn writable_steps(
    pool: &crate::config::Pool,
    props: &std::collections::BTreeMap<String, zfs::RoleProps>,
) -> Vec<Step> {
    let managed = || props.iter().filter(|(name, _)| pool.manages(name));
    let datasets: Vec<String> = managed()
        .filter(|(_, p)| p.readonly && p.readonly_source == "local")
        .map(|(name, _)| name.clone())
        .collect();
    let mut steps = Vec::new();
    if !datasets.is_empty() {
        steps.push(step(
            Op::RevertReadonly {
                datasets: datasets.clone(),
            },
            "writable: this node is master",
        ));
    }
    for ds in datasets {
        let p = &props[&ds];
        if awaits_mount(p) {
            steps.push(step(Op::Mount { dataset: ds }, "the guest finds its data").best_effort());
        }
    }
    for (name, _) in managed().filter(|(_, p)| p.partial_receive) {
        steps.push(step(
            Op::RecvAbort {
                dataset: name.clone(),
            },
            "discard an interrupted receive's partial state: this node is master, no stream completes here",
        ));
    }
    steps
}

/// A filesystem that is not mounted and would be by `zfs mount -a`:
/// `canmount=on` and a real mountpoint (not `none`, not `legacy`).
fn awaits_mount(p: &zfs::RoleProps) -> bool {
    p.mounted == Some(false)
        && p.canmount.as_deref() == Some("on")
        && !matches!(p.mountpoint.as_deref(), None | Some("none" | "legacy"))
}

/// The configured pools named in `only` (all of them when it is empty).
fn selected<'c>(cfg: &'c Config, only: &[String]) -> Vec<&'c crate::config::Pool> {
    cfg.pools
        .iter()
        .filter(|p| only.is_empty() || only.iter().any(|n| n == p.name.as_str()))
        .collect()
}

/// On a node that is not master: every dataset of the managed pools that is
/// writable becomes read-only at once (`zfs set readonly=on`), so that
/// nothing on a former master writes after it handed over (atime, a
/// leftover NFS export, a local process), and its copy can receive again.
/// Excluded subtrees (not replicated) and the quarantine are not touched.
pub async fn make_readonly<R: Runner>(
    runner: &R,
    cfg: &Config,
    only: &[String],
    dry_run: bool,
    timeout: Duration,
) -> Changes {
    let mut ch = Changes::default();
    let pools = selected(cfg, only);
    // This node's copies carry its own names for the pools (the master's
    // `target` is this node's `name` in a config that can fail over).
    let roots: Vec<String> = pools.iter().map(|p| p.name.to_string()).collect();
    // One `zfs get` for every pool; a pool this node does not have is not
    // this function's business (the run reports it).
    let props = match role_props(runner, &roots, timeout).await {
        Ok(p) => p,
        Err(_) => {
            let mut all = std::collections::BTreeMap::new();
            for r in &roots {
                if let Ok(p) = role_props(runner, std::slice::from_ref(r), timeout).await {
                    all.extend(p);
                }
            }
            all
        }
    };
    let steps = readonly_steps(&pools, &props, cfg.replication.standby_mounted);
    if steps.is_empty() {
        return ch;
    }
    ch.add(
        Executor::new(runner, dry_run, timeout)
            .run(Side::Local, &steps)
            .await,
    );
    ch
}

/// The properties a role change reads, for whole trees, in one command.
async fn role_props<R: Runner>(
    runner: &R,
    roots: &[String],
    timeout: Duration,
) -> Result<std::collections::BTreeMap<String, zfs::RoleProps>, String> {
    let get = Op::RoleProps {
        roots: roots.to_vec(),
    };
    match runner.output(&get.to_cmd(), timeout).await {
        Ok(o) if o.success() => {
            zfs::parse_role_props(&o.stdout).map_err(|e| format!("`{get}`: {e}"))
        }
        Ok(o) => Err(format!("`{get}` failed: {}", stderr_head(&o.stderr))),
        Err(e) => Err(e.to_string()),
    }
}

/// The steps that make these pools' copies a standby's: every managed
/// dataset that is writable becomes `readonly=on`, then (with `mount`) the
/// managed filesystems that are not mounted are mounted, read-only, best
/// effort, parents first: OpenZFS lists the snapshots of an unmounted
/// filesystem several times slower (bench/RESULTS.md: "Listing forms"),
/// and every run lists the standby's. A mount writes nothing into a
/// read-only copy. A dataset holding an interrupted receive's partial
/// state (mounted once the resume completes; a new one may not even be
/// consistent), and an encrypted one whose key is not loaded (a
/// raw-received copy), are left alone.
pub fn readonly_steps(
    pools: &[&crate::config::Pool],
    props: &std::collections::BTreeMap<String, zfs::RoleProps>,
    mount: bool,
) -> Vec<Step> {
    let managed = || {
        props
            .iter()
            .filter(|(name, _)| pools.iter().any(|pool| pool.manages(name)))
    };
    let writable: Vec<String> = managed()
        .filter(|(_, p)| !p.readonly)
        .map(|(name, _)| name.clone())
        .collect();
    let mut steps = Vec::new();
    if !writable.is_empty() {
        steps.push(step(
            Op::SetReadonly { datasets: writable },
            "read-only: this node is not master",
        ));
    }
    if mount {
        for (name, p) in managed() {
            if awaits_mount(p) && !p.partial_receive && !p.key_unavailable {
                steps.push(
                    step(
                        Op::Mount {
                            dataset: name.clone(),
                        },
                        "mounted read-only: a standby's copy lists faster mounted",
                    )
                    .best_effort(),
                );
            }
        }
    }
    steps
}

/// On a standby: the newest snapshot of each pool's received copy (how far
/// behind this node is), or why it could not be read.
pub async fn standby_received<R: Runner>(
    runner: &R,
    cfg: &Config,
    timeout: Duration,
) -> Vec<crate::status::Received> {
    let mut out = Vec::new();
    for pool in &cfg.pools {
        let target = pool.target().to_string();
        let op = Op::List {
            roots: vec![target.clone()],
        };
        let mut r = crate::status::Received {
            pool: target.clone(),
            dataset: None,
            snapshot: None,
            error: None,
        };
        match crate::engine::list_one(runner, timeout, Side::Local, &op).await {
            Ok(mut l) => {
                crate::quarantine::split_quarantine(&mut l, &target);
                if let Some((d, s)) = l
                    .datasets
                    .values()
                    .flat_map(|d| d.snapshots.iter().map(move |s| (d, s)))
                    .max_by_key(|(_, s)| s.creation)
                {
                    r.dataset = Some(d.name.clone());
                    r.snapshot = Some(crate::status::Snap::of(s));
                }
            }
            Err(e) => r.error = Some(e.to_string()),
        }
        out.push(r);
    }
    out
}

/// Log a role change's lines.
pub fn log_changes(what: &str, ch: &Changes) {
    for d in &ch.done {
        info!("{what}: {d}");
    }
    for e in &ch.errors {
        warn!("{what}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zfs::RoleProps;

    fn props(readonly: bool, source: &str, mounted: Option<bool>) -> RoleProps {
        RoleProps {
            readonly,
            readonly_source: source.into(),
            mounted,
            canmount: Some("on".into()),
            mountpoint: Some("/zpool1".into()),
            partial_receive: false,
            key_unavailable: false,
        }
    }

    /// One pool, `zpool1`, with an excluded subtree, `zpool1/scratch`.
    fn one_pool() -> Config {
        crate::config::parse_str(
            "[cluster]\nguest = 103\nnodes = { pve1 = \"10.0.0.11\", pve2 = \"10.0.0.12\" }\n\n[[pool]]\nname = \"zpool1\"\nexclude = [\"zpool1/scratch\"]\n",
            "test",
        )
        .unwrap()
    }

    /// The revert first, then only the mounts it unlocks, best effort; the
    /// excluded subtree and the quarantine are not touched.
    #[test]
    fn a_master_gets_its_datasets_back_writable_and_mounted() {
        let cfg = one_pool();
        let mut p = std::collections::BTreeMap::new();
        p.insert("zpool1".to_string(), props(true, "local", Some(true)));
        p.insert("zpool1/a".to_string(), props(true, "local", Some(false)));
        p.insert("zpool1/b".to_string(), props(false, "default", Some(true)));
        p.insert(
            "zpool1/scratch".to_string(),
            props(true, "local", Some(false)),
        );
        p.insert(
            "zpool1/zfs-nfs-replica-quarantine".to_string(),
            props(true, "local", Some(false)),
        );
        let steps = writable_steps(&cfg.pools[0], &p);
        assert_eq!(
            steps,
            vec![
                step(
                    Op::RevertReadonly {
                        datasets: vec!["zpool1".into(), "zpool1/a".into()]
                    },
                    "writable: this node is master"
                ),
                step(
                    Op::Mount {
                        dataset: "zpool1/a".into()
                    },
                    "the guest finds its data"
                )
                .best_effort(),
            ]
        );
        p.clear();
        assert_eq!(writable_steps(&cfg.pools[0], &p), vec![]);
    }

    /// A standby's copies: the writable ones read-only first, then the
    /// filesystems not mounted are mounted (best effort), except a volume,
    /// a copy a receive is filling, one with no mountpoint, an encrypted
    /// one without its key, the excluded
    /// subtree and the quarantine; nothing to mount without `mount`.
    #[test]
    fn a_standby_is_made_read_only_then_mounted() {
        let cfg = one_pool();
        let pools: Vec<&crate::config::Pool> = cfg.pools.iter().collect();
        let mut p = std::collections::BTreeMap::new();
        p.insert("zpool1".to_string(), props(false, "default", Some(true)));
        p.insert("zpool1/a".to_string(), props(true, "local", Some(false)));
        p.insert("zpool1/a/b".to_string(), props(false, "local", Some(false)));
        p.insert(
            "zpool1/a/new".to_string(),
            RoleProps {
                partial_receive: true,
                ..props(true, "local", Some(false))
            },
        );
        p.insert(
            "zpool1/legacy".to_string(),
            RoleProps {
                mountpoint: Some("legacy".into()),
                ..props(true, "local", Some(false))
            },
        );
        p.insert("zpool1/vol".to_string(), props(true, "local", None));
        p.insert(
            "zpool1/secret".to_string(),
            RoleProps {
                key_unavailable: true,
                ..props(true, "local", Some(false))
            },
        );
        p.insert(
            "zpool1/scratch".to_string(),
            props(false, "local", Some(false)),
        );
        p.insert(
            "zpool1/zfs-nfs-replica-quarantine".to_string(),
            props(true, "local", Some(false)),
        );
        let ops = |mount: bool| -> Vec<String> {
            readonly_steps(&pools, &p, mount)
                .iter()
                .map(|s| {
                    format!(
                        "{}{}",
                        s.op,
                        if s.best_effort { " (best effort)" } else { "" }
                    )
                })
                .collect()
        };
        assert_eq!(
            ops(true),
            [
                "zfs set readonly=on zpool1 zpool1/a/b",
                "zfs mount zpool1/a (best effort)",
                "zfs mount zpool1/a/b (best effort)"
            ]
        );
        assert_eq!(ops(false), ["zfs set readonly=on zpool1 zpool1/a/b"]);
    }

    /// An interrupted receive's partial state goes on every managed dataset
    /// of a master, whether or not anything had to become writable; the
    /// excluded subtree and the quarantine keep theirs.
    #[test]
    fn a_master_discards_the_partial_state_of_interrupted_receives() {
        let cfg = one_pool();
        let partial = |readonly: bool| RoleProps {
            partial_receive: true,
            ..props(
                readonly,
                if readonly { "local" } else { "default" },
                Some(true),
            )
        };
        let mut p = std::collections::BTreeMap::new();
        p.insert("zpool1".to_string(), props(false, "default", Some(true)));
        p.insert("zpool1/a".to_string(), partial(false));
        p.insert("zpool1/a/new".to_string(), partial(false));
        p.insert("zpool1/scratch".to_string(), partial(false));
        p.insert(
            "zpool1/zfs-nfs-replica-quarantine/x".to_string(),
            partial(true),
        );
        let ops: Vec<String> = writable_steps(&cfg.pools[0], &p)
            .iter()
            .map(|s| s.op.to_string())
            .collect();
        assert_eq!(
            ops,
            ["zfs receive -A zpool1/a", "zfs receive -A zpool1/a/new"]
        );
        p.insert("zpool1/b".to_string(), partial(true));
        let ops: Vec<String> = writable_steps(&cfg.pools[0], &p)
            .iter()
            .map(|s| s.op.to_string())
            .collect();
        assert_eq!(
            ops,
            [
                "zfs inherit readonly zpool1/b",
                "zfs receive -A zpool1/a",
                "zfs receive -A zpool1/a/new",
                "zfs receive -A zpool1/b"
            ],
            "the revert first"
        );
    }
}
