//! `zfs-nfs-replica run`: decide the role, then replicate every pool to every peer.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use tracing::{error, info, warn};

use crate::cli::RunArgs;
use crate::config::Config;
use crate::engine::{Engine, GuardJob, Outcome, PoolJob, PoolReport, Settings};
use crate::exit;
use crate::guard;
use crate::history::{self, History, Loaded};
use crate::lock::{LockError, try_lock_pool};
use crate::progress::{Bar, Progress, Silent};
use crate::pve::{self, Purpose};
use crate::role::{self, Role};
use crate::runner::{Runner, SystemRunner};
use crate::ssh::Peer;

pub async fn run(cfg: &Config, args: &RunArgs) -> u8 {
    for (flag, list) in [
        ("--pool", &args.pools),
        ("--accept-size-change", &args.accept_size_change),
    ] {
        for p in list {
            if !cfg.pools.iter().any(|c| c.name.as_str() == p) {
                error!("{flag} {p}: not a configured [[pool]]");
                return exit::CONFIG;
            }
        }
    }
    let decision = pve::decide(cfg, Purpose::Run).await;
    let local = decision.local.clone();
    let runner = SystemRunner {
        kill_grace: cfg.timeouts.kill_grace.get(),
    };
    let cmd_timeout = cfg.timeouts.command.get();
    // What dry-run prints before the replication plan.
    let mut shown: Vec<String> = Vec::new();
    let mut role_code = exit::NOTHING_TO_DO;
    match decision.role {
        Role::Unsure { reason } => {
            error!(
                node = %local,
                "refusing: nobody is surely master ({reason}); sanoid.conf and ZFS left as they are"
            );
            if args.dry_run {
                println!(
                    "# this node ({local}): nobody is surely master: {reason}\n# nothing would be done"
                );
            }
            return exit::REFUSED;
        }
        Role::Standby { master } => {
            info!(node = %local, master = %master, "this node is a standby: nothing to send");
            shown.push(format!(
                "# this node ({local}) is a standby; {master} is master"
            ));
            match role::set_autosnap(cfg, false, args.dry_run) {
                Ok(Some(line)) => {
                    info!("sanoid: {line}");
                    shown.push(format!("# sanoid: {line}"));
                }
                Ok(None) => {}
                Err(e) => {
                    error!("refusing: sanoid config: {e}; left untouched");
                    return exit::REFUSED;
                }
            }
            for line in role::standby_lag(&runner, cfg, cmd_timeout).await {
                info!("standby: {line}");
                shown.push(format!("# {line}"));
            }
            if args.dry_run {
                println!("{}", shown.join("\n"));
            }
            return exit::NOTHING_TO_DO;
        }
        Role::Master => {
            info!(node = %local, "this node is master");
            shown.push(format!("# this node ({local}) is master"));
            match role::set_autosnap(cfg, true, args.dry_run) {
                Ok(Some(line)) => {
                    info!("sanoid: {line}");
                    shown.push(format!("# sanoid: {line}"));
                }
                Ok(None) => {}
                Err(e) => {
                    error!("refusing: sanoid config: {e}; left untouched");
                    return exit::REFUSED;
                }
            }
            let ch = role::make_writable(&runner, cfg, args.dry_run, cmd_timeout).await;
            role::log_changes("master", &ch);
            shown.extend(ch.done.iter().map(|d| format!("# {d}")));
            if !ch.errors.is_empty() {
                role_code = exit::TRANSIENT;
            }
        }
    }
    let settings = Settings {
        local_node: local.clone(),
        hold_tag: cfg.replication.hold_tag.to_string(),
        send_properties: cfg.replication.send_properties,
        command_timeout: cfg.timeouts.command.get(),
        stall_timeout: cfg.timeouts.stall.get(),
        transfer_timeout: cfg.timeouts.transfer.get(),
        dry_run: args.dry_run,
        overwrite_empty: args.overwrite_empty_target,
    };
    let mut bar = Bar::new();
    let mut silent = Silent;
    let progress: &mut dyn Progress =
        if std::io::stderr().is_terminal() && !crate::logging::under_journald() {
            &mut bar
        } else {
            &mut silent
        };
    let mut engine = Engine::new(&runner, &settings, progress);
    engine.shown = shown;
    let reports = replicate_all(cfg, args, &local, &runner, &mut engine).await;
    if args.dry_run {
        println!("{}", engine.shown.join("\n"));
    }
    for r in &reports {
        match r.outcome {
            Outcome::Refused | Outcome::Transient => warn!("{}", r.summary()),
            _ => info!("{}", r.summary()),
        }
    }
    let code = exit::combine(reports.iter().map(|r| r.outcome));
    // A failed role change (readonly) counts, but never hides a worse outcome.
    if role_code > exit::NOTHING_TO_DO && (code <= exit::NOTHING_TO_DO || role_code > code) {
        role_code
    } else {
        code
    }
}

async fn replicate_all<R: Runner>(
    cfg: &Config,
    args: &RunArgs,
    local: &str,
    runner: &R,
    engine: &mut Engine<'_, R>,
) -> Vec<PoolReport> {
    let mut peers: BTreeMap<String, Result<Peer, String>> = BTreeMap::new();
    let mut reports = Vec::new();
    let targets = super::peers(cfg, local);
    for pool in cfg
        .pools
        .iter()
        .filter(|p| args.pools.is_empty() || args.pools.iter().any(|n| n == p.name.as_str()))
    {
        let mut job = PoolJob {
            source: pool.name.to_string(),
            target: pool.target().to_string(),
            exclude: pool.exclude.iter().map(|e| e.to_string()).collect(),
            guard: None,
        };
        // Dry-run takes no lock: it must not create or change any file.
        let _lock = if args.dry_run {
            None
        } else {
            match try_lock_pool(&cfg.paths.run_dir, pool.name.as_str()) {
                Ok(l) => Some(l),
                Err(e) => {
                    let busy = matches!(e, LockError::Busy { .. });
                    warn!("skipping pool {}: {e}", pool.name);
                    for t in &targets {
                        reports.push(failed_report(
                            &job,
                            &t.name,
                            e.to_string(),
                            if busy {
                                Outcome::Transient
                            } else {
                                Outcome::Refused
                            },
                        ));
                    }
                    continue;
                }
            }
        };
        // The size history, read under the pool's lock. One that cannot be
        // trusted refuses the pool until it is rebuilt.
        let mut hist = match history::load(&cfg.paths.state_dir, pool.name.as_str(), !args.dry_run)
        {
            Ok(Loaded::Ok(h)) => Some(h),
            Ok(Loaded::None) => None,
            other => {
                let why = match other {
                    Ok(Loaded::Corrupt { reason, moved_to }) => format!(
                        "size history is corrupt ({reason}); kept as {}",
                        moved_to.display()
                    ),
                    Ok(Loaded::NeedsRebuild { aside }) => format!(
                        "size history was corrupt (kept as {}) and has not been rebuilt",
                        aside.display()
                    ),
                    Err(e) => format!("size history unreadable: {e}"),
                    Ok(_) => unreachable!(),
                };
                let msg = format!(
                    "{why}: pool refused until `zfs-nfs-replica history rebuild {}`",
                    pool.name
                );
                error!("{msg}");
                for t in &targets {
                    reports.push(failed_report(&job, &t.name, msg.clone(), Outcome::Refused));
                }
                continue;
            }
        };
        let accept = args
            .accept_size_change
            .iter()
            .any(|p| p == pool.name.as_str());
        for t in &targets {
            job.guard = Some(GuardJob {
                last: hist.as_ref().and_then(|h| h.last_for(&t.name).cloned()),
                thresholds: guard::Thresholds {
                    min_size_ratio: pool.min_size_ratio,
                    history_tolerance: pool.history_tolerance,
                },
                accept,
            });
            if !peers.contains_key(&t.name) {
                if args.dry_run {
                    engine
                        .shown
                        .push(format!("# connect to {} ({}) over ssh", t.name, t.addr));
                }
                let sock_dir = super::socket_dir(cfg, args.dry_run);
                let p = Peer::connect(runner, &cfg.ssh, t, &sock_dir)
                    .await
                    .map_err(|e| e.to_string());
                if let Err(e) = &p {
                    error!("{e}");
                }
                peers.insert(t.name.clone(), p);
            }
            match &peers[&t.name] {
                Ok(peer) => {
                    if args.dry_run {
                        engine
                            .shown
                            .push(format!("pool {} -> {}:{}", job.source, t.name, job.target));
                    }
                    let report = engine.replicate(&job, peer).await;
                    if !args.dry_run {
                        record_history(cfg, &job, &t.name, &report, &mut hist);
                    }
                    reports.push(report);
                }
                Err(e) => reports.push(failed_report(&job, &t.name, e.clone(), Outcome::Transient)),
            }
        }
    }
    for (_, p) in peers {
        if let Ok(p) = p {
            p.close(cfg.ssh.connect_timeout.get()).await;
        }
    }
    reports
}

/// After a pool run that the guards let through and that completed (every
/// dataset decided: sent, up to date, or refused by a conflict), add both
/// sides' sizes to the pool's history.
fn record_history(
    cfg: &Config,
    job: &PoolJob,
    peer: &str,
    report: &PoolReport,
    hist: &mut Option<History>,
) {
    if report.error.is_some() {
        return;
    }
    let Some((src, dst)) = &report.listings else {
        return;
    };
    let now = crate::state::now_rfc3339();
    let Some(entry) = history::entry_from(now, peer, &job.source, &job.target, src, dst) else {
        return;
    };
    let h = hist.get_or_insert_with(|| History::new(&job.source));
    h.push(entry);
    if let Err(e) = history::save(&cfg.paths.state_dir, h) {
        error!("cannot record the size history of {}: {e}", job.source);
    }
}

fn failed_report(job: &PoolJob, peer: &str, error: String, outcome: Outcome) -> PoolReport {
    PoolReport {
        pool: job.source.clone(),
        peer: peer.to_string(),
        outcome,
        datasets: Vec::new(),
        receiver_only: Vec::new(),
        bytes: 0,
        duration: Default::default(),
        error: Some(error),
        listings: None,
        quarantine: Vec::new(),
    }
}
