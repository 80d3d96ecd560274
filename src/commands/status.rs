//! `zfs-nfs-replica status [--json | --check]`: the last run's facts, from
//! local state only (the status file and the pool locks): fast, and it
//! works when the peer or the Proxmox API is down.

use std::io::IsTerminal;

use crate::cli::StatusArgs;
use crate::config::Config;
use crate::exit::Exit;
use crate::status::{self, InProgress, render};

/// Nagios' UNKNOWN.
const UNKNOWN: u8 = 3;

pub fn status(cfg: &Config, args: &StatusArgs) -> Exit {
    let mut t = status::Thresholds::from_config(&cfg.status);
    if let Some(w) = args.warn_lag {
        t.warn_lag = w;
    }
    if let Some(c) = args.crit_lag {
        t.crit_lag = c;
    }
    let loaded = status::load(&cfg.paths.state_dir);
    let mut s = match loaded {
        Ok(Some(s)) => s,
        other => {
            let why = match other {
                Ok(_) => format!(
                    "no run recorded yet ({} does not exist)",
                    status::path(&cfg.paths.state_dir).display()
                ),
                Err(e) => format!("unreadable status: {e}"),
            };
            if args.check {
                crate::outln!("ZFS-NFS-REPLICA UNKNOWN - {why}");
            } else if args.json {
                crate::outln!(
                    "{}",
                    serde_json::json!({"schema_version": status::SCHEMA_VERSION, "status": "unknown", "reasons": [why]})
                );
            } else {
                eprintln!("{why}");
            }
            return Exit::Monitoring(UNKNOWN);
        }
    };
    status::evaluate(&mut s, chrono::Utc::now(), &t);
    s.in_progress = cfg
        .pools
        .iter()
        .filter_map(|p| {
            crate::lock::holder(&cfg.paths.run_dir, p.name.as_str()).map(|h| InProgress {
                pool: p.name.to_string(),
                holder: h,
            })
        })
        .collect();
    if args.check {
        let (line, code) = render::check_line(&s, &t);
        crate::outln!("{line}");
        return Exit::Monitoring(code);
    }
    if args.json {
        match serde_json::to_string_pretty(&s) {
            Ok(j) => crate::outln!("{j}"),
            Err(e) => {
                eprintln!("cannot encode the status: {e}");
                return Exit::Internal;
            }
        }
        return Exit::Ok;
    }
    let color = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    crate::out!("{}", render::table(&s, chrono::Utc::now(), color));
    Exit::Ok
}
