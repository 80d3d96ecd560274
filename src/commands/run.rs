//! `zfs-nfs-replica run`: decide the role, then replicate every pool to every peer.

use std::collections::BTreeMap;
use std::io::IsTerminal;

use tracing::{error, info, warn};

use crate::cli::RunArgs;
use crate::config::Config;
use crate::engine::{Engine, Outcome, PoolJob, PoolReport, Settings};
use crate::exit;
use crate::lock::{LockError, try_lock_pool};
use crate::progress::{Bar, Progress, Silent};
use crate::role::{Role, RoleSource};
use crate::runner::{Runner, SystemRunner};
use crate::ssh::Peer;

pub async fn run(cfg: &Config, args: &RunArgs, role_source: &impl RoleSource) -> u8 {
    let local = match super::local_node(cfg) {
        Ok(n) => n,
        Err(e) => {
            error!("{e}");
            return exit::CONFIG;
        }
    };
    for p in &args.pools {
        if !cfg.pools.iter().any(|c| c.name.as_str() == p) {
            error!("--pool {p}: not a configured [[pool]]");
            return exit::CONFIG;
        }
    }
    match role_source.decide(&local).await {
        Role::Master => info!(node = %local, "this node is master"),
        Role::Standby { master } => {
            info!(node = %local, master = %master, "this node is a standby: nothing to send");
            return exit::NOTHING_TO_DO;
        }
        Role::Unsure { reason } => {
            error!(node = %local, "refusing to replicate: master checks failed: {reason}");
            return exit::REFUSED;
        }
    }
    let runner = SystemRunner {
        kill_grace: cfg.timeouts.kill_grace.get(),
    };
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
    exit::combine(reports.iter().map(|r| r.outcome))
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
        let job = PoolJob {
            source: pool.name.to_string(),
            target: pool.target().to_string(),
            exclude: pool.exclude.iter().map(|e| e.to_string()).collect(),
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
        for t in &targets {
            if !peers.contains_key(&t.name) {
                if args.dry_run {
                    engine
                        .shown
                        .push(format!("# connect to {} ({}) over ssh", t.name, t.addr));
                }
                // Dry-run creates nothing in run_dir: its ssh control socket
                // lives in a temporary directory.
                let sock_dir = if args.dry_run {
                    std::env::temp_dir()
                } else {
                    cfg.paths.run_dir.clone()
                };
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
                    reports.push(engine.replicate(&job, peer).await);
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
    }
}
