//! Replication of one pool to one peer: list both sides, plan, then carry the
//! plan out (or print it, in dry-run). The planner decides; this module only
//! executes, and every command it runs goes through the [`Runner`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use crate::cmd::Cmd;
use crate::guard;
use crate::plan::{self, Action, Item, Plan};
use crate::progress::{Progress, human_bytes};
use crate::runner::{PipeSpec, RunError, Runner, stderr_head};
use crate::ssh::{Peer, SSH_FAILURE};
use crate::zfs::progress::SendProgress;
use crate::zfs::{self, Listing, Op, RecvSpec, SendFrom, SendSpec, ZfsErrorKind};

/// Where an operation runs.
#[derive(Clone, Copy)]
pub enum Side<'a> {
    Local,
    Remote(&'a Peer),
}

impl Side<'_> {
    pub fn cmd(&self, op: &Op) -> Cmd {
        match self {
            Side::Local => op.to_cmd(),
            Side::Remote(p) => p.remote(&op.to_cmd()),
        }
    }

    /// How the operation is shown to people: `zfs ...` or `[pve2] zfs ...`.
    pub fn show(&self, op: &Op) -> String {
        match self {
            Side::Local => op.to_string(),
            Side::Remote(p) => format!("[{}] {op}", p.name),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Side::Local => "local".into(),
            Side::Remote(p) => p.name.clone(),
        }
    }
}

/// Settings the engine needs, taken from the config and the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub local_node: String,
    pub hold_tag: String,
    pub send_properties: bool,
    pub command_timeout: Duration,
    pub stall_timeout: Duration,
    pub transfer_timeout: Duration,
    pub dry_run: bool,
    pub overwrite_empty: bool,
}

/// A pool to replicate: source root here, target root on the peer.
#[derive(Debug, Clone)]
pub struct PoolJob {
    pub source: String,
    pub target: String,
    pub exclude: Vec<String>,
    /// The size guards; None skips them (engine tests of other rules).
    pub guard: Option<GuardJob>,
}

/// What the size guards need besides both listings.
#[derive(Debug, Clone)]
pub struct GuardJob {
    /// The last successful run's sizes for this peer.
    pub last: Option<crate::history::Entry>,
    pub thresholds: guard::Thresholds,
    /// `--accept-size-change`: the guards are evaluated and logged, not obeyed.
    pub accept: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Everything was already in sync.
    NothingToDo,
    /// Data was sent and every dataset is in sync.
    Replicated,
    /// Something failed that the next run may fix (network, timeout, lock).
    Transient,
    /// A conflict or refusal that needs the operator.
    Refused,
}

#[derive(Debug, Clone)]
pub enum DatasetResult {
    UpToDate,
    Sent {
        bytes: u64,
        secs: f64,
    },
    Skipped(String),
    Conflict(String),
    Failed(String),
    /// Dry run: what would happen.
    Planned(String),
}

#[derive(Debug, Clone)]
pub struct DatasetReport {
    pub source: String,
    pub target: String,
    pub result: DatasetResult,
}

#[derive(Debug, Clone)]
pub struct PoolReport {
    pub pool: String,
    pub peer: String,
    pub outcome: Outcome,
    pub datasets: Vec<DatasetReport>,
    pub receiver_only: Vec<String>,
    pub bytes: u64,
    pub duration: Duration,
    /// A failure of the pool as a whole (listing, holds), if any.
    pub error: Option<String>,
    /// Both sides as they are after the run (not in dry-run): what the size
    /// history records.
    pub listings: Option<(Listing, Listing)>,
    /// Datasets set aside on the receiver by `resolve` (kept, never replicated).
    pub quarantine: Vec<String>,
}

impl PoolReport {
    pub fn summary(&self) -> String {
        let count =
            |f: fn(&DatasetResult) -> bool| self.datasets.iter().filter(|d| f(&d.result)).count();
        let mut s = format!(
            "pool {} -> {}: {:?}: {} sent ({}), {} up to date, {} conflict(s), {} failed, {} skipped in {:.1}s",
            self.pool,
            self.peer,
            self.outcome,
            count(|r| matches!(r, DatasetResult::Sent { .. })),
            human_bytes(self.bytes),
            count(|r| matches!(r, DatasetResult::UpToDate)),
            count(|r| matches!(r, DatasetResult::Conflict(_))),
            count(|r| matches!(r, DatasetResult::Failed(_))),
            count(|r| matches!(r, DatasetResult::Skipped(_))),
            self.duration.as_secs_f64()
        );
        if !self.receiver_only.is_empty() {
            let _ = write!(
                s,
                ", {} only on the receiver (kept)",
                self.receiver_only.len()
            );
        }
        if !self.quarantine.is_empty() {
            let _ = write!(
                s,
                ", {} set aside in the quarantine (kept)",
                self.quarantine.len()
            );
        }
        if let Some(e) = &self.error {
            let _ = write!(s, "; error: {e}");
        }
        s
    }
}

/// An error that ends a pool's run.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{side}: {source}")]
    Run {
        side: String,
        #[source]
        source: RunError,
    },
    #[error("{side}: `{cmd}` failed: {stderr}")]
    Zfs {
        side: String,
        cmd: String,
        stderr: String,
        kind: ZfsErrorKind,
    },
    #[error("{side}: {msg}")]
    Parse { side: String, msg: String },
}

impl PoolError {
    fn outcome(&self) -> Outcome {
        match self {
            PoolError::Zfs {
                kind: ZfsErrorKind::NoSuchDataset,
                ..
            } => Outcome::Refused,
            PoolError::Parse { .. } => Outcome::Refused,
            _ => Outcome::Transient,
        }
    }
}

pub struct Engine<'a, R: Runner> {
    pub runner: &'a R,
    pub settings: &'a Settings,
    pub progress: &'a mut dyn Progress,
    /// Every command shown or run, in order (dry-run prints these).
    pub shown: Vec<String>,
    /// The receiver's quarantine datasets, as the last listing showed them.
    pub quarantine: Vec<String>,
}

impl<'a, R: Runner> Engine<'a, R> {
    pub fn new(runner: &'a R, settings: &'a Settings, progress: &'a mut dyn Progress) -> Self {
        Engine {
            runner,
            settings,
            progress,
            shown: Vec::new(),
            quarantine: Vec::new(),
        }
    }

    async fn run_op(&mut self, side: Side<'_>, op: &Op) -> Result<String, PoolError> {
        debug!(command = %side.show(op), "run");
        let res = self
            .runner
            .output(&side.cmd(op), self.settings.command_timeout)
            .await;
        checked(side, op, res)
    }

    /// Replicate one pool to one peer. Never panics on bad input; every
    /// failure ends up in the report.
    pub async fn replicate(&mut self, job: &PoolJob, peer: &Peer) -> PoolReport {
        let started = Instant::now();
        let mut report = PoolReport {
            pool: job.source.clone(),
            peer: peer.name.clone(),
            outcome: Outcome::NothingToDo,
            datasets: Vec::new(),
            receiver_only: Vec::new(),
            bytes: 0,
            duration: Duration::ZERO,
            error: None,
            listings: None,
            quarantine: Vec::new(),
        };
        let res = self.replicate_inner(job, peer, &mut report).await;
        report.quarantine = std::mem::take(&mut self.quarantine);
        if let Err(e) = res {
            report.outcome = report.outcome.max(e.outcome());
            report.error = Some(e.to_string());
        }
        report.duration = started.elapsed();
        report
    }

    async fn replicate_inner(
        &mut self,
        job: &PoolJob,
        peer: &Peer,
        report: &mut PoolReport,
    ) -> Result<(), PoolError> {
        let remote = Side::Remote(peer);
        let opts = plan::Options {
            overwrite_empty: self.settings.overwrite_empty,
            empty_max_referenced: plan::DEFAULT_EMPTY_MAX_REFERENCED,
            exclude: job.exclude.clone(),
        };
        // Final state of every dataset, by source name.
        let mut results: BTreeMap<String, DatasetReport> = BTreeMap::new();
        // Datasets whose final snapshot is known, for holds: source name -> (target name, snapshot).
        let mut bases: BTreeMap<String, (String, String)> = BTreeMap::new();
        let mut listings: Option<(Listing, Listing)> = None;
        // A resume finishes an older stream; a second pass plans what is left.
        for pass in 0..2 {
            let (src, dst) = self.list_both(job, peer).await?;
            let plan = plan::plan(&src, &job.source, &dst, &job.target, &opts);
            report.receiver_only = plan.receiver_only.clone();
            if pass == 0 {
                for r in &plan.receiver_only {
                    warn!(dataset = %r, peer = %peer.name, "only on the receiver: kept, never destroyed");
                }
                if let Some(g) = &job.guard
                    && self.guards_refuse(g, job, peer, &src, &dst, report)
                {
                    return Ok(());
                }
            }
            let resumed = if self.settings.dry_run {
                self.show_plan(&plan, remote);
                for item in &plan.items {
                    results.insert(item.source.clone(), dry_result(item));
                    if let Some(s) = item.action.final_snapshot() {
                        bases.insert(item.source.clone(), (item.target.clone(), s.name.clone()));
                    }
                }
                false
            } else {
                self.execute(&plan, remote, &mut results, &mut bases, report)
                    .await
            };
            listings = Some((src, dst));
            if !resumed {
                break;
            }
        }
        let (src, dst) = listings.expect("at least one pass");
        self.update_holds(peer, &src, &dst, &bases).await?;
        report.datasets = results.into_values().collect();
        if !self.settings.dry_run {
            let sent = report
                .datasets
                .iter()
                .any(|d| matches!(d.result, DatasetResult::Sent { .. }));
            // Sizes after the transfers, for the history.
            report.listings = Some(if sent {
                self.list_both(job, peer).await?
            } else {
                (src, dst)
            });
        }
        let worst = report.datasets.iter().fold(Outcome::NothingToDo, |acc, d| {
            acc.max(match d.result {
                DatasetResult::Sent { .. } => Outcome::Replicated,
                DatasetResult::Conflict(_) => Outcome::Refused,
                DatasetResult::Failed(_) => Outcome::Transient,
                DatasetResult::Skipped(_) | DatasetResult::UpToDate | DatasetResult::Planned(_) => {
                    Outcome::NothingToDo
                }
            })
        });
        report.outcome = report.outcome.max(worst);
        Ok(())
    }

    /// The size guards (src/guard.rs) on the first listing. True when they
    /// refuse the pool: nothing is sent, the report says why. Without a
    /// history (a pool's first run, or the first run in this direction after
    /// a failover) only the comparisons with the replica apply; conflicts
    /// stay refused per dataset by the planner, as always.
    fn guards_refuse(
        &mut self,
        g: &GuardJob,
        job: &PoolJob,
        peer: &Peer,
        src: &Listing,
        dst: &Listing,
        report: &mut PoolReport,
    ) -> bool {
        let why = guard::check(&guard::Input {
            root: &job.source,
            target: &job.target,
            peer: &peer.name,
            source: src,
            receiver: dst,
            last: g.last.as_ref(),
            t: g.thresholds,
        });
        if why.is_empty() {
            return false;
        }
        if g.accept {
            for w in &why {
                warn!(pool = %job.source, peer = %peer.name, "size guard overridden by --accept-size-change: {w}");
                self.shown.push(format!(
                    "  size guard overridden (--accept-size-change): {w}"
                ));
            }
            return false;
        }
        for w in &why {
            warn!(pool = %job.source, peer = %peer.name, "size guard: {w}");
            self.shown
                .push(format!("  REFUSED by the size guards: {w}"));
        }
        report.outcome = Outcome::Refused;
        report.error = Some(format!(
            "size guards refuse the pool, nothing sent: {} (if this change is expected: run --accept-size-change {})",
            why.join("; "),
            job.source
        ));
        true
    }

    pub async fn list_both(
        &mut self,
        job: &PoolJob,
        peer: &Peer,
    ) -> Result<(Listing, Listing), PoolError> {
        let (src, dst, quarantine) = list_pair(
            self.runner,
            self.settings.command_timeout,
            (Side::Local, &job.source),
            (Side::Remote(peer), &job.target),
        )
        .await?;
        self.quarantine = quarantine;
        Ok((src, dst))
    }

    fn steps(&self, item: &Item) -> Vec<(Op, Op)> {
        let recv = |force| {
            Op::Recv(RecvSpec {
                dataset: item.target.clone(),
                force,
            })
        };
        let snap = |s: &str| format!("{}@{}", item.source, s);
        let props = self.settings.send_properties;
        match &item.action {
            Action::Full {
                first,
                last,
                raw,
                force,
            } => {
                let mut v = vec![(
                    Op::Send(SendSpec {
                        snapshot: snap(&first.name),
                        from: SendFrom::Full,
                        raw: *raw,
                        properties: props,
                    }),
                    recv(*force),
                )];
                if last.guid != first.guid {
                    v.push((
                        Op::Send(SendSpec {
                            snapshot: snap(&last.name),
                            from: SendFrom::Incremental {
                                base: snap(&first.name),
                            },
                            raw: *raw,
                            properties: props,
                        }),
                        recv(false),
                    ));
                }
                v
            }
            Action::Incremental {
                base, last, raw, ..
            } => vec![(
                Op::Send(SendSpec {
                    snapshot: snap(&last.name),
                    from: SendFrom::Incremental {
                        base: snap(&base.name),
                    },
                    raw: *raw,
                    properties: props,
                }),
                recv(false),
            )],
            Action::Resume { token } => vec![(
                Op::SendResume {
                    token: token.clone(),
                },
                recv(false),
            )],
            _ => Vec::new(),
        }
    }

    fn show_plan(&mut self, plan: &Plan, remote: Side<'_>) {
        for item in &plan.items {
            let line = format!("  {:<40} {}", item.source, describe(&item.action));
            self.shown.push(line);
            for (send, recv) in self.steps(item) {
                let flag = if matches!(recv, Op::Recv(RecvSpec { force: true, .. })) {
                    "DESTRUCTIVE (recv -F replaces the receiver dataset): "
                } else {
                    ""
                };
                self.shown.push(format!(
                    "      {flag}{} | {}",
                    Side::Local.show(&send),
                    remote.show(&recv)
                ));
            }
        }
        for r in &plan.receiver_only {
            self.shown.push(format!(
                "  {r:<40} only on the receiver: kept, never destroyed"
            ));
        }
    }

    /// Carry out a plan. Returns whether a resume completed (so a second pass
    /// can send what came after it).
    async fn execute(
        &mut self,
        plan: &Plan,
        remote: Side<'_>,
        results: &mut BTreeMap<String, DatasetReport>,
        bases: &mut BTreeMap<String, (String, String)>,
        report: &mut PoolReport,
    ) -> bool {
        let mut failed: BTreeSet<String> = BTreeSet::new();
        let mut resumed = false;
        for item in &plan.items {
            let rep = |result| DatasetReport {
                source: item.source.clone(),
                target: item.target.clone(),
                result,
            };
            if let Some(f) = failed
                .iter()
                .find(|f| item.source.starts_with(&format!("{f}/")))
            {
                results.insert(
                    item.source.clone(),
                    rep(DatasetResult::Skipped(format!("{f} failed this run"))),
                );
                failed.insert(item.source.clone());
                continue;
            }
            match &item.action {
                Action::UpToDate { snapshot } => {
                    bases.insert(
                        item.source.clone(),
                        (item.target.clone(), snapshot.name.clone()),
                    );
                    // A second pass must not hide what the first one sent.
                    results
                        .entry(item.source.clone())
                        .or_insert_with(|| rep(DatasetResult::UpToDate));
                    continue;
                }
                Action::NoSnapshots | Action::Excluded => {
                    results.insert(
                        item.source.clone(),
                        rep(DatasetResult::Skipped(describe(&item.action))),
                    );
                    continue;
                }
                Action::Blocked { by, reason } => {
                    results.entry(item.source.clone()).or_insert_with(|| {
                        rep(DatasetResult::Skipped(format!("blocked by {by}: {reason}")))
                    });
                    continue;
                }
                Action::Conflict(c) => {
                    error!(dataset = %item.source, peer = %report.peer, conflict = c.kind(), "refused: {c}");
                    results.insert(
                        item.source.clone(),
                        rep(DatasetResult::Conflict(c.to_string())),
                    );
                    continue;
                }
                Action::Full { .. } | Action::Incremental { .. } | Action::Resume { .. } => {}
            }
            if item.action.is_destructive() {
                warn!(dataset = %item.target, peer = %report.peer, "DESTRUCTIVE step (asked for with --overwrite-empty-target): recv -F replaces the empty receiver dataset");
            }
            let started = Instant::now();
            let mut sent = 0u64;
            let mut failure = None;
            for (send, recv) in self.steps(item) {
                match self.transfer(&send, &recv, remote, &item.source).await {
                    Ok(b) => sent += b,
                    Err(e) => {
                        failure = Some(self.after_failed_transfer(item, remote, &e).await);
                        break;
                    }
                }
            }
            report.bytes += sent;
            let secs = started.elapsed().as_secs_f64();
            match failure {
                None => {
                    info!(
                        dataset = %item.source, peer = %report.peer, bytes = sent, seconds = format!("{secs:.1}"),
                        rate = %format!("{}/s", human_bytes((sent as f64 / secs.max(0.001)) as u64)),
                        "replicated: {}", describe(&item.action)
                    );
                    // Byte counts add up across passes (resume, then the rest).
                    let prev = match results.get(&item.source).map(|r| &r.result) {
                        Some(DatasetResult::Sent { bytes, secs }) => (*bytes, *secs),
                        _ => (0, 0.0),
                    };
                    results.insert(
                        item.source.clone(),
                        rep(DatasetResult::Sent {
                            bytes: sent + prev.0,
                            secs: secs + prev.1,
                        }),
                    );
                    match item.action.final_snapshot() {
                        Some(s) => {
                            bases
                                .insert(item.source.clone(), (item.target.clone(), s.name.clone()));
                        }
                        None => resumed = true,
                    }
                }
                Some(msg) => {
                    error!(dataset = %item.source, peer = %report.peer, "transfer failed: {msg}");
                    failed.insert(item.source.clone());
                    results.insert(item.source.clone(), rep(DatasetResult::Failed(msg)));
                }
            }
        }
        resumed
    }

    /// One `send | ssh recv` stream. Returns the bytes sent.
    async fn transfer(
        &mut self,
        send: &Op,
        recv: &Op,
        remote: Side<'_>,
        label: &str,
    ) -> Result<u64, (RunError, ZfsErrorKind)> {
        let send_cmd = Side::Local.cmd(send);
        let recv_cmd = remote.cmd(recv);
        info!(dataset = %label, "{} | {}", Side::Local.show(send), remote.show(recv));
        let mut prog = SendProgress::default();
        self.progress.start(label);
        let progress = &mut *self.progress;
        let res = self
            .runner
            .pipe(
                PipeSpec {
                    send: &send_cmd,
                    recv: &recv_cmd,
                    stall: self.settings.stall_timeout,
                    limit: self.settings.transfer_timeout,
                    finish: self.settings.stall_timeout,
                },
                &mut |line| {
                    let moved = prog.feed(line);
                    progress.update(prog.bytes(), prog.estimate);
                    moved
                },
            )
            .await;
        self.progress.finish();
        match res {
            Ok(_) => Ok(prog.bytes().max(if prog.bytes() == 0 {
                prog.estimate.unwrap_or(0)
            } else {
                0
            })),
            Err(e) => {
                let kind = e.stderr().map_or(ZfsErrorKind::Other, zfs::classify);
                Err((e, kind))
            }
        }
    }

    /// Explain a failed transfer; clean up a stale resume state if that was the cause.
    async fn after_failed_transfer(
        &mut self,
        item: &Item,
        remote: Side<'_>,
        (e, kind): &(RunError, ZfsErrorKind),
    ) -> String {
        let mut msg = e.to_string();
        if *kind == ZfsErrorKind::StaleResumeToken && matches!(item.action, Action::Resume { .. }) {
            // The snapshot the interrupted stream started from is gone: the
            // partial state can never complete. Discarding it loses no data
            // that exists anywhere else in full (only the partial stream).
            let op = Op::RecvAbort {
                dataset: item.target.clone(),
            };
            warn!(dataset = %item.target, "resume token is stale; discarding the partial receive: {}", remote.show(&op));
            match self.run_op(remote, &op).await {
                Ok(_) => msg.push_str(
                    "; the stale partial receive was discarded, the next run starts afresh",
                ),
                Err(e2) => {
                    let _ = write!(msg, "; discarding the partial receive failed too: {e2}");
                }
            }
        }
        msg
    }

    /// Hold each dataset's new base on both sides and release our older holds,
    /// so pruning can never remove the last common snapshot. Hold before
    /// release: a failure leaves the old base protected.
    async fn update_holds(
        &mut self,
        peer: &Peer,
        src: &Listing,
        dst: &Listing,
        bases: &BTreeMap<String, (String, String)>,
    ) -> Result<(), PoolError> {
        let src_tag = format!("{}:{}", self.settings.hold_tag, peer.name);
        let dst_tag = format!("{}:{}", self.settings.hold_tag, self.settings.local_node);
        let src_want: BTreeMap<String, String> = bases
            .iter()
            .map(|(s, (_, snap))| (s.clone(), format!("{s}@{snap}")))
            .collect();
        let dst_want: BTreeMap<String, String> = bases
            .values()
            .map(|(t, snap)| (t.clone(), format!("{t}@{snap}")))
            .collect();
        self.sync_holds(Side::Local, src, &src_tag, &src_want)
            .await?;
        self.sync_holds(Side::Remote(peer), dst, &dst_tag, &dst_want)
            .await
    }

    async fn sync_holds(
        &mut self,
        side: Side<'_>,
        listing: &Listing,
        tag: &str,
        want: &BTreeMap<String, String>,
    ) -> Result<(), PoolError> {
        // Only snapshots that carry any hold can carry ours.
        let held: Vec<String> = listing
            .datasets
            .values()
            .filter(|d| want.contains_key(&d.name))
            .flat_map(|d| {
                d.snapshots
                    .iter()
                    .filter(|s| s.userrefs > 0)
                    .map(move |s| format!("{}@{}", d.name, s.name))
            })
            .collect();
        let mut ours: BTreeSet<String> = BTreeSet::new();
        for chunk in held.chunks(500) {
            let text = self
                .run_op(
                    side,
                    &Op::Holds {
                        snapshots: chunk.to_vec(),
                    },
                )
                .await?;
            let holds = zfs::parse_holds(&text).map_err(|e| PoolError::Parse {
                side: side.label(),
                msg: format!("zfs holds: {e}"),
            })?;
            // Only what we asked about: never act on a hold we did not look for.
            let asked: BTreeSet<&String> = chunk.iter().collect();
            ours.extend(
                holds
                    .into_iter()
                    .filter(|(s, t)| t == tag && asked.contains(s))
                    .map(|(s, _)| s),
            );
        }
        let to_hold: Vec<String> = want
            .values()
            .filter(|s| !ours.contains(*s))
            .cloned()
            .collect();
        let wanted: BTreeSet<&String> = want.values().collect();
        let to_release: Vec<String> = ours
            .iter()
            .filter(|s| !wanted.contains(s))
            .cloned()
            .collect();
        for chunk in to_hold.chunks(500) {
            let op = Op::Hold {
                tag: tag.to_string(),
                snapshots: chunk.to_vec(),
            };
            if self.settings.dry_run {
                self.shown.push(format!("  holds: {}", side.show(&op)));
            } else {
                self.run_op(side, &op).await?;
            }
        }
        for chunk in to_release.chunks(500) {
            let op = Op::Release {
                tag: tag.to_string(),
                snapshots: chunk.to_vec(),
            };
            if self.settings.dry_run {
                self.shown.push(format!("  holds: {}", side.show(&op)));
            } else {
                self.run_op(side, &op).await?;
            }
        }
        Ok(())
    }
}

/// List a source tree and a receiver tree (either may be local or remote),
/// both at once: the slower listing sets the pace, not the sum. Datasets
/// `resolve` set aside are taken out of both (they are never replicated,
/// planned or size-checked); the receiver's are returned apart.
pub async fn list_pair<R: Runner>(
    runner: &R,
    timeout: Duration,
    (sside, sroot): (Side<'_>, &str),
    (dside, droot): (Side<'_>, &str),
) -> Result<(Listing, Listing, Vec<String>), PoolError> {
    let sop = Op::List {
        root: sroot.to_string(),
    };
    let dop = Op::List {
        root: droot.to_string(),
    };
    let (scmd, dcmd) = (sside.cmd(&sop), dside.cmd(&dop));
    let (l, r) = tokio::join!(runner.output(&scmd, timeout), runner.output(&dcmd, timeout));
    let parse = |side: Side<'_>, op: &Op, res| -> Result<Listing, PoolError> {
        let text = checked(side, op, res)?;
        zfs::parse_list(&text).map_err(|e| PoolError::Parse {
            side: side.label(),
            msg: format!("`{}`: {e}", side.show(op)),
        })
    };
    let mut src = parse(sside, &sop, l)?;
    let mut dst = parse(dside, &dop, r)?;
    if !src.datasets.contains_key(sroot) {
        return Err(PoolError::Parse {
            side: sside.label(),
            msg: format!("{sroot} is missing from its own listing"),
        });
    }
    crate::resolve::split_quarantine(&mut src, sroot);
    let quarantine = crate::resolve::split_quarantine(&mut dst, droot);
    Ok((src, dst, quarantine))
}

/// A command's stdout, or the error that names the side, the command and its stderr.
fn checked(
    side: Side<'_>,
    op: &Op,
    res: Result<crate::runner::Output, RunError>,
) -> Result<String, PoolError> {
    let out = res.map_err(|source| PoolError::Run {
        side: side.label(),
        source,
    })?;
    if !out.success() {
        // 255 from ssh is ssh's own failure, not zfs's: do not read zfs meaning into it.
        let ssh_failed = matches!(side, Side::Remote(_)) && out.status.code() == Some(SSH_FAILURE);
        return Err(PoolError::Zfs {
            side: side.label(),
            cmd: side.show(op),
            stderr: stderr_head(&out.stderr),
            kind: if ssh_failed {
                ZfsErrorKind::Other
            } else {
                zfs::classify(&out.stderr)
            },
        });
    }
    Ok(out.stdout)
}

fn dry_result(item: &Item) -> DatasetReport {
    let result = match &item.action {
        Action::UpToDate { .. } => DatasetResult::UpToDate,
        Action::Conflict(c) => DatasetResult::Conflict(c.to_string()),
        a if a.is_transfer() => DatasetResult::Planned(describe(a)),
        a => DatasetResult::Skipped(describe(a)),
    };
    DatasetReport {
        source: item.source.clone(),
        target: item.target.clone(),
        result,
    }
}

/// One line per decision, for people.
pub fn describe(a: &Action) -> String {
    match a {
        Action::UpToDate { snapshot } => format!("up to date at @{}", snapshot.name),
        Action::NoSnapshots => "no snapshot to send yet".into(),
        Action::Excluded => "excluded".into(),
        Action::Full {
            first, last, force, ..
        } => {
            let mut s = format!("full send of @{}", first.name);
            if first.guid != last.guid {
                let _ = write!(s, ", then incremental to @{}", last.name);
            }
            if *force {
                s.push_str(" [DESTRUCTIVE: replaces the empty receiver dataset]");
            }
            s
        }
        Action::Incremental {
            base, last, count, ..
        } => format!(
            "incremental @{} -> @{} ({count} snapshot(s))",
            base.name, last.name
        ),
        Action::Resume { .. } => "resume the interrupted receive".into(),
        Action::Conflict(c) => format!("CONFLICT {}: {c}", c.kind()),
        Action::Blocked { by, reason } => format!("blocked by {by}: {reason}"),
    }
}
