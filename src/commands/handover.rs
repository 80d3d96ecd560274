//! `zfs-nfs-replica handover --to NODE --within DURATION`: run on the old
//! master by the node the guest moved to (from its `pre-start` hook, over
//! ssh; see `src/handover.rs`). Hands this node's last writes over: checks
//! that the cluster places the guest on NODE, stops being master (sanoid
//! off, one snapshot of everything written since its newest snapshot),
//! replicates to NODE as a run does, then makes its datasets read-only. Prints its report as
//! one JSON line; exit codes as `run`.

use std::time::Instant;

use tracing::{error, info, warn};

use crate::cli::{HandoverArgs, RunArgs};
use crate::config::Config;
use crate::engine::{Engine, Settings};
use crate::exit::{self, Exit};
use crate::handover::{NOT_MASTER, Report, snapshot_name};
use crate::progress_bar::Silent;
use crate::report::Outcome;
use crate::role;
use crate::runner::{Runner, SystemRunner, stderr_head};
use crate::state;
use crate::zfs::Op;

pub async fn handover(cfg: &Config, args: &HandoverArgs) -> Exit {
    let started = Instant::now();
    let mut report = Report {
        to: args.to.clone(),
        ..Report::default()
    };
    let code = match tokio::time::timeout(args.within, inner(cfg, args, &mut report)).await {
        Ok(c) => c,
        Err(_) => {
            report.error = Some(format!(
                "not finished within {}s: the transfers stop here and resume on the next run",
                args.within.as_secs()
            ));
            Exit::Transient
        }
    };
    report.seconds = started.elapsed().as_secs_f64();
    match &report.error {
        Some(e) => error!("handover to {}: {e}", args.to),
        None => info!("{}", report.line()),
    }
    match serde_json::to_string(&report) {
        Ok(j) => crate::outln!("{j}"),
        Err(e) => error!("{e}"),
    }
    code
}

async fn inner(cfg: &Config, args: &HandoverArgs, report: &mut Report) -> Exit {
    let local = match super::local_node(cfg) {
        Ok(n) => n,
        Err(e) => {
            report.error = Some(e);
            return Exit::Config;
        }
    };
    report.from = local.clone();
    if args.to == local || !cfg.cluster.nodes.keys().any(|n| n.as_str() == args.to) {
        report.error = Some(format!(
            "--to {}: not another node of [cluster] nodes",
            args.to
        ));
        return Exit::Config;
    }
    // 1. The guest has left this node, for exactly that node.
    match crate::pve::placement(cfg).await {
        Ok((node, _)) if node == args.to => {}
        Ok((node, status)) => {
            report.error = Some(format!(
                "the cluster places guest {} on {node} ({}), not on {}: nothing handed over",
                cfg.cluster.guest,
                status.as_deref().unwrap_or("status unknown"),
                args.to
            ));
            return Exit::Refused;
        }
        Err(e) => {
            report.error = Some(format!("cannot tell where the guest is: {e}"));
            return Exit::Refused;
        }
    }
    // ...and this node was its master: a standby has nothing of its own.
    let dir = &cfg.paths.state_dir;
    // Since when: the size history of this stretch as master counts (this
    // node is recorded as a standby below, before anything is sent).
    let master_since = match state::load_role(dir) {
        Ok(Some(r)) if r.role == crate::report::RoleName::Master => r.since,
        _ => {
            info!(
                "handover to {}: this node was not master: nothing to hand over",
                args.to
            );
            report.result = NOT_MASTER.into();
            return Exit::NothingToDo;
        }
    };
    let runner = SystemRunner {
        kill_grace: cfg.timeouts.kill_grace.get(),
    };
    let timeout = cfg.timeouts.command.get();
    // 2. No longer master: sanoid takes no snapshot after the handover's...
    if let Err(e) = role::set_autosnap(cfg, false, false) {
        warn!("handover: sanoid.conf left as it is: {e}");
    }
    // ...one snapshot, at one instant, of every dataset written since its
    // newest snapshot...
    let roots: Vec<String> = cfg.pools.iter().map(|p| p.name.to_string()).collect();
    let op = Op::List {
        roots: roots.clone(),
    };
    let listed = crate::engine::list_one(&runner, timeout, crate::side::Side::Local, &op).await;
    let listing = match listed {
        Ok(l) => l,
        Err(e) => {
            report.error = Some(format!("cannot list this node's pools: {e}"));
            return Exit::Transient;
        }
    };
    let name = snapshot_name(chrono::Utc::now());
    // Only datasets that are replicated at all: one without a snapshot has
    // never been sent (and would not be now).
    let changed: Vec<String> = listing
        .datasets
        .values()
        .filter(|d| d.written > 0 && !d.snapshots.is_empty())
        .filter(|d| cfg.pools.iter().any(|p| p.manages(&d.name)))
        .map(|d| d.name.clone())
        .collect();
    if !changed.is_empty() {
        // One command per pool: a `zfs snapshot` of several datasets is
        // atomic within one pool only (OpenZFS refuses several pools).
        let mut by_pool: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for d in &changed {
            let pool = d.split('/').next().unwrap_or(d);
            by_pool.entry(pool).or_default().push(format!("{d}@{name}"));
        }
        for snapshots in by_pool.into_values() {
            let op = Op::SnapshotMany { snapshots };
            info!("handover: {op}");
            match runner.output(&op.to_cmd(), timeout).await {
                Ok(o) if o.success() => {}
                Ok(o) => {
                    report.error = Some(format!("`{op}` failed: {}", stderr_head(&o.stderr)));
                    return Exit::Transient;
                }
                Err(e) => {
                    report.error = Some(e.to_string());
                    return Exit::Transient;
                }
            }
        }
        report.snapshot = Some(name);
        report.datasets = changed;
    }
    if let Err(e) = state::record_role(dir, crate::report::RoleName::Standby, &args.to) {
        warn!("cannot record this node's role: {e}");
    }
    // 3. The last increments to the new master, as a run sends them (its
    // answer lets exactly this node write: it waits for this handover).
    let run_args = RunArgs {
        dry_run: false,
        pools: Vec::new(),
        overwrite_empty_target: false,
        accept_size_change: Vec::new(),
        handover: true,
    };
    let settings = Settings {
        command_timeout: timeout,
        ..Settings::from_config(cfg, &local, false)
    };
    let mut silent = Silent;
    let mut engine = Engine::new(&runner, &settings, &mut silent);
    let mut all = send_to(cfg, &run_args, &mut engine, &args.to, &master_since).await;
    // A pool whose copy on the new master diverged (that node crashed as
    // master once, and what it wrote then never came here; nobody resolved
    // since): the guest must start with what it served here a moment ago,
    // not with that older branch. Such a copy is refused as a conflict, or
    // earlier by the size guards (the branch can be much bigger than the
    // live data), so every refused pool is looked at: `resolve` acts only
    // on real evidence of divergence and keeps all of it (quarantine,
    // held); the pools it set aside are sent again.
    for r in all.reports.iter().filter(|r| r.outcome == Outcome::Refused) {
        match quarantine_on_new_master(&runner, cfg, &local, &args.to, &r.pool).await {
            Ok(()) => report.quarantined.push(r.pool.clone()),
            Err(e) => warn!(
                "handover: {}: the new master's diverged copy stays: {e}",
                r.pool
            ),
        }
    }
    if !report.quarantined.is_empty() {
        let again = RunArgs {
            pools: report.quarantined.clone(),
            ..run_args
        };
        let more = send_to(cfg, &again, &mut engine, &args.to, &master_since).await;
        all.reports
            .retain(|r| !report.quarantined.contains(&r.pool));
        all.reports.extend(more.reports);
    }
    // ...and nothing here changes any more (`post-stop` usually made these
    // datasets read-only already; the `readonly=on` a `-p` stream then
    // carries is masked by the new master's `zfs inherit readonly`).
    let ch = role::make_readonly(&runner, cfg, &[], false, timeout).await;
    role::log_changes("handover", &ch);
    report.bytes = all.reports.iter().map(|r| r.bytes).sum();
    for r in &all.reports {
        match r.outcome {
            Outcome::Refused | Outcome::Transient => warn!("{}", r.summary()),
            _ => info!("{}", r.summary()),
        }
    }
    let code = exit::combine(all.reports.iter().map(|r| r.outcome));
    report.result = code.result().to_string();
    if !code.is_success() {
        report.error = Some(
            all.reports
                .iter()
                .filter(|r| r.outcome >= Outcome::Transient)
                .map(|r| r.summary())
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    code
}

/// Used by the hook, on the node the guest moved to: ask `from` to hand
/// over, within what is left of `budget`; the report (or why there is none).
pub async fn pull<R: Runner>(
    runner: &R,
    cfg: &Config,
    from: &str,
    local: &str,
    budget: std::time::Duration,
) -> Report {
    let started = Instant::now();
    let failed = |e: String| Report {
        from: from.to_string(),
        to: local.to_string(),
        error: Some(e),
        seconds: started.elapsed().as_secs_f64(),
        ..Report::default()
    };
    let Some(addr) = cfg
        .cluster
        .nodes
        .iter()
        .find(|(n, _)| n.as_str() == from)
        .map(|(_, a)| a.clone())
    else {
        return failed(format!("{from} is not in [cluster] nodes"));
    };
    let run_dir = &cfg.paths.run_dir;
    let until = std::time::SystemTime::now() + budget + std::time::Duration::from_secs(10);
    if let Err(e) = crate::handover::expect(run_dir, from, until) {
        return failed(e);
    }
    let target = crate::ssh::Target {
        name: from.to_string(),
        addr,
    };
    let peer =
        match crate::ssh::Peer::connect(runner, &cfg.ssh, &target, &super::socket_dir(cfg, false))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                crate::handover::clear(run_dir);
                return failed(format!("{from} is unreachable ({e})"));
            }
        };
    let within = crate::handover::within(budget, started.elapsed());
    let op = Op::Handover {
        to: local.to_string(),
        within: within.as_secs().max(1),
    };
    let side = crate::side::Side::Remote(&peer);
    info!("pre-start: asking {from} to hand over: {}", side.show(&op));
    let out = runner
        .output(&side.cmd(&op), within + std::time::Duration::from_secs(5))
        .await;
    peer.close(cfg.ssh.connect_timeout.get()).await;
    crate::handover::clear(run_dir);
    let mut r = match out {
        Ok(o) => match o
            .stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Report>(l).ok())
        {
            Some(r) => r,
            None => failed(format!(
                "{from} gave no report (exit {}): {}",
                o.status,
                stderr_head(&o.stderr)
            )),
        },
        Err(e) => failed(e.to_string()),
    };
    r.seconds = started.elapsed().as_secs_f64();
    r
}

/// `resolve POOL --keep-divergent` into the new master, from here (under
/// the pool's lock), for the handover.
async fn quarantine_on_new_master<R: Runner>(
    runner: &R,
    cfg: &Config,
    local: &str,
    to: &str,
    pool_name: &str,
) -> Result<(), String> {
    let pool = cfg
        .pools
        .iter()
        .find(|p| p.name.as_str() == pool_name)
        .ok_or_else(|| format!("{pool_name} is not a configured pool"))?;
    let target = super::pick_peer(cfg, local, Some(to))?;
    let _lock =
        crate::lock::try_lock_pool(&cfg.paths.run_dir, pool_name).map_err(|e| e.to_string())?;
    let peer = crate::ssh::Peer::connect(runner, &cfg.ssh, &target, &super::socket_dir(cfg, false))
        .await
        .map_err(|e| e.to_string())?;
    warn!(
        "handover: {to}'s copy of {pool_name} diverged from this node's: keeping it in {to}'s quarantine before the guest starts there"
    );
    let args = crate::cli::ResolveArgs {
        dataset: pool_name.to_string(),
        keep_divergent: true,
        dry_run: false,
        peer: Some(to.to_string()),
    };
    let code = super::resolve::resolve_with(runner, cfg, &args, pool, local, &peer).await;
    peer.close(cfg.ssh.connect_timeout.get()).await;
    if code == Exit::Ok {
        Ok(())
    } else {
        Err(format!(
            "resolve {pool_name} --keep-divergent exited {}",
            code.code()
        ))
    }
}

/// Replicate `args`' pools to `to` alone, as a run does.
async fn send_to<R: Runner>(
    cfg: &Config,
    args: &RunArgs,
    engine: &mut Engine<'_, R>,
    to: &str,
    master_since: &Option<String>,
) -> super::run::All {
    let scope = super::run::Scope {
        refused: &Default::default(),
        want_peer_health: false,
        peers: Default::default(),
        only_peer: Some(to),
        master_since: master_since.clone(),
    };
    super::run::replicate_all(cfg, args, engine, scope).await
}
