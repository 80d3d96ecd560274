//! `status` for people (a compact table, colours only on a terminal) and
//! for monitoring systems (`--check`: one Nagios-style line).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{Status, Thresholds, human_age, max_lag};
use crate::health::Level;
use crate::report::{DatasetOutcome, Outcome, RoleName};
use crate::units::{human_bytes, parse_time};

struct Paint(bool);

impl Paint {
    fn level(&self, l: Level, text: &str) -> String {
        let code = match l {
            Level::Ok => "32",
            Level::Warn => "33",
            Level::Fail => "31",
        };
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn bold(&self, text: &str) -> String {
        if self.0 {
            format!("\x1b[1m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

fn when(t: &str, now: DateTime<Utc>) -> String {
    match parse_time(t) {
        Some(x) => format!(
            "{} ({} ago)",
            x.format("%Y-%m-%d %H:%M:%S UTC"),
            human_age((now - x).num_seconds())
        ),
        None => t.to_string(),
    }
}

fn level_word(l: Level) -> &'static str {
    match l {
        Level::Ok => "OK",
        Level::Warn => "WARN",
        Level::Fail => "FAIL",
    }
}

/// The table. `color`: ANSI colours (a terminal, and NO_COLOR unset).
pub fn table(s: &Status, now: DateTime<Utc>, color: bool) -> String {
    let p = Paint(color);
    let level = s.status.unwrap_or(Level::Ok);
    let mut o = String::new();
    let since = match (&s.role.since, s.role.role) {
        (Some(t), _) => format!(" since {}", when(t, now)),
        (None, RoleName::Unsure) => String::new(),
        (None, _) => " (since before zfs-nfs-replica first ran here)".into(),
    };
    let master = match (&s.role.master, s.role.role) {
        (Some(m), RoleName::Standby) => format!(" ({m} is master)"),
        _ => String::new(),
    };
    let _ = writeln!(
        o,
        "{} {}: {}{master}{since}   status: {}",
        p.bold("node"),
        s.node,
        p.bold(s.role.role.as_str()),
        p.level(level, level_word(level))
    );
    if let Some(r) = &s.role.reason {
        let _ = writeln!(o, "  nobody surely master: {r}");
    }
    let r = &s.last_run;
    let _ = writeln!(
        o,
        "last run: {}, {} (exit {}), {:.1}s{}",
        when(&r.finished, now),
        r.result,
        r.exit_code,
        r.duration_seconds,
        match (&r.last_success, r.exit_code) {
            (_, 0 | 1) => String::new(),
            (Some(t), _) => format!("; last success {}", when(t, now)),
            (None, _) => "; no success recorded".into(),
        }
    );
    for why in &s.reasons {
        let _ = writeln!(o, "  {} {why}", p.level(level, "!"));
    }
    for ip in &s.in_progress {
        let _ = writeln!(o, "in progress: pool {} ({})", ip.pool, ip.holder);
    }
    if !s.health.is_empty() {
        let _ = writeln!(o, "{}", p.bold("health"));
        for h in &s.health {
            let _ = writeln!(o, "  {}", p.level(h.level, &h.summary()));
        }
    }
    for pr in &s.pools {
        let _ = writeln!(
            o,
            "{} {} -> {}:{}  {}, {} sent{}",
            p.bold("pool"),
            pr.pool,
            pr.peer,
            pr.target,
            pr.outcome,
            human_bytes(pr.bytes_sent),
            match &pr.last_success {
                Some(t) if !matches!(pr.outcome, Outcome::Replicated | Outcome::NothingToDo) =>
                    format!(", last success {}", when(t, now)),
                _ => String::new(),
            }
        );
        if let Some(e) = &pr.error {
            let _ = writeln!(o, "  {}", p.level(Level::Fail, &format!("error: {e}")));
        }
        if !pr.datasets.is_empty() {
            let _ = writeln!(
                o,
                "  {:<32} {:<34} {:<34} {:>7}  STATE (HELD BASE)",
                "DATASET", "NEWEST HERE", "NEWEST ON PEER", "LAG"
            );
        }
        for d in &pr.datasets {
            let name = |x: &Option<super::Snap>| {
                x.as_ref()
                    .map(|s| format!("@{}", s.name))
                    .unwrap_or_else(|| "-".into())
            };
            let lag = d.lag_seconds.map(human_age).unwrap_or_else(|| "-".into());
            let state = match (d.result, &d.replicated) {
                (DatasetOutcome::Conflict, _) => p.level(Level::Fail, "CONFLICT"),
                (DatasetOutcome::Failed, _) => p.level(Level::Fail, "FAILED"),
                (r, Some(b)) => format!("{r} (@{})", b.name),
                (r, None) => r.to_string(),
            };
            let _ = writeln!(
                o,
                "  {:<32} {:<34} {:<34} {:>7}  {state}",
                d.dataset,
                name(&d.newest_local),
                name(&d.newest_peer),
                lag
            );
            if let (Some(det), DatasetOutcome::Conflict | DatasetOutcome::Failed) =
                (&d.detail, d.result)
            {
                let _ = writeln!(o, "      {det}");
            }
        }
        for q in &pr.quarantine {
            let _ = writeln!(
                o,
                "  quarantine on {}: {q} (kept; README: Divergence)",
                pr.peer
            );
        }
        for r in &pr.receiver_only {
            let _ = writeln!(o, "  only on {}: {r} (kept)", pr.peer);
        }
        if let Some(seen) = &pr.seen {
            let _ = writeln!(o, "  (both sides as seen {})", when(seen, now));
        }
    }
    for r in &s.received {
        let line = match (&r.snapshot, &r.dataset, &r.error) {
            (_, _, Some(e)) => format!("{}: {e}", r.pool),
            (Some(sn), Some(d), _) => format!(
                "{}: newest received {d}@{}, {}",
                r.pool,
                sn.name,
                when(&sn.created, now)
            ),
            _ => format!("{}: nothing received yet", r.pool),
        };
        let _ = writeln!(o, "received {line}");
    }
    if let Some(f) = &s.failover {
        let _ = writeln!(
            o,
            "last failover decision: {} {}: {}",
            f.action,
            when(&f.time, now),
            f.result
        );
    }
    if let Some(pr) = &s.promotion {
        let _ = writeln!(
            o,
            "last pre-start hook: {} {}",
            if pr.promoted {
                "promoted"
            } else {
                "not promoted"
            },
            when(&pr.time, now)
        );
    }
    o
}

/// Text for the plugin's output: Nagios cuts performance data at the
/// first `|`, so none may reach it from a reason (stderr excerpts).
fn plugin_text(s: &str) -> String {
    s.replace('|', "/").replace(['\n', '\r'], " ")
}

/// `status --check`: Nagios plugin output and its exit code: 0 OK, 1
/// WARNING, 2 CRITICAL. The first line is the verdict with the most severe
/// reason and the performance data; every reason follows on its own line
/// (Nagios' long output).
pub fn check_line(s: &Status, t: &Thresholds) -> (String, u8) {
    let level = s.status.unwrap_or(Level::Ok);
    let (word, code) = match level {
        Level::Ok => ("OK", 0),
        Level::Warn => ("WARNING", 1),
        Level::Fail => ("CRITICAL", 2),
    };
    let summary = if s.reasons.is_empty() {
        let pools = s.pools.len();
        match s.role.role {
            RoleName::Master => {
                format!("{} is master, {pools} pool replication(s) in sync", s.node)
            }
            RoleName::Standby => format!(
                "{} is a standby of {}",
                s.node,
                s.role.master.as_deref().unwrap_or("?")
            ),
            r => format!("{} is {r}", s.node),
        }
    } else {
        let more = if s.reasons.len() > 1 {
            format!(" (+{} more)", s.reasons.len() - 1)
        } else {
            String::new()
        };
        format!("{}{more}", plugin_text(&s.reasons[0]))
    };
    let lag = max_lag(s)
        .map(|l| {
            format!(
                " max_lag={l}s;{};{}",
                t.warn_lag.as_secs(),
                t.crit_lag.as_secs()
            )
        })
        .unwrap_or_default();
    let mut out = format!(
        "ZFS-NFS-REPLICA {word} - {summary} | failures={}{lag}",
        s.last_run.consecutive_failures
    );
    if s.reasons.len() > 1 {
        for r in &s.reasons {
            out.push('\n');
            out.push_str(&plugin_text(r));
        }
    }
    (out, code)
}
