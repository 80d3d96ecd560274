//! What happened, for people and dashboards. Every run (not a dry run)
//! writes `<state_dir>/status.json` atomically at its end, so a crash
//! mid-run leaves the last complete state readable; `status` reads only
//! that file and local lock files (fast, works when the peer or the API is
//! down) and judges it against thresholds at the time it is asked
//! ([`evaluate`]): the lag grows while runs fail. The schema is versioned
//! (`schema_version`) and documented in the README; times are RFC 3339 UTC.

pub mod prometheus;
pub mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::files::JsonFileError;
use crate::health::{Level, PoolHealth};
use crate::plan::standing;
use crate::report::{DatasetOutcome, DatasetResult, Outcome, PoolReport, RoleName, RunResult};
use crate::state::{FailoverRecord, Promotion};
use crate::zfs::Snapshot;

pub const SCHEMA_VERSION: u32 = 1;
pub const FILE: &str = "status.json";

/// A snapshot as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snap {
    pub name: String,
    pub guid: u64,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
}

impl Snap {
    pub fn of(s: &Snapshot) -> Snap {
        Snap {
            name: s.name.to_string(),
            guid: s.guid,
            created: stamp_epoch(s.creation),
        }
    }

    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        parse_time(&self.created)
    }
}

use crate::units::{parse_time, stamp_epoch};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    pub role: RoleName,
    /// The master node, when the checks agreed.
    pub master: Option<String>,
    /// Since when this node holds its (sure) role; None when unknown.
    pub since: Option<String>,
    /// Why nobody was surely master (role `unsure`).
    pub reason: Option<String>,
}

impl RoleInfo {
    /// What the master checks decided, as the status shows it.
    pub fn of(d: &crate::pve::Decision) -> RoleInfo {
        RoleInfo {
            role: d.role.name(),
            master: d.master().map(str::to_string),
            since: None,
            reason: match &d.role {
                crate::pve::Role::Unsure { reason } => Some(reason.clone()),
                _ => None,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub started: String,
    pub finished: String,
    pub duration_seconds: f64,
    pub exit_code: u8,
    /// The exit code's name (the exit-code table).
    pub result: RunResult,
    /// Failed runs (exit 2-5) in a row, this one included.
    pub consecutive_failures: u32,
    /// The last run that ended 0 or 1.
    pub last_success: Option<String>,
}

/// One pool replicated to one peer, as the last run left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolRun {
    pub pool: String,
    pub target: String,
    pub peer: String,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub bytes_sent: u64,
    /// Every byte this node has sent for this pool to this peer (a counter:
    /// only ever grows, kept across runs and roles).
    #[serde(default)]
    pub bytes_sent_total: u64,
    pub duration_seconds: f64,
    /// The last run that replicated this pool to this peer (or found it in sync).
    pub last_success: Option<String>,
    pub conflicts: u32,
    /// Receiver datasets the source no longer has (kept).
    pub receiver_only: Vec<String>,
    /// Datasets `resolve` set aside on the receiver (kept).
    pub quarantine: Vec<String>,
    /// When both sides were last listed: the datasets below are as of then.
    pub seen: Option<String>,
    pub datasets: Vec<DatasetState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetState {
    pub dataset: String,
    pub target: String,
    pub result: DatasetOutcome,
    pub detail: Option<String>,
    pub bytes_sent: u64,
    pub newest_local: Option<Snap>,
    /// The peer's newest snapshot, as last seen.
    pub newest_peer: Option<Snap>,
    /// The newest snapshot both sides hold: the held incremental base, and
    /// what the standby would serve after a failover.
    pub replicated: Option<Snap>,
    /// Age of `replicated` (the real RPO), when the status was produced.
    pub lag_seconds: Option<i64>,
}

/// On a standby: the newest snapshot it received, per pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub pool: String,
    pub dataset: Option<String>,
    pub snapshot: Option<Snap>,
    pub error: Option<String>,
}

impl Received {
    /// One line for people: how far behind this standby is.
    pub fn line(&self, now: DateTime<Utc>) -> String {
        match (&self.error, &self.dataset, &self.snapshot) {
            (Some(e), _, _) => format!("{}: {e}", self.pool),
            (None, Some(d), Some(s)) => format!(
                "{}: newest snapshot {d}@{} is {} old",
                self.pool,
                s.name,
                s.created_at()
                    .map(|c| human_age((now - c).num_seconds()))
                    .unwrap_or_else(|| "?".into())
            ),
            _ => format!("{}: no snapshot received yet", self.pool),
        }
    }
}

/// A pool run lock held by a run in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InProgress {
    pub pool: String,
    pub holder: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub schema_version: u32,
    pub node: String,
    pub role: RoleInfo,
    pub last_run: RunInfo,
    pub pools: Vec<PoolRun>,
    pub health: Vec<PoolHealth>,
    pub received: Vec<Received>,
    pub failover: Option<FailoverRecord>,
    pub promotion: Option<Promotion>,
    /// Filled in when read (`status`): the overall verdict and its reasons.
    #[serde(default)]
    pub status: Option<Level>,
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Filled in when read: runs in progress (pool locks held).
    #[serde(default)]
    pub in_progress: Vec<InProgress>,
    /// Filled in when read: when the verdict was made.
    #[serde(default)]
    pub evaluated: Option<String>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join(FILE)
}

/// The last status, if any. A file that does not parse is an error naming
/// it: `status` reports it as UNKNOWN, and a run starts its history afresh.
pub fn load(state_dir: &Path) -> Result<Option<Status>, JsonFileError> {
    let p = path(state_dir);
    let Some(s) = crate::files::load_json::<Status>(&p)? else {
        return Ok(None);
    };
    if s.schema_version != SCHEMA_VERSION {
        return Err(JsonFileError::Schema {
            path: p,
            found: s.schema_version,
            expected: SCHEMA_VERSION,
        });
    }
    Ok(Some(s))
}

pub fn save(state_dir: &Path, s: &Status) -> Result<(), JsonFileError> {
    crate::files::save_json(&path(state_dir), s)
}

/// What a run observed, to be turned into a [`Status`].
#[derive(Debug, Default)]
pub struct Observed {
    pub node: String,
    pub role: Option<RoleInfo>,
    pub reports: Vec<PoolReport>,
    pub health: Vec<PoolHealth>,
    pub received: Vec<Received>,
    /// From the state records, at the end of the run.
    pub role_since: Option<String>,
    pub failover: Option<FailoverRecord>,
    pub promotion: Option<Promotion>,
}

/// The datasets of one pool run, from both listings after the run.
fn datasets_of(r: &PoolReport, now: DateTime<Utc>) -> Option<Vec<DatasetState>> {
    let (src, dst) = r.listings.as_ref()?;
    let results: BTreeMap<&str, &crate::report::DatasetReport> =
        r.datasets.iter().map(|d| (d.source.as_str(), d)).collect();
    let target_root = r
        .datasets
        .iter()
        .find(|d| d.source == r.pool)
        .map(|d| d.target.clone());
    let mut out = Vec::new();
    for (name, d) in &src.datasets {
        let target = results
            .get(name.as_str())
            .map(|x| x.target.clone())
            .or_else(|| {
                target_root
                    .as_ref()
                    .map(|t| crate::zfs::names::rebase(name, &r.pool, t))
            })
            .unwrap_or_else(|| name.clone());
        let peer = dst.datasets.get(&target);
        let replicated = peer.and_then(|p| standing(d, p).common.map(Snap::of));
        let (result, detail, bytes) = match results.get(name.as_str()).map(|x| &x.result) {
            Some(DatasetResult::Sent { bytes, .. }) => (DatasetOutcome::Sent, None, *bytes),
            Some(DatasetResult::UpToDate) => (DatasetOutcome::UpToDate, None, 0),
            Some(DatasetResult::Conflict(c)) => (DatasetOutcome::Conflict, Some(c.clone()), 0),
            Some(DatasetResult::Failed(e)) => (DatasetOutcome::Failed, Some(e.clone()), 0),
            Some(DatasetResult::Skipped(w)) => (DatasetOutcome::Skipped, Some(w.clone()), 0),
            Some(DatasetResult::Planned(p)) => (DatasetOutcome::Planned, Some(p.clone()), 0),
            None => (DatasetOutcome::Skipped, None, 0),
        };
        let lag_seconds = replicated
            .as_ref()
            .and_then(|s| s.created_at())
            .map(|c| (now - c).num_seconds().max(0));
        out.push(DatasetState {
            dataset: name.clone(),
            target,
            result,
            detail,
            bytes_sent: bytes,
            newest_local: d.newest().map(Snap::of),
            newest_peer: peer.and_then(|p| p.newest()).map(Snap::of),
            replicated,
            lag_seconds,
        });
    }
    Some(out)
}

/// The status a run leaves behind. `previous` carries what this run could
/// not see again (the last success, datasets of a pool that failed early).
pub fn assemble(
    obs: Observed,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    ending: crate::exit::Exit,
    previous: Option<&Status>,
) -> Status {
    let now_s = crate::units::stamp(finished);
    let ok = ending.is_success();
    let prev_run = previous.map(|p| &p.last_run);
    let last_run = RunInfo {
        started: crate::units::stamp(started),
        finished: now_s.clone(),
        duration_seconds: (finished - started).num_milliseconds() as f64 / 1000.0,
        exit_code: ending.code(),
        result: ending.result(),
        consecutive_failures: if ok {
            0
        } else {
            prev_run.map_or(0, |r| r.consecutive_failures) + 1
        },
        last_success: if ok {
            Some(now_s.clone())
        } else {
            prev_run.and_then(|r| r.last_success.clone())
        },
    };
    let mut role = obs.role.unwrap_or(RoleInfo {
        role: RoleName::Unsure,
        master: None,
        since: None,
        reason: None,
    });
    if role.role != RoleName::Unsure {
        role.since = obs.role_since.clone();
    }
    let prev_pool = |pool: &str, peer: &str| {
        previous.and_then(|p| p.pools.iter().find(|x| x.pool == pool && x.peer == peer))
    };
    let mut pools = Vec::new();
    for r in &obs.reports {
        let prev = prev_pool(&r.pool, &r.peer);
        let good = matches!(r.outcome, Outcome::Replicated | Outcome::NothingToDo);
        let (seen, datasets) = match datasets_of(r, finished) {
            Some(d) => (Some(now_s.clone()), d),
            None => (
                prev.and_then(|p| p.seen.clone()),
                prev.map(|p| p.datasets.clone()).unwrap_or_default(),
            ),
        };
        pools.push(PoolRun {
            pool: r.pool.clone(),
            target: datasets
                .iter()
                .find(|d| d.dataset == r.pool)
                .map(|d| d.target.clone())
                .or_else(|| prev.map(|p| p.target.clone()))
                .unwrap_or_else(|| r.pool.clone()),
            peer: r.peer.clone(),
            outcome: r.outcome,
            error: r.error.clone(),
            bytes_sent: r.bytes,
            bytes_sent_total: prev.map_or(0, |p| p.bytes_sent_total) + r.bytes,
            duration_seconds: r.duration.as_secs_f64(),
            last_success: if good {
                Some(now_s.clone())
            } else {
                prev.and_then(|p| p.last_success.clone())
            },
            conflicts: r
                .datasets
                .iter()
                .filter(|d| matches!(d.result, DatasetResult::Conflict(_)))
                .count() as u32,
            receiver_only: r.receiver_only.clone(),
            quarantine: r.quarantine.clone(),
            seen,
            datasets,
        });
    }
    // A standby (or an unsure run) sends nothing: keep what the last master
    // run of this node saw, so the history does not vanish with the role.
    if obs.reports.is_empty()
        && let Some(p) = previous
    {
        pools = p.pools.clone();
    }
    Status {
        schema_version: SCHEMA_VERSION,
        node: obs.node,
        role,
        last_run,
        pools,
        health: obs.health,
        received: obs.received,
        failover: obs.failover,
        promotion: obs.promotion,
        status: None,
        reasons: Vec::new(),
        in_progress: Vec::new(),
        evaluated: None,
    }
}

/// The thresholds `status` judges by (`[status]` in the config).
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub warn_lag: Duration,
    pub crit_lag: Duration,
    /// Failed runs in a row before a transient failure is critical.
    pub max_failures: u32,
}

impl Thresholds {
    pub fn from_config(c: &crate::config::StatusCfg) -> Thresholds {
        Thresholds {
            warn_lag: c.warn_lag.get(),
            crit_lag: c.crit_lag.get(),
            max_failures: c.max_failures,
        }
    }
}

/// An age for people: "59s", "10m", "3h05m", "3d02h".
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

fn secs(d: Duration) -> i64 {
    d.as_secs() as i64
}

/// The overall verdict and its reasons, judged at `now`; refreshes every
/// dataset's lag.
pub fn evaluate(s: &mut Status, now: DateTime<Utc>, t: &Thresholds) {
    let mut level = Level::Ok;
    let mut reasons = Vec::new();
    let mut raise = |l: Level, why: String| {
        level = level.max(l);
        reasons.push((l, why));
    };
    let age = |l: i64| human_age(l);
    let lag_level = |lag: i64| {
        if lag > secs(t.crit_lag) {
            Level::Fail
        } else if lag > secs(t.warn_lag) {
            Level::Warn
        } else {
            Level::Ok
        }
    };
    for h in &s.health {
        if h.level > Level::Ok {
            raise(h.level, format!("pool health: {}", h.summary()));
        }
    }
    let master = s.role.role == RoleName::Master;
    for p in &mut s.pools {
        if master && let Some(e) = &p.error {
            let l = if p.outcome == Outcome::Refused {
                Level::Fail
            } else {
                Level::Warn
            };
            raise(l, format!("{} -> {}: {e}", p.pool, p.peer));
        }
        for d in &mut p.datasets {
            d.lag_seconds = d
                .replicated
                .as_ref()
                .and_then(|x| x.created_at())
                .map(|c| (now - c).num_seconds().max(0));
            if !master {
                continue;
            }
            if d.result == DatasetOutcome::Conflict {
                raise(
                    Level::Fail,
                    format!(
                        "{} -> {}: {}",
                        d.dataset,
                        p.peer,
                        d.detail.as_deref().unwrap_or("conflict")
                    ),
                );
            }
            match (d.lag_seconds, &d.newest_local) {
                (Some(lag), _) => {
                    let l = lag_level(lag);
                    if l > Level::Ok {
                        raise(
                            l,
                            format!("{} -> {}: replication lag {}", d.dataset, p.peer, age(lag)),
                        );
                    }
                }
                (None, Some(_)) if d.result != DatasetOutcome::Skipped => raise(
                    Level::Warn,
                    format!("{} -> {}: not replicated yet", d.dataset, p.peer),
                ),
                _ => {}
            }
        }
    }
    if s.role.role == RoleName::Standby {
        for r in &s.received {
            if let Some(e) = &r.error {
                raise(Level::Warn, format!("{}: {e}", r.pool));
                continue;
            }
            match r.snapshot.as_ref().and_then(|x| x.created_at()) {
                Some(c) => {
                    let lag = (now - c).num_seconds();
                    let l = lag_level(lag);
                    if l > Level::Ok {
                        raise(
                            l,
                            format!("{}: newest received snapshot is {} old", r.pool, age(lag)),
                        );
                    }
                }
                None => raise(Level::Warn, format!("{}: no snapshot received yet", r.pool)),
            }
        }
    }
    // The run itself, and how long ago it was (after the specific reasons,
    // which say more).
    match parse_time(&s.last_run.finished) {
        Some(f) => {
            let a = (now - f).num_seconds();
            let l = lag_level(a);
            if l > Level::Ok {
                raise(l, format!("no run for {} (is the timer running?)", age(a)));
            }
        }
        None => raise(Level::Fail, "the last run's time is unreadable".into()),
    }
    let r = &s.last_run;
    // Nobody surely master (a migration, an API hiccup) passes by itself:
    // like a transient failure, it becomes critical only when it lasts.
    let unsure = s.role.role == RoleName::Unsure;
    match r.exit_code {
        0 | 1 => {}
        4 if unsure && r.consecutive_failures < t.max_failures => {}
        4 if unsure => raise(
            Level::Fail,
            format!(
                "nobody was surely master in {} runs in a row",
                r.consecutive_failures
            ),
        ),
        3 if r.consecutive_failures < t.max_failures => raise(
            Level::Warn,
            format!(
                "the last run failed (exit 3, transient; {} in a row)",
                r.consecutive_failures
            ),
        ),
        3 => raise(
            Level::Fail,
            format!(
                "{} runs in a row failed (exit 3, transient)",
                r.consecutive_failures
            ),
        ),
        c => raise(
            Level::Fail,
            format!("the last run ended with exit {c} ({})", r.result),
        ),
    }
    if s.role.role == RoleName::Unsure {
        raise(
            Level::Warn,
            format!(
                "nobody was surely master in the last run: {}",
                s.role.reason.as_deref().unwrap_or("?")
            ),
        );
    }
    s.status = Some(level);
    // The most severe first (in the order found among equals): a headline
    // is never a warning while something is critical.
    reasons.sort_by_key(|r| std::cmp::Reverse(r.0));
    s.reasons = reasons.into_iter().map(|(_, why)| why).collect();
    s.evaluated = Some(crate::units::stamp(now));
}

/// The largest replication lag, in seconds: the master's datasets, or what
/// a standby received.
pub fn max_lag(s: &Status) -> Option<i64> {
    let master = s
        .pools
        .iter()
        .flat_map(|p| p.datasets.iter().filter_map(|d| d.lag_seconds));
    let standby = s.received.iter().filter_map(|r| {
        let now = parse_time(s.evaluated.as_deref()?)?;
        r.snapshot
            .as_ref()
            .and_then(|x| x.created_at())
            .map(|c| (now - c).num_seconds())
    });
    if s.role.role == RoleName::Standby {
        standby.max()
    } else {
        master.max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(human_age(-5), "0s");
        assert_eq!(human_age(59), "59s");
        assert_eq!(human_age(600), "10m");
        assert_eq!(human_age(3 * 3600 + 5 * 60), "3h05m");
        assert_eq!(human_age(3 * 86400 + 7200), "3d02h");
    }
    use crate::exit::Exit;
    use crate::report::DatasetReport;
    use crate::testutil::{ds, listing};

    const T0: i64 = 1_795_000_000;

    fn at(epoch: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(epoch, 0).unwrap()
    }

    fn report(outcome: Outcome, conflict: bool) -> PoolReport {
        let src = listing(vec![
            ds("zpool1", &format!("s1:1:5:{T0} s2:2:6:{}", T0 + 600), 0),
            ds("zpool1/a", &format!("s1:3:5:{T0} s2:4:6:{}", T0 + 600), 0),
        ]);
        let dst = listing(vec![
            ds("zpool1", &format!("s1:1:5:{T0} s2:2:6:{}", T0 + 600), 0),
            ds("zpool1/a", &format!("s1:3:5:{T0} x:9:7:{}", T0 + 300), 0),
        ]);
        let rep = |source: &str, result| DatasetReport {
            source: source.into(),
            target: source.into(),
            result,
        };
        PoolReport {
            pool: "zpool1".into(),
            peer: "pve2".into(),
            outcome,
            datasets: vec![
                rep(
                    "zpool1",
                    DatasetResult::Sent {
                        bytes: 4096,
                        secs: 1.0,
                    },
                ),
                rep(
                    "zpool1/a",
                    if conflict {
                        DatasetResult::Conflict("diverged after @s1".into())
                    } else {
                        DatasetResult::UpToDate
                    },
                ),
            ],
            receiver_only: vec![],
            bytes: 4096,
            duration: Duration::from_secs(2),
            error: None,
            listings: Some((src, dst)),
            quarantine: vec!["zpool1/zfs-nfs-replica-quarantine/T/a".into()],
        }
    }

    fn observed(conflict: bool) -> Observed {
        Observed {
            node: "pve1".into(),
            role: Some(RoleInfo {
                role: RoleName::Master,
                master: Some("pve1".into()),
                since: None,
                reason: None,
            }),
            reports: vec![report(
                if conflict {
                    Outcome::Refused
                } else {
                    Outcome::Replicated
                },
                conflict,
            )],
            role_since: Some("2026-11-20T10:00:00Z".into()),
            ..Default::default()
        }
    }

    fn t() -> Thresholds {
        Thresholds {
            warn_lag: Duration::from_secs(7200),
            crit_lag: Duration::from_secs(6 * 3600),
            max_failures: 3,
        }
    }

    #[test]
    fn a_run_is_summed_up_per_dataset_by_guid() {
        let s = assemble(
            observed(true),
            at(T0 + 700),
            at(T0 + 720),
            Exit::Refused,
            None,
        );
        assert_eq!(s.last_run.result, "refused");
        assert_eq!(s.last_run.consecutive_failures, 1);
        assert_eq!(s.last_run.last_success, None);
        assert_eq!(s.role.since.as_deref(), Some("2026-11-20T10:00:00Z"));
        let p = &s.pools[0];
        assert_eq!((p.outcome.as_str(), p.conflicts), ("refused", 1));
        assert_eq!(p.last_success, None);
        let root = &p.datasets[0];
        assert_eq!(root.result, "sent");
        assert_eq!(root.replicated.as_ref().unwrap().name, "s2");
        assert_eq!(root.lag_seconds, Some(120), "finished 120 s after @s2");
        let a = &p.datasets[1];
        assert_eq!(a.result, "conflict");
        assert_eq!(
            a.replicated.as_ref().unwrap().name,
            "s1",
            "by guid, not name"
        );
        assert_eq!(a.newest_peer.as_ref().unwrap().name, "x");
        assert_eq!(
            a.newest_local.as_ref().unwrap().created,
            stamp_epoch(T0 + 600)
        );

        // The next run succeeds: counters reset, last success recorded.
        let ok = assemble(
            observed(false),
            at(T0 + 1300),
            at(T0 + 1310),
            Exit::Ok,
            Some(&s),
        );
        assert_eq!(ok.last_run.consecutive_failures, 0);
        assert_eq!(
            ok.last_run.last_success.as_deref(),
            Some(stamp_epoch(T0 + 1310).as_str())
        );
        assert_eq!(
            ok.pools[0].last_success.as_deref(),
            Some(stamp_epoch(T0 + 1310).as_str())
        );
        // Then a pool fails before listing: its datasets are kept as last seen.
        let mut failed = observed(false);
        failed.reports[0].listings = None;
        failed.reports[0].outcome = Outcome::Transient;
        failed.reports[0].error = Some("ssh: timeout".into());
        let f = assemble(
            failed,
            at(T0 + 1900),
            at(T0 + 1910),
            Exit::Transient,
            Some(&ok),
        );
        assert_eq!(f.pools[0].datasets, ok.pools[0].datasets);
        assert_eq!(f.pools[0].seen, ok.pools[0].seen);
        assert_eq!(f.pools[0].last_success, ok.pools[0].last_success);
        assert_eq!(f.last_run.last_success, ok.last_run.last_success);
        assert_eq!(f.last_run.consecutive_failures, 1);
    }

    #[test]
    fn the_verdict_follows_lag_failures_and_health() {
        let mut s = assemble(observed(false), at(T0 + 700), at(T0 + 720), Exit::Ok, None);
        evaluate(&mut s, at(T0 + 800), &t());
        assert_eq!(s.status, Some(Level::Ok), "{:?}", s.reasons);
        // Three hours later, no run since: both the lag and the silence.
        evaluate(&mut s, at(T0 + 600 + 3 * 3600), &t());
        assert_eq!(s.status, Some(Level::Warn));
        assert!(
            s.reasons.iter().any(|r| r.starts_with("no run for 2h")),
            "{:?}",
            s.reasons
        );
        assert!(
            s.reasons
                .iter()
                .any(|r| r.contains("zpool1/a -> pve2: replication lag 3h"))
        );
        evaluate(&mut s, at(T0 + 600 + 7 * 3600), &t());
        assert_eq!(s.status, Some(Level::Fail));
        assert_eq!(max_lag(&s), Some(7 * 3600 + 600));

        let mut c = assemble(
            observed(true),
            at(T0 + 700),
            at(T0 + 720),
            Exit::Refused,
            None,
        );
        evaluate(&mut c, at(T0 + 800), &t());
        assert_eq!(c.status, Some(Level::Fail));
        assert!(
            c.reasons
                .iter()
                .any(|r| r == "zpool1/a -> pve2: diverged after @s1")
        );

        // Transient failures: WARN, then CRIT from max_failures on.
        let mut f = assemble(
            observed(false),
            at(T0 + 700),
            at(T0 + 720),
            Exit::Transient,
            None,
        );
        evaluate(&mut f, at(T0 + 800), &t());
        assert_eq!(f.status, Some(Level::Warn));
        f.last_run.consecutive_failures = 3;
        evaluate(&mut f, at(T0 + 800), &t());
        assert_eq!(f.status, Some(Level::Fail));

        let mut h = assemble(observed(false), at(T0 + 700), at(T0 + 720), Exit::Ok, None);
        h.health = vec![PoolHealth::unknown("zpool1", "MISSING".into())];
        evaluate(&mut h, at(T0 + 800), &t());
        assert_eq!(h.status, Some(Level::Fail));
    }

    /// A standby of pve1 that received zpool1/a@s2, taken at T0.
    fn standby_observed() -> Observed {
        Observed {
            node: "pve2".into(),
            role: Some(RoleInfo {
                role: RoleName::Standby,
                master: Some("pve1".into()),
                since: None,
                reason: None,
            }),
            received: vec![Received {
                pool: "zpool1".into(),
                dataset: Some("zpool1/a".into()),
                snapshot: Some(Snap {
                    name: "s2".into(),
                    guid: 4,
                    created: stamp_epoch(T0),
                }),
                error: None,
            }],
            ..Default::default()
        }
    }

    /// The schema is typed inside, but the file stays what dashboards read:
    /// a master's refused run, evaluated, and a standby's, written exactly
    /// as `tests/fixtures/status/` holds them (and read back the same).
    #[test]
    fn the_json_stays_byte_compatible() {
        let mut master = assemble(
            observed(true),
            at(T0 + 700),
            at(T0 + 720),
            Exit::Refused,
            None,
        );
        master.health = vec![PoolHealth::unknown("zpool1", "MISSING".into())];
        evaluate(&mut master, at(T0 + 800), &t());
        let mut standby = assemble(
            standby_observed(),
            at(T0 + 60),
            at(T0 + 70),
            Exit::NothingToDo,
            None,
        );
        evaluate(&mut standby, at(T0 + 100), &t());
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/status/");
        for (s, name) in [(master, "master-refused.json"), (standby, "standby.json")] {
            let text = serde_json::to_string_pretty(&s).unwrap() + "\n";
            if std::env::var_os("BLESS").is_some() {
                std::fs::write(format!("{dir}{name}"), &text).unwrap();
            }
            let want = std::fs::read_to_string(format!("{dir}{name}")).unwrap();
            assert_eq!(text, want, "{name}");
            let back: Status = serde_json::from_str(&want).unwrap();
            assert_eq!(back, s, "{name} reads back the same");
        }
    }

    /// A warning found first never headlines a critical verdict, no `|`
    /// from a reason reaches the plugin's text (Nagios cuts performance
    /// data there), and every reason gets its own line of long output.
    #[test]
    fn the_check_headline_is_the_most_severe_reason() {
        let mut obs = observed(true);
        obs.reports[0].datasets[1].result =
            DatasetResult::Conflict("diverged | zfs: cannot receive | sic".into());
        let mut s = assemble(obs, at(T0 + 700), at(T0 + 720), Exit::Refused, None);
        let mut warn = crate::health::PoolHealth::unknown("zpool1", "low free space".into());
        warn.level = Level::Warn;
        s.health.push(warn);
        evaluate(&mut s, at(T0 + 800), &t());
        let (out, code) = render::check_line(&s, &t());
        assert_eq!(code, 2);
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("ZFS-NFS-REPLICA CRITICAL - zpool1/a -> pve2: diverged / zfs"),
            "{out}"
        );
        assert_eq!(
            lines[0].matches('|').count(),
            1,
            "only the perfdata's: {out}"
        );
        assert_eq!(lines.len(), 1 + s.reasons.len(), "{out}");
        assert!(lines[1..].iter().all(|l| !l.contains('|')), "{out}");
        assert!(lines.iter().any(|l| l.contains("low free space")), "{out}");
    }

    #[test]
    fn a_standby_is_judged_by_what_it_received() {
        let mut s = assemble(
            standby_observed(),
            at(T0 + 60),
            at(T0 + 70),
            Exit::NothingToDo,
            None,
        );
        evaluate(&mut s, at(T0 + 100), &t());
        assert_eq!(s.status, Some(Level::Ok), "{:?}", s.reasons);
        evaluate(&mut s, at(T0 + 8 * 3600), &t());
        assert_eq!(s.status, Some(Level::Fail));
        assert!(
            s.reasons
                .iter()
                .any(|r| r.contains("newest received snapshot is 8h00m old"))
        );
    }

    #[test]
    fn rendered_forms() {
        let mut s = assemble(
            observed(true),
            at(T0 + 700),
            at(T0 + 720),
            Exit::Refused,
            None,
        );
        evaluate(&mut s, at(T0 + 800), &t());
        let table = render::table(&s, at(T0 + 800), false);
        for want in [
            "node pve1: master since 2026-11-20 10:00:00 UTC",
            "status: FAIL",
            "last run: ",
            "refused (exit 4)",
            "pool zpool1 -> pve2:zpool1  refused, 4.0 KiB sent",
            "zpool1/a",
            "CONFLICT",
            "      diverged after @s1",
            "quarantine on pve2: zpool1/zfs-nfs-replica-quarantine/T/a",
        ] {
            assert!(table.contains(want), "{want}:\n{table}");
        }
        assert!(!table.contains('\x1b'), "no colours off a terminal");
        assert!(render::table(&s, at(T0 + 800), true).contains("\x1b[31mFAIL"));
        let (line, code) = render::check_line(&s, &t());
        assert_eq!(code, 2);
        assert!(line.starts_with("ZFS-NFS-REPLICA CRITICAL - "), "{line}");
        assert!(
            line.contains("| failures=1 max_lag=800s;7200;21600"),
            "{line}"
        );
        assert!(
            line.contains("CRITICAL - zpool1/a -> pve2: diverged after @s1 (+1 more)"),
            "the specific reason first: {line}"
        );

        // JSON round-trips (the schema `status --json` prints).
        let j = serde_json::to_string(&s).unwrap();
        let back: Status = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["status"], "fail");
        assert_eq!(v["pools"][0]["datasets"][1]["replicated"]["name"], "s1");

        // The run writes the metrics from the status as it ends.
        let mut ended = assemble(
            observed(true),
            at(T0 + 700),
            at(T0 + 720),
            Exit::Refused,
            None,
        );
        ended.health.push(crate::health::PoolHealth::unknown(
            "zpool1",
            "zpool: not found".into(),
        ));
        evaluate(&mut ended, at(T0 + 720), &t());
        let prom = prometheus::render(&ended);
        for want in [
            "zfs_nfs_replica_role{node=\"pve1\",role=\"master\"} 1\n",
            "zfs_nfs_replica_last_run_exit_code{node=\"pve1\"} 4\n",
            "zfs_nfs_replica_pool_conflicts{pool=\"zpool1\",peer=\"pve2\"} 1\n",
            "zfs_nfs_replica_pool_sent_bytes_total{pool=\"zpool1\",peer=\"pve2\"} 4096\n",
            "# TYPE zfs_nfs_replica_pool_sent_bytes_total counter\n",
            "zfs_nfs_replica_build_info{version=\"",
            // The health of zpool1 could not be read: unknown, no counts.
            "zfs_nfs_replica_pool_health{pool=\"zpool1\",state=\"unknown\"} 2\n",
            "zfs_nfs_replica_status{node=\"pve1\"} 2\n",
            "zfs_nfs_replica_dataset_lag_seconds{dataset=\"zpool1/a\",peer=\"pve2\"} 720\n",
            "# TYPE zfs_nfs_replica_pool_health gauge\n",
        ] {
            assert!(prom.contains(want), "{want}:\n{prom}");
        }
        assert!(!prom.contains("pool_errors{"), "{prom}");
        assert!(!prom.contains("state=\"\""), "{prom}");
        // No sample carries a timestamp: every line is `name{labels} value`.
        for l in prom.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(l.rsplit(' ').count(), l.split(' ').count());
            assert!(l.rsplit_once(' ').unwrap().1.parse::<f64>().is_ok(), "{l}");
            assert!(
                !l.split_once('}').map_or(l, |x| x.1).trim().contains(' '),
                "{l}"
            );
        }
    }

    #[test]
    fn a_garbled_or_foreign_status_file_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(load(d.path()).unwrap(), None);
        let s = assemble(observed(false), at(T0), at(T0 + 1), Exit::Ok, None);
        save(d.path(), &s).unwrap();
        assert_eq!(load(d.path()).unwrap().unwrap(), s);
        std::fs::write(path(d.path()), "{\"schema_version\": 1").unwrap();
        assert!(
            load(d.path())
                .unwrap_err()
                .to_string()
                .contains("status.json")
        );
        let mut v: serde_json::Value = serde_json::to_value(&s).unwrap();
        v["schema_version"] = 9.into();
        std::fs::write(path(d.path()), v.to_string()).unwrap();
        assert!(
            load(d.path())
                .unwrap_err()
                .to_string()
                .contains("schema_version 9")
        );
    }
}
