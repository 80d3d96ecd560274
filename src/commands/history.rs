//! `zfs-nfs-replica history rebuild POOL`: record both sides' current sizes
//! as the pool's size history. The operator's answer to a corrupt history
//! file (moved aside by the run) or to a deliberate change of the pool.

use tracing::{error, info, warn};

use crate::cli::{HistoryAction, HistoryArgs};
use crate::config::Config;
use crate::engine::{Engine, PoolJob, Settings};
use crate::exit::Exit;
use crate::history::{self, History};
use crate::lock::try_lock_pool;
use crate::progress_bar::Silent;
use crate::runner::SystemRunner;
use crate::ssh::Peer;

pub async fn history(cfg: &Config, args: &HistoryArgs) -> Exit {
    let HistoryAction::Rebuild { pool } = &args.action;
    let Some(p) = cfg.pools.iter().find(|p| p.name.as_str() == pool) else {
        error!("history rebuild {pool}: not a configured [[pool]]");
        return Exit::Config;
    };
    let local = match super::local_node(cfg) {
        Ok(n) => n,
        Err(e) => {
            error!("{e}");
            return Exit::Config;
        }
    };
    let _lock = match try_lock_pool(&cfg.paths.run_dir, pool) {
        Ok(l) => l,
        Err(e) => {
            error!("{e}");
            return Exit::Transient;
        }
    };
    let runner = SystemRunner {
        kill_grace: cfg.timeouts.kill_grace.get(),
    };
    let settings = Settings::from_config(cfg, &local, true);
    let mut silent = Silent;
    let mut engine = Engine::new(&runner, &settings, &mut silent);
    let job = PoolJob {
        source: p.name.to_string(),
        target: p.target().to_string(),
        exclude: Vec::new(),
        guard: None,
    };
    let mut h = History::new(pool);
    let mut code = Exit::Ok;
    for t in super::peers(cfg, &local) {
        let peer = match Peer::connect(&runner, &cfg.ssh, &t, &cfg.paths.run_dir).await {
            Ok(p) => p,
            Err(e) => {
                error!("{e}");
                code = Exit::Transient;
                continue;
            }
        };
        match engine.list_both(&job, &peer).await {
            Ok((src, dst)) => {
                let now = crate::units::now_stamp();
                if let Some(e) =
                    history::entry_from(now, &t.name, &job.source, &job.target, &src, &dst)
                {
                    info!(
                        "{pool} -> {}: recorded {} dataset(s) as they are now",
                        t.name,
                        e.datasets.len()
                    );
                    h.push(e);
                }
            }
            Err(e) => {
                error!("{e}");
                code = Exit::Transient;
            }
        }
        peer.close(cfg.ssh.connect_timeout.get()).await;
    }
    if h.entries.is_empty() {
        warn!("nothing recorded: the history of {pool} is unchanged");
        return code.and(Exit::Transient);
    }
    match history::save(&cfg.paths.state_dir, &h) {
        Ok(()) => {
            info!(
                "size history of {pool} rebuilt: {}",
                history::path(&cfg.paths.state_dir, pool).display()
            );
            code
        }
        Err(e) => {
            error!("{e}");
            Exit::Transient
        }
    }
}
