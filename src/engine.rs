//! Replication of one pool to one peer: list both sides, plan, then carry the
//! plan out (or print it, in dry-run). The planner decides; this module only
//! executes, and every command it runs goes through the [`Runner`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use crate::guard;
use crate::plan::{self, Action, Item, Plan};
use crate::progress_bar::Progress;
use crate::report::{DatasetReport, DatasetResult, Outcome, PoolReport};
use crate::runner::{PipeSpec, RunError, Runner, stderr_head};
use crate::side::Side;
use crate::ssh::{Peer, SSH_FAILURE};
use crate::units::human_bytes;
use crate::zfs::send_progress::SendProgress;
use crate::zfs::{self, Listing, Op, RecvSpec, SendFrom, SendSpec, ZfsErrorKind};

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
        self.replicate_many(
            std::slice::from_ref(job),
            peer,
            &HoldHint::default(),
            std::future::ready(Ok(())),
        )
        .await
        .pop()
        .expect("one report per job")
    }

    /// Replicate several pools to one peer with as few remote commands as
    /// possible: both sides are listed once for all pools (if that fails,
    /// once per pool, so that each error lands on its own pool), and the
    /// holds are checked and moved once per side for all pools, both sides
    /// at once. `hint`: the snapshots the previous run held, asked about
    /// while the listings run; the answer is used only when those are still
    /// exactly the snapshots to ask about. `gate`: whether this peer may be
    /// written into (its own answer, asked while the listings run); when it
    /// says no, nothing is written and every pool is refused with its reason.
    pub async fn replicate_many(
        &mut self,
        jobs: &[PoolJob],
        peer: &Peer,
        hint: &HoldHint,
        gate: impl std::future::Future<Output = Result<(), String>>,
    ) -> Vec<PoolReport> {
        let mut works: Vec<Work> = jobs.iter().map(|j| Work::new(j, peer)).collect();
        let shared = Instant::now();
        let (runner, timeout) = (self.runner, self.settings.command_timeout);
        let (mut listed, spec, allowed) = tokio::join!(
            list_many(runner, timeout, peer, jobs),
            speculative_holds(runner, timeout, peer, hint),
            gate
        );
        if let Err(why) = allowed {
            error!(peer = %peer.name, "refused: {why}");
            if self.settings.dry_run {
                self.shown.push(format!("# REFUSED: {why}"));
            }
            return works
                .into_iter()
                .map(|mut w| {
                    w.report.outcome = Outcome::Refused;
                    w.report.error = Some(why.clone());
                    w.finish(self.settings.dry_run, shared.elapsed())
                })
                .collect();
        }
        let mut shared_time = shared.elapsed();
        for (i, job) in jobs.iter().enumerate() {
            let own = Instant::now();
            let pre = listed[i].take();
            if let Err(e) = self.run_job(job, peer, pre, &mut works[i]).await {
                works[i].fail(&e);
            }
            works[i].elapsed = own.elapsed();
        }
        let shared = Instant::now();
        let active: Vec<usize> = (0..works.len()).filter(|i| works[*i].holds).collect();
        if !active.is_empty() {
            let mut src_want = BTreeMap::new();
            let mut dst_want = BTreeMap::new();
            for i in &active {
                for (s, (t, snap)) in &works[*i].bases {
                    src_want.insert(s.clone(), format!("{s}@{snap}"));
                    dst_want.insert(t.clone(), format!("{t}@{snap}"));
                }
            }
            let lists: Vec<&(Listing, Listing)> = active
                .iter()
                .filter_map(|i| works[*i].listings.as_ref())
                .collect();
            if let Err(e) = self
                .update_holds(peer, &lists, &src_want, &dst_want, &spec)
                .await
            {
                for i in &active {
                    works[*i].fail(&e);
                }
            }
        }
        // Sizes after the transfers, for the size history.
        if !self.settings.dry_run {
            let sent: Vec<usize> = (0..works.len())
                .filter(|i| works[*i].holds && works[*i].sent())
                .collect();
            let again: Vec<PoolJob> = sent.iter().map(|i| jobs[*i].clone()).collect();
            let mut relisted = list_many(runner, timeout, peer, &again).await;
            for (k, i) in sent.iter().enumerate() {
                match relisted[k].take().expect("one listing per job") {
                    Ok((s, d, _)) => works[*i].listings = Some((s, d)),
                    Err(e) => works[*i].fail(&e),
                }
            }
        }
        shared_time += shared.elapsed();
        works
            .into_iter()
            .map(|w| w.finish(self.settings.dry_run, shared_time))
            .collect()
    }

    /// One pool: plan from its listings (a second pass after a resume),
    /// the size guards, then the transfers (or, in dry-run, the plan shown).
    async fn run_job(
        &mut self,
        job: &PoolJob,
        peer: &Peer,
        mut pre: Option<Listed>,
        w: &mut Work,
    ) -> Result<(), PoolError> {
        let remote = Side::Remote(peer);
        let mut opts = plan::Options {
            overwrite_empty: self.settings.overwrite_empty,
            empty_max_referenced: plan::DEFAULT_EMPTY_MAX_REFERENCED,
            exclude: job.exclude.clone(),
            noise: Default::default(),
        };
        if self.settings.dry_run {
            self.shown.push(format!(
                "pool {} -> {}:{}",
                job.source, peer.name, job.target
            ));
        }
        // A resume finishes an older stream; a second pass plans what is left.
        for pass in 0..2 {
            let (src, dst, quarantine) = match pre.take() {
                Some(listed) => listed?,
                None => {
                    list_pair(
                        self.runner,
                        self.settings.command_timeout,
                        (Side::Local, &job.source),
                        (remote, &job.target),
                    )
                    .await?
                }
            };
            w.report.quarantine = quarantine;
            let mut plan = plan::plan(&src, &job.source, &dst, &job.target, &opts);
            // The receiver changed since the common snapshot: in anything the
            // source lacks, or only in access times and logs? Asked of the
            // receiver itself; proven noise is rolled back and receives.
            // A child is planned only once its parent is: a child refused
            // as modified may appear only after its parent's noise was
            // proven, so ask again until nothing new comes up.
            let mut asked = std::collections::BTreeSet::new();
            loop {
                let probes: Vec<_> = noise_candidates(&plan, &dst)
                    .into_iter()
                    .filter(|(t, _, _)| asked.insert(t.clone()))
                    .collect();
                if probes.is_empty() {
                    break;
                }
                if self.settings.dry_run {
                    for (t, snap, _) in &probes {
                        self.shown.push(format!(
                            "  {t}: changed since @{snap}: a real run asks the receiver whether any file or block changed, and rolls it back if none did"
                        ));
                    }
                    break;
                }
                for (t, snap, volume) in probes {
                    if let Some(evidence) = self.probe(remote, &t, &snap, volume).await {
                        opts.noise.insert(t, evidence);
                    }
                }
                plan = plan::plan(&src, &job.source, &dst, &job.target, &opts);
            }
            w.report.receiver_only = plan.receiver_only.clone();
            if pass == 0 {
                for r in &plan.receiver_only {
                    warn!(dataset = %r, peer = %peer.name, "only on the receiver: kept, never destroyed");
                }
                if let Some(g) = &job.guard
                    && self.guards_refuse(g, job, peer, &src, &dst, &mut w.report)
                {
                    return Ok(());
                }
            }
            let resumed = if self.settings.dry_run {
                self.show_plan(&plan, remote);
                for item in &plan.items {
                    w.results.insert(item.source.clone(), dry_result(item));
                    if let Some(s) = item.action.final_snapshot() {
                        w.bases
                            .insert(item.source.clone(), (item.target.clone(), s.name.clone()));
                    }
                }
                false
            } else {
                self.execute(&plan, remote, &mut w.results, &mut w.bases, &mut w.report)
                    .await
            };
            w.listings = Some((src, dst));
            if !resumed {
                break;
            }
        }
        w.holds = true;
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

    /// Did `target` change since `snapshot` in anything but access times
    /// and logs? Some(evidence) when it did not.
    async fn probe(
        &mut self,
        remote: Side<'_>,
        target: &str,
        snapshot: &str,
        volume: bool,
    ) -> Option<String> {
        match changed_in_nothing(
            self.runner,
            remote,
            target,
            snapshot,
            volume,
            self.settings.command_timeout,
        )
        .await
        {
            Ok(v) => v,
            Err(e) => {
                warn!(dataset = %target, "cannot tell what changed on the receiver: {e}");
                None
            }
        }
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
            if let Some(op) = discard_op(item) {
                self.shown.push(format!(
                    "      DESTRUCTIVE (discards what changed no file or block): {}",
                    remote.show(&op)
                ));
            }
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
            if matches!(item.action, Action::Full { force: true, .. }) {
                warn!(dataset = %item.target, peer = %report.peer, "DESTRUCTIVE step (asked for with --overwrite-empty-target): recv -F replaces the empty receiver dataset");
            }
            if matches!(item.action, Action::Resume { .. }) {
                // An interrupted receive may still be running (stopped, or
                // stuck): it holds the partial state the resume needs.
                self.stop_receives(remote, &item.target).await;
            }
            let started = Instant::now();
            let mut sent = 0u64;
            let mut failure = None;
            if let (
                Some(op),
                Action::Incremental {
                    discard: Some(d), ..
                },
            ) = (discard_op(item), &item.action)
            {
                warn!(dataset = %item.target, peer = %report.peer, "DESTRUCTIVE step: {} (discards {} written since, which {})", remote.show(&op), human_bytes(d.written), d.evidence);
                if let Err(e) = self.run_op(remote, &op).await {
                    error!(dataset = %item.source, peer = %report.peer, "{e}");
                    failed.insert(item.source.clone());
                    results.insert(
                        item.source.clone(),
                        rep(DatasetResult::Failed(e.to_string())),
                    );
                    continue;
                }
            }
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

    /// Explain a failed transfer; make sure nothing of it still runs on the
    /// receiver; clean up a stale resume state if that was the cause.
    async fn after_failed_transfer(
        &mut self,
        item: &Item,
        remote: Side<'_>,
        (e, kind): &(RunError, ZfsErrorKind),
    ) -> String {
        let mut msg = e.to_string();
        // Killing our end closes the stream, and a receive that reads sees
        // its end; one that is stopped, or stuck, does not. It is stopped
        // here, so the next run resumes from its token instead of meeting a
        // receive still in progress.
        self.stop_receives(remote, &item.target).await;
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

    /// Stop every receive of ours into `target` on the receiver (best
    /// effort: logged, never fatal).
    async fn stop_receives(&mut self, remote: Side<'_>, target: &str) {
        let op = Op::StopReceives {
            roots: vec![target.to_string()],
        };
        if let Err(e) = self.run_op(remote, &op).await {
            warn!(dataset = %target, "could not make sure no receive is left running: {e}");
        }
    }

    /// Hold each dataset's new base on both sides and release our older holds,
    /// so pruning can never remove the last common snapshot. Hold before
    /// release: a failure leaves the old base protected. Which holds are ours
    /// is asked of both sides at once (or taken from `spec`, asked during the
    /// listings, when it was asked about exactly the right snapshots).
    async fn update_holds(
        &mut self,
        peer: &Peer,
        lists: &[&(Listing, Listing)],
        src_want: &BTreeMap<String, String>,
        dst_want: &BTreeMap<String, String>,
        spec: &SpecHolds,
    ) -> Result<(), PoolError> {
        let src_tag = format!("{}:{}", self.settings.hold_tag, peer.name);
        let dst_tag = format!("{}:{}", self.settings.hold_tag, self.settings.local_node);
        let src_held = held(lists.iter().map(|l| &l.0), src_want);
        let dst_held = held(lists.iter().map(|l| &l.1), dst_want);
        let (runner, timeout) = (self.runner, self.settings.command_timeout);
        let remote = Side::Remote(peer);
        let (src_ours, dst_ours) = tokio::join!(
            ours(
                runner,
                timeout,
                Side::Local,
                &src_held,
                &src_tag,
                spec.local.as_ref()
            ),
            ours(
                runner,
                timeout,
                remote,
                &dst_held,
                &dst_tag,
                spec.remote.as_ref()
            )
        );
        self.move_holds(Side::Local, &src_ours?, &src_tag, src_want)
            .await?;
        self.move_holds(remote, &dst_ours?, &dst_tag, dst_want)
            .await
    }

    async fn move_holds(
        &mut self,
        side: Side<'_>,
        ours: &BTreeSet<String>,
        tag: &str,
        want: &BTreeMap<String, String>,
    ) -> Result<(), PoolError> {
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

/// Did `target` (on `side`) change since `snapshot` in nothing but access
/// times and logs? `Some(evidence)` when no file (a filesystem: `zfs diff`)
/// or no block and no object (a volume: its stream since `snapshot`)
/// changed; None when something did (logged with what changed).
pub async fn changed_in_nothing<R: Runner>(
    runner: &R,
    side: Side<'_>,
    target: &str,
    snapshot: &str,
    volume: bool,
    timeout: Duration,
) -> Result<Option<String>, PoolError> {
    let op = Op::ChangedSince {
        dataset: target.to_string(),
        snapshot: snapshot.to_string(),
        volume,
    };
    debug!(command = %side.show(&op), "run");
    let out = checked(side, &op, runner.output(&side.cmd(&op), timeout).await)?;
    let verdict = if volume {
        // `Total DRR_WRITE records = 0 (0 bytes)`, one line per kind.
        let counts: Vec<u64> = out
            .lines()
            .filter_map(|l| l.split('=').nth(1))
            .filter_map(|r| r.split_whitespace().next()?.parse().ok())
            .collect();
        (!counts.is_empty() && counts.iter().all(|c| *c == 0)).then(|| {
            format!("its stream since @{snapshot} carries no block and no object (a pool import's log claim)")
        })
    } else if out.trim().is_empty() {
        Some(format!(
            "`zfs diff` since @{snapshot} lists no change (access times, metadata)"
        ))
    } else {
        let first: Vec<&str> = out.lines().take(5).collect();
        warn!(dataset = %target, "changed on the receiver since @{snapshot}: {}", first.join("; "));
        None
    };
    if let Some(v) = &verdict {
        info!(dataset = %target, "receiver changes since @{snapshot} are noise: {v}");
    }
    Ok(verdict)
}

/// The rollback that clears a receiver's proven noise before an incremental.
fn discard_op(item: &Item) -> Option<Op> {
    match &item.action {
        Action::Incremental {
            base,
            discard: Some(_),
            ..
        } => Some(Op::Rollback {
            snapshot: format!("{}@{}", item.target, base.name),
            destroy_newer: false,
        }),
        _ => None,
    }
}

/// Receiver datasets refused as modified that may only carry noise: (name,
/// common snapshot, is a volume). Not when the receiver lost the last
/// run's base: its changes are that snapshot's data.
fn noise_candidates(plan: &Plan, dst: &Listing) -> Vec<(String, String, bool)> {
    plan.items
        .iter()
        .filter_map(|i| match &i.action {
            Action::Conflict(plan::Conflict::ReceiverModified {
                common,
                lost_base: None,
                ..
            }) => Some((
                i.target.clone(),
                common.name.clone(),
                dst.datasets
                    .get(&i.target)
                    .is_some_and(|d| d.kind == zfs::Kind::Volume),
            )),
            _ => None,
        })
        .collect()
}

/// One listing of both sides: source, receiver, the receiver's quarantine.
type Listed = Result<(Listing, Listing, Vec<String>), PoolError>;

/// The snapshots the previous run held, on each side (full names).
#[derive(Debug, Clone, Default)]
pub struct HoldHint {
    pub local: Vec<String>,
    pub remote: Vec<String>,
}

/// A `zfs holds` answer: the snapshots asked about (sorted), and every
/// `(snapshot, tag)` it listed.
type Answer = (Vec<String>, Vec<(String, String)>);

/// The answers to the speculative `zfs holds`, when they came.
#[derive(Debug, Default)]
struct SpecHolds {
    local: Option<Answer>,
    remote: Option<Answer>,
}

/// More than this and the hint is not worth a command of its own.
const SPEC_MAX: usize = 2000;

async fn speculative_holds<R: Runner>(
    runner: &R,
    timeout: Duration,
    peer: &Peer,
    hint: &HoldHint,
) -> SpecHolds {
    let (local, remote) = tokio::join!(
        ask_holds(runner, timeout, Side::Local, &hint.local),
        ask_holds(runner, timeout, Side::Remote(peer), &hint.remote)
    );
    SpecHolds { local, remote }
}

async fn ask_holds<R: Runner>(
    runner: &R,
    timeout: Duration,
    side: Side<'_>,
    snaps: &[String],
) -> Option<Answer> {
    if snaps.is_empty() || snaps.len() > SPEC_MAX {
        return None;
    }
    let op = Op::Holds {
        snapshots: snaps.to_vec(),
    };
    // A snapshot pruned since makes the whole command fail: then the holds
    // are asked again after the listings.
    let out = runner.output(&side.cmd(&op), timeout).await.ok()?;
    if !out.success() {
        return None;
    }
    let mut sorted = snaps.to_vec();
    sorted.sort();
    Some((sorted, zfs::parse_holds(&out.stdout).ok()?))
}

/// The snapshots that carry any hold (only those can carry ours), of the
/// datasets we want to hold, sorted.
fn held<'l>(
    listings: impl Iterator<Item = &'l Listing>,
    want: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut v: Vec<String> = listings
        .flat_map(|l| l.datasets.values())
        .filter(|d| want.contains_key(&d.name))
        .flat_map(|d| {
            d.snapshots
                .iter()
                .filter(|s| s.userrefs > 0)
                .map(move |s| format!("{}@{}", d.name, s.name))
        })
        .collect();
    v.sort();
    v
}

/// Which of `held` carry our `tag`: from the speculative answer when it
/// asked about exactly these snapshots, else asked now (500 at a time).
async fn ours<R: Runner>(
    runner: &R,
    timeout: Duration,
    side: Side<'_>,
    held: &[String],
    tag: &str,
    spec: Option<&Answer>,
) -> Result<BTreeSet<String>, PoolError> {
    let mine = |holds: &[(String, String)], asked: &BTreeSet<&String>| -> Vec<String> {
        // Only what we asked about: never act on a hold we did not look for.
        holds
            .iter()
            .filter(|(s, t)| t == tag && asked.contains(s))
            .map(|(s, _)| s.clone())
            .collect()
    };
    let mut out = BTreeSet::new();
    if let Some((asked, holds)) = spec
        && asked.as_slice() == held
    {
        let asked: BTreeSet<&String> = asked.iter().collect();
        out.extend(mine(holds, &asked));
        return Ok(out);
    }
    for chunk in held.chunks(500) {
        let op = Op::Holds {
            snapshots: chunk.to_vec(),
        };
        debug!(command = %side.show(&op), "run");
        let text = checked(side, &op, runner.output(&side.cmd(&op), timeout).await)?;
        let holds = zfs::parse_holds(&text).map_err(|e| PoolError::Parse {
            side: side.label(),
            msg: format!("zfs holds: {e}"),
        })?;
        let asked: BTreeSet<&String> = chunk.iter().collect();
        out.extend(mine(&holds, &asked));
    }
    Ok(out)
}

/// Both sides of every job listed: one command per side for all of them
/// when there are several; one listing per job if that fails (a missing
/// pool, overlapping roots), so that each error lands on its own job.
async fn list_many<R: Runner>(
    runner: &R,
    timeout: Duration,
    peer: &Peer,
    jobs: &[PoolJob],
) -> Vec<Option<Listed>> {
    let remote = Side::Remote(peer);
    if jobs.len() > 1
        && let Ok((src, dst)) = list_roots(
            runner,
            timeout,
            (Side::Local, jobs.iter().map(|j| j.source.clone()).collect()),
            (remote, jobs.iter().map(|j| j.target.clone()).collect()),
        )
        .await
    {
        return jobs.iter().map(|j| Some(split(&src, &dst, j))).collect();
    }
    let mut out = Vec::new();
    for j in jobs {
        out.push(Some(
            list_pair(
                runner,
                timeout,
                (Side::Local, &j.source),
                (remote, &j.target),
            )
            .await,
        ));
    }
    out
}

/// One job's part of a listing of several roots.
fn split(src: &Listing, dst: &Listing, j: &PoolJob) -> Listed {
    let part = |l: &Listing, root: &str| Listing {
        datasets: l
            .datasets
            .iter()
            .filter(|(n, _)| crate::zfs::names::is_at_or_below(n, root))
            .map(|(n, d)| (n.clone(), d.clone()))
            .collect(),
    };
    let mut s = part(src, &j.source);
    let mut d = part(dst, &j.target);
    if !s.datasets.contains_key(&j.source) {
        return Err(PoolError::Parse {
            side: "local".into(),
            msg: format!("{} is missing from its own listing", j.source),
        });
    }
    crate::quarantine::split_quarantine(&mut s, &j.source);
    let q = crate::quarantine::split_quarantine(&mut d, &j.target);
    Ok((s, d, q))
}

/// What replicating one pool gathers until its report is written.
struct Work {
    report: PoolReport,
    /// Final state of every dataset, by source name.
    results: BTreeMap<String, DatasetReport>,
    /// Datasets whose final snapshot is known, for holds: source name ->
    /// (target name, snapshot).
    bases: BTreeMap<String, (String, String)>,
    listings: Option<(Listing, Listing)>,
    /// Holds to move: not after a failure or a size-guard refusal.
    holds: bool,
    elapsed: Duration,
}

impl Work {
    fn new(job: &PoolJob, peer: &Peer) -> Work {
        Work {
            report: PoolReport {
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
            },
            results: BTreeMap::new(),
            bases: BTreeMap::new(),
            listings: None,
            holds: false,
            elapsed: Duration::ZERO,
        }
    }

    fn fail(&mut self, e: &PoolError) {
        self.report.outcome = self.report.outcome.max(e.outcome());
        self.report.error = Some(e.to_string());
        self.holds = false;
    }

    fn sent(&self) -> bool {
        self.results
            .values()
            .any(|d| matches!(d.result, DatasetResult::Sent { .. }))
    }

    fn finish(mut self, dry_run: bool, shared: Duration) -> PoolReport {
        let r = &mut self.report;
        r.datasets = self.results.into_values().collect();
        if !dry_run && r.error.is_none() {
            r.listings = self.listings;
        }
        let worst = r.datasets.iter().fold(Outcome::NothingToDo, |acc, d| {
            acc.max(match d.result {
                DatasetResult::Sent { .. } => Outcome::Replicated,
                DatasetResult::Conflict(_) => Outcome::Refused,
                DatasetResult::Failed(_) => Outcome::Transient,
                // A dry run exits as the run would: "replicated" when it
                // would send.
                DatasetResult::Planned(_) => Outcome::Replicated,
                DatasetResult::Skipped(_) | DatasetResult::UpToDate => Outcome::NothingToDo,
            })
        });
        r.outcome = r.outcome.max(worst);
        r.duration = self.elapsed + shared;
        self.report
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
    let (mut src, mut dst) = list_roots(
        runner,
        timeout,
        (sside, vec![sroot.to_string()]),
        (dside, vec![droot.to_string()]),
    )
    .await?;
    if !src.datasets.contains_key(sroot) {
        return Err(PoolError::Parse {
            side: sside.label(),
            msg: format!("{sroot} is missing from its own listing"),
        });
    }
    crate::quarantine::split_quarantine(&mut src, sroot);
    let quarantine = crate::quarantine::split_quarantine(&mut dst, droot);
    Ok((src, dst, quarantine))
}

/// `zfs list` of some roots on one side and some on the other, at once.
async fn list_roots<R: Runner>(
    runner: &R,
    timeout: Duration,
    (sside, sroots): (Side<'_>, Vec<String>),
    (dside, droots): (Side<'_>, Vec<String>),
) -> Result<(Listing, Listing), PoolError> {
    let sop = Op::List { roots: sroots };
    let dop = Op::List { roots: droots };
    let (scmd, dcmd) = (sside.cmd(&sop), dside.cmd(&dop));
    let started = Instant::now();
    let (l, r) = tokio::join!(runner.output(&scmd, timeout), runner.output(&dcmd, timeout));
    debug!(
        "listed {} and {} in {:.2}s",
        sside.show(&sop),
        dside.show(&dop),
        started.elapsed().as_secs_f64()
    );
    let parse = |side: Side<'_>, op: &Op, res| -> Result<Listing, PoolError> {
        let text = checked(side, op, res)?;
        zfs::parse_list(&text).map_err(|e| PoolError::Parse {
            side: side.label(),
            msg: format!("`{}`: {e}", side.show(op)),
        })
    };
    let src = parse(sside, &sop, l)?;
    let dst = parse(dside, &dop, r)?;
    Ok((src, dst))
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
            base,
            last,
            count,
            discard,
            ..
        } => {
            let mut s = format!(
                "incremental @{} -> @{} ({count} snapshot(s))",
                base.name, last.name
            );
            if let Some(d) = discard {
                let _ = write!(
                    s,
                    " [DESTRUCTIVE: first rolls the receiver back to @{}: its {} written since are no change ({})]",
                    base.name,
                    human_bytes(d.written),
                    d.evidence
                );
            }
            s
        }
        Action::Resume { .. } => "resume the interrupted receive".into(),
        Action::Conflict(c) => format!("CONFLICT {}: {c}", c.kind()),
        Action::Blocked { by, reason } => format!("blocked by {by}: {reason}"),
    }
}
