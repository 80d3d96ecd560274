//! `zfs-nfs-replica adopt POOL`: take over a standby copy made by the old
//! script (syncoid). Run on the master. It proves the standby holds nothing
//! the master lacks (no snapshot after the common one, no write that `zfs
//! diff` shows), then makes the copy a read-only standby (`readonly=on`,
//! access-time updates discarded by a rollback to its newest snapshot, which
//! destroys no snapshot). Anything else stops it before a single step runs.

use std::collections::BTreeMap;

use tracing::{error, info, warn};

use crate::adopt;
use crate::cli::AdoptArgs;
use crate::config::Config;
use crate::engine::list_pair;
use crate::exit::Exit;
use crate::lock::try_lock_pool;
use crate::runner::{Runner, SystemRunner, stderr_head};
use crate::side::Side;
use crate::ssh::Peer;
use crate::state::{self, OperatorAction};
use crate::zfs::{self, Op};

pub async fn adopt(cfg: &Config, args: &AdoptArgs) -> Exit {
    let Some(pool) = cfg.pools.iter().find(|p| p.name.as_str() == args.pool) else {
        error!("adopt {}: not a configured [[pool]]", args.pool);
        return Exit::Config;
    };
    let local = match super::require_master(cfg, "adopt").await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let target = match super::pick_peer(cfg, &local, args.peer.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            error!("{e}");
            return Exit::Config;
        }
    };
    let _lock = if args.dry_run {
        None
    } else {
        match try_lock_pool(&cfg.paths.run_dir, pool.name.as_str()) {
            Ok(l) => Some(l),
            Err(e) => {
                error!("{e}");
                return Exit::Transient;
            }
        }
    };
    let runner = SystemRunner {
        kill_grace: cfg.timeouts.kill_grace.get(),
    };
    let peer = match Peer::connect(
        &runner,
        &cfg.ssh,
        &target,
        &super::socket_dir(cfg, args.dry_run),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            error!("{e}");
            return Exit::Transient;
        }
    };
    let code = adopt_with(&runner, cfg, args, pool, &peer).await;
    peer.close(cfg.ssh.connect_timeout.get()).await;
    code
}

/// A read-only command on the peer; its stdout.
async fn read<R: Runner>(
    runner: &R,
    cfg: &Config,
    side: Side<'_>,
    op: &Op,
) -> Result<String, String> {
    match runner
        .output(&side.cmd(op), cfg.timeouts.command.get())
        .await
    {
        Ok(o) if o.success() => Ok(o.stdout),
        Ok(o) => Err(format!(
            "`{}` failed: {}",
            side.show(op),
            stderr_head(&o.stderr)
        )),
        Err(e) => Err(format!("`{}`: {e}", side.show(op))),
    }
}

async fn adopt_with<R: Runner>(
    runner: &R,
    cfg: &Config,
    args: &AdoptArgs,
    pool: &crate::config::Pool,
    peer: &Peer,
) -> Exit {
    let (src_root, dst_root) = (pool.name.as_str(), pool.target());
    let remote = Side::Remote(peer);
    let (src, dst, _) = match list_pair(
        runner,
        cfg.timeouts.command.get(),
        (Side::Local, src_root),
        (remote, dst_root),
    )
    .await
    {
        Ok(x) => x,
        Err(e) => {
            error!("{e}");
            return Exit::Transient;
        }
    };
    let props_op = Op::RoleProps {
        roots: vec![dst_root.to_string()],
    };
    let props = match read(runner, cfg, remote, &props_op).await.and_then(|t| {
        zfs::parse_role_props(&t).map_err(|e| format!("`{}`: {e}", remote.show(&props_op)))
    }) {
        Ok(p) => p,
        Err(e) => {
            error!("{e}");
            return Exit::Transient;
        }
    };
    let mut diffs = BTreeMap::new();
    for (snapshot, dataset) in adopt::diffs_needed(&src, src_root, &dst, dst_root, &props) {
        let op = Op::Diff {
            snapshot,
            dataset: dataset.clone(),
        };
        match read(runner, cfg, remote, &op).await {
            Ok(out) => {
                diffs.insert(dataset, out);
            }
            Err(e) => {
                error!("{e}");
                return Exit::Transient;
            }
        }
    }
    let plan = adopt::plan_adopt(&src, src_root, &dst, dst_root, &props, &diffs);
    crate::outln!(
        "{}adopt {}:{dst_root} as the read-only standby of {src_root}",
        if args.dry_run { "would " } else { "" },
        peer.name
    );
    for c in &plan.checked {
        crate::outln!("  ok: {c}");
    }
    if !plan.obstacles.is_empty() {
        for o in &plan.obstacles {
            crate::outln!("  REFUSED: {o}");
        }
        error!(
            "adopt {}: the standby on {} holds something the master does not ({} finding(s)); nothing was changed. \
             Look at each one; a diverged dataset can be kept aside with `zfs-nfs-replica resolve DATASET --keep-divergent`",
            pool.name,
            peer.name,
            plan.obstacles.len()
        );
        return Exit::Refused;
    }
    crate::outln!("  steps, each run on {}:", peer.name);
    for (i, s) in plan.steps.iter().enumerate() {
        let flag = if s.destructive { "DESTRUCTIVE " } else { "" };
        crate::outln!("  {:>3}. {flag}{}", i + 1, s.op);
        crate::outln!("       # {}", s.note);
    }
    if plan.steps.is_empty() {
        crate::outln!("  nothing to change: it already is a read-only standby");
    }
    if args.dry_run {
        return Exit::Ok;
    }
    let ran = super::executor(runner, cfg, false)
        .resume(remote, &[pool.target().to_string()], &plan.steps)
        .await;
    let (done, failure) = (ran.done, ran.failure.map(|f| f.message));
    let rec = OperatorAction {
        time: crate::units::now_stamp(),
        action: "adopt".into(),
        pool: pool.name.to_string(),
        peer: peer.name.clone(),
        dataset: dst_root.to_string(),
        quarantine: None,
        steps: done,
        complete: failure.is_none(),
        error: failure.clone(),
    };
    if let Err(e) = state::record_action(&cfg.paths.state_dir, &rec) {
        warn!("cannot record the adoption: {e}");
    }
    if failure.is_some() {
        return Exit::Transient;
    }
    info!(
        "adopted {}:{dst_root}: it is a read-only standby of {src_root}; the next run places the holds and sends what is new",
        peer.name
    );
    Exit::Ok
}
