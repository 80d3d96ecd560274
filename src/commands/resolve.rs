//! `zfs-nfs-replica resolve POOL/DATASET --keep-divergent`: the operator's
//! explicit way out of a divergence. Run on the master: it sets the
//! receiver's divergent state aside in the quarantine (nothing is lost; see
//! `src/resolve.rs` for the steps), so that the next run re-syncs from the
//! newest common snapshot. `--dry-run` prints every step and runs none.

use tracing::{error, info, warn};

use crate::cli::ResolveArgs;
use crate::config::Config;
use crate::engine::{Side, list_pair};
use crate::exit;
use crate::lock::try_lock_pool;
use crate::resolve::{self, Request, ResolvePlan};
use crate::runner::{Runner, SystemRunner};
use crate::ssh::Peer;
use crate::state::{self, OperatorAction};

pub async fn resolve(cfg: &Config, args: &ResolveArgs) -> u8 {
    let Some(pool) = super::pool_of_dataset(cfg, &args.dataset) else {
        error!(
            "resolve {}: not in any configured [[pool]] (give the dataset's name on the master)",
            args.dataset
        );
        return exit::CONFIG;
    };
    let local = match super::require_master(cfg, "resolve").await {
        Ok(l) => l,
        Err(code) => return code,
    };
    let target = match super::pick_peer(cfg, &local, args.peer.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            error!("{e}");
            return exit::CONFIG;
        }
    };
    let _lock = if args.dry_run {
        None
    } else {
        match try_lock_pool(&cfg.paths.run_dir, pool.name.as_str()) {
            Ok(l) => Some(l),
            Err(e) => {
                error!("{e}");
                return exit::TRANSIENT;
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
            return exit::TRANSIENT;
        }
    };
    let code = resolve_with(&runner, cfg, args, pool, &local, &peer).await;
    peer.close(cfg.ssh.connect_timeout.get()).await;
    code
}

async fn resolve_with<R: Runner>(
    runner: &R,
    cfg: &Config,
    args: &ResolveArgs,
    pool: &crate::config::Pool,
    local: &str,
    peer: &Peer,
) -> u8 {
    let (src_root, dst_root) = (pool.name.as_str(), pool.target());
    let remote = Side::Remote(peer);
    let (src, dst, quarantine) = match list_pair(
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
            return exit::TRANSIENT;
        }
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let mountpoint = cfg
        .paths
        .state_dir
        .join("quarantine")
        .join(dst_root)
        .display()
        .to_string();
    let plan = match resolve::plan_resolve(&Request {
        src: &src,
        src_root,
        dst: &dst,
        dst_root,
        dataset: &args.dataset,
        stamp: &stamp,
        mountpoint: &mountpoint,
        container_exists: quarantine.contains(&resolve::container(dst_root)),
    }) {
        Ok(p) => p,
        Err(e) => {
            error!("resolve {}: {e}", args.dataset);
            return exit::REFUSED;
        }
    };
    print_plan(&plan, local, &peer.name, args.dry_run);
    if args.dry_run {
        return exit::OK;
    }
    let (done, failure) = super::execute_steps(runner, cfg, remote, &plan.steps).await;
    if failure.is_some() {
        error!(
            "the divergent data is kept: look at {} on {}",
            plan.quarantine, peer.name
        );
    }
    let complete = failure.is_none();
    let rec = OperatorAction {
        time: state::now_rfc3339(),
        action: "resolve".into(),
        pool: pool.name.to_string(),
        peer: peer.name.clone(),
        dataset: plan.target.clone(),
        quarantine: Some(plan.quarantine.clone()),
        steps: done,
        complete,
        error: failure,
    };
    if let Err(e) = state::record_action(&cfg.paths.state_dir, &rec) {
        warn!("cannot record the resolve: {e}");
    }
    if !complete {
        return exit::TRANSIENT;
    }
    info!(
        "resolved {} on {}: its divergent state is kept in {} (mounted read-only below {mountpoint}); the next run re-syncs it from the common snapshot",
        plan.target, peer.name, plan.quarantine
    );
    exit::OK
}

fn print_plan(plan: &ResolvePlan, source: &str, receiver: &str, dry_run: bool) {
    let mut out = vec![format!(
        "{}resolve {} on {receiver} (receiver), keeping its divergent state in {}",
        if dry_run { "would " } else { "" },
        plan.target,
        plan.quarantine
    )];
    for e in &plan.evidence {
        out.push(format!("  {} ({})", e.target, e.kind()));
        for l in e.lines(source, receiver) {
            out.push(format!("    {l}"));
        }
    }
    out.push(format!("  steps, each run on {receiver}:"));
    for (i, s) in plan.steps.iter().enumerate() {
        let flag = if s.destructive { "DESTRUCTIVE " } else { "" };
        out.push(format!("  {:>3}. {flag}{}", i + 1, s.op));
        out.push(format!("       # {}", s.note));
    }
    for (from, to) in &plan.moved {
        out.push(format!("  kept: {from} -> {to}"));
    }
    for f in &plan.sent_in_full {
        out.push(format!(
            "  {f}: no snapshot in common: the next run sends it in full"
        ));
    }
    out.push(format!(
        "  then: the next run sends the source's newer snapshots from the common snapshot; {} stays until you destroy it (README: Divergence)",
        plan.quarantine
    ));
    crate::outln!("{}", out.join("\n"));
}
