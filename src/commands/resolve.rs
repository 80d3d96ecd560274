//! `zfs-nfs-replica resolve POOL/DATASET --keep-divergent`: the operator's
//! explicit way out of a divergence. Run on the master: it sets the
//! receiver's divergent state aside in the quarantine (nothing is lost; see
//! `src/resolve.rs` for the steps), so that the next run re-syncs from the
//! newest common snapshot. `--dry-run` prints every step and runs none.

use tracing::{error, info, warn};

use crate::cli::ResolveArgs;
use crate::config::Config;
use crate::engine::list_pair;
use crate::exit::Exit;
use crate::lock::try_lock_pool;
use crate::resolve::{self, Request, ResolvePlan};
use crate::runner::{Runner, SystemRunner};
use crate::side::Side;
use crate::ssh::Peer;
use crate::state::{self, OperatorAction};

pub async fn resolve(cfg: &Config, args: &ResolveArgs) -> Exit {
    let Some(pool) = super::pool_of_dataset(cfg, &args.dataset) else {
        error!(
            "resolve {}: not in any configured [[pool]] (give the dataset's name on the master)",
            args.dataset
        );
        return Exit::Config;
    };
    let local = match super::require_master(cfg, "resolve").await {
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
    let code = resolve_with(&runner, cfg, args, pool, &local, &peer).await;
    peer.close(cfg.ssh.connect_timeout.get()).await;
    code
}

pub(crate) async fn resolve_with<R: Runner>(
    runner: &R,
    cfg: &Config,
    args: &ResolveArgs,
    pool: &crate::config::Pool,
    local: &str,
    peer: &Peer,
) -> Exit {
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
            return Exit::Transient;
        }
    };
    // An earlier resolve of this pool that stopped half-way: finish it
    // (its steps are recognised as done from the real state), whatever
    // dataset was named this time.
    if let Some(j) = load_journal(cfg, pool.name.as_str()) {
        crate::outln!(
            "{}finishing the resolve of {} started {} (it stopped: {}); {} kept in {}",
            if args.dry_run { "would be " } else { "" },
            j.plan_target,
            j.started,
            j.error.as_deref().unwrap_or("interrupted"),
            j.plan_target,
            j.quarantine
        );
        for (i, s) in j.steps.iter().enumerate() {
            crate::outln!(
                "  {:>3}. {}{}",
                i + 1,
                if s.destructive { "DESTRUCTIVE " } else { "" },
                s.op
            );
        }
        if args.dry_run {
            return Exit::Ok;
        }
        return finish(runner, cfg, pool, peer, j).await;
    }
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
        container_exists: quarantine.contains(&crate::quarantine::container(dst_root)),
    }) {
        Ok(p) => p,
        // Already resolved (by an earlier run, or with a parent): done.
        Err(e) if e.starts_with(resolve::NOTHING_TO_RESOLVE) => {
            info!("resolve {}: {e}", args.dataset);
            crate::outln!("{e}");
            return Exit::Ok;
        }
        Err(e) => {
            error!("resolve {}: {e}", args.dataset);
            return Exit::Refused;
        }
    };
    print_plan(&plan, local, &peer.name, args.dry_run);
    if args.dry_run {
        return Exit::Ok;
    }
    let j = Journal {
        plan_target: plan.target.clone(),
        quarantine: plan.quarantine.clone(),
        peer: peer.name.clone(),
        started: crate::units::now_stamp(),
        steps: plan.steps.clone(),
        error: None,
    };
    finish(runner, cfg, pool, peer, j).await
}

/// A resolve's plan, kept in the state dir from before its first step until
/// it completed: a resolve that stopped half-way (a failed step, a crash)
/// is finished by the next `resolve` of the pool.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Journal {
    plan_target: String,
    quarantine: String,
    peer: String,
    started: String,
    steps: Vec<crate::step::Step>,
    error: Option<String>,
}

fn journal_path(cfg: &Config, pool: &str) -> std::path::PathBuf {
    cfg.paths
        .state_dir
        .join(format!("resolve-{}.journal.json", pool.replace('/', "%2F")))
}

fn load_journal(cfg: &Config, pool: &str) -> Option<Journal> {
    let text =
        crate::files::read_text_if_exists(&journal_path(cfg, pool), crate::files::DEFAULT_LIMIT)
            .map_err(|e| warn!("{e}"))
            .ok()??;
    serde_json::from_str(&text)
        .map_err(|e| warn!("{}: {e}", journal_path(cfg, pool).display()))
        .ok()
}

fn save_journal(cfg: &Config, pool: &str, j: &Journal) {
    let path = journal_path(cfg, pool);
    let res = std::fs::create_dir_all(&cfg.paths.state_dir)
        .map_err(|e| e.to_string())
        .and_then(|_| serde_json::to_string_pretty(j).map_err(|e| e.to_string()))
        .and_then(|t| {
            crate::files::replace_atomically(&path, t.as_bytes(), 0o600, None)
                .map_err(|e| e.to_string())
        });
    if let Err(e) = res {
        warn!("cannot keep the resolve's plan in {}: {e}", path.display());
    }
}

/// Run a resolve's steps (those already done are recognised and skipped),
/// record it, and when it completed, the size history of both sides as
/// they now are: the quarantine moved data out of the receiver's copy on
/// purpose, and the next run must not take that for a vanished replica.
async fn finish<R: Runner>(
    runner: &R,
    cfg: &Config,
    pool: &crate::config::Pool,
    peer: &Peer,
    mut j: Journal,
) -> Exit {
    let remote = Side::Remote(peer);
    save_journal(cfg, pool.name.as_str(), &j);
    let ran = super::executor(runner, cfg, false)
        .resume(remote, &[pool.target().to_string()], &j.steps)
        .await;
    let (done, failure) = (ran.done, ran.failure.map(|f| f.message));
    let complete = failure.is_none();
    if let Some(e) = &failure {
        error!(
            "the divergent data is kept: look at {} on {}; `zfs-nfs-replica resolve {} --keep-divergent` again finishes this resolve",
            j.quarantine, peer.name, j.plan_target
        );
        j.error = Some(e.clone());
        save_journal(cfg, pool.name.as_str(), &j);
    } else {
        let _ = std::fs::remove_file(journal_path(cfg, pool.name.as_str()));
    }
    let rec = OperatorAction {
        time: crate::units::now_stamp(),
        action: "resolve".into(),
        pool: pool.name.to_string(),
        peer: peer.name.clone(),
        dataset: j.plan_target.clone(),
        quarantine: Some(j.quarantine.clone()),
        steps: done,
        complete,
        error: failure,
    };
    if let Err(e) = state::record_action(&cfg.paths.state_dir, &rec) {
        warn!("cannot record the resolve: {e}");
    }
    if !complete {
        return Exit::Transient;
    }
    record_sizes(runner, cfg, pool, peer).await;
    info!(
        "resolved {} on {}: its divergent state is kept in {} (read-only); the next run re-syncs it from the common snapshot",
        j.plan_target, peer.name, j.quarantine
    );
    Exit::Ok
}

/// Both sides' sizes, now, as the pool's history entry for this peer.
async fn record_sizes<R: Runner>(
    runner: &R,
    cfg: &Config,
    pool: &crate::config::Pool,
    peer: &Peer,
) {
    let (src_root, dst_root) = (pool.name.as_str(), pool.target());
    let listed = list_pair(
        runner,
        cfg.timeouts.command.get(),
        (Side::Local, src_root),
        (Side::Remote(peer), dst_root),
    )
    .await;
    let (src, dst, _) = match listed {
        Ok(x) => x,
        Err(e) => {
            warn!("size history not updated after the resolve: {e}");
            return;
        }
    };
    let Some(entry) = crate::history::entry_from(
        crate::units::now_stamp(),
        &peer.name,
        src_root,
        dst_root,
        &src,
        &dst,
    ) else {
        return;
    };
    let dir = &cfg.paths.state_dir;
    let mut h = match crate::history::load(dir, src_root, true) {
        Ok(crate::history::Loaded::Ok(h)) => h,
        _ => crate::history::History::new(src_root),
    };
    h.push(entry);
    if let Err(e) = crate::history::save(dir, &h) {
        warn!("size history not updated after the resolve: {e}");
    }
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
