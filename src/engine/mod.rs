//! Replication of one pool to one peer: list both sides ([`listing`]; between
//! two full listings, [`fast_listing`]), plan
//! ([`crate::plan`]), prove receiver noise ([`noise`]), check the size
//! guards, then carry the plan out ([`transfer`], with [`steps`] turning
//! items into commands, or showing them in dry-run) and move the holds
//! ([`holds`]). The planner decides; this module only executes, and every
//! command it runs goes through the [`Runner`].

mod fast_listing;
mod holds;
mod kept;
mod listing;
mod noise;
mod steps;
mod transfer;

pub use holds::HoldHint;
use holds::speculative_holds;
pub use kept::KeptPlace;
use listing::{Listed, Sent, after_many, list_many};
pub use listing::{list_one, list_pair};
pub use noise::changed_in_nothing;
use noise::noise_candidates;
pub use steps::describe;
use steps::dry_result;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tracing::{debug, error, warn};

use crate::execute::{Cause, StepFailure};
use crate::guard;
use crate::plan;
use crate::progress_bar::Progress;
use crate::report::{DatasetReport, DatasetResult, Outcome, PoolReport};
use crate::runner::{RunError, Runner, stderr_head};
use crate::side::Side;
use crate::ssh::{Peer, SSH_FAILURE};
use crate::zfs::{self, Listing, Op, ZfsErrorKind};

/// Settings the engine needs, taken from the config and the command line.
#[derive(Debug, Clone)]
pub struct Settings {
    pub local_node: String,
    /// Every node of the cluster (`[cluster] nodes`): a hold tagged for one
    /// of them that is not this node is another master's, from before.
    pub cluster_nodes: Vec<String>,
    pub hold_tag: String,
    pub send_properties: bool,
    pub command_timeout: Duration,
    pub stall_timeout: Duration,
    pub transfer_timeout: Duration,
    pub dry_run: bool,
    pub overwrite_empty: bool,
    /// Where snapshot lists are kept between runs ([`kept`]); None: never.
    pub kept: Option<KeptPlace>,
}

impl Settings {
    /// As the config says, for `local`, sending for real unless `dry_run`.
    pub fn from_config(cfg: &crate::config::Config, local: &str, dry_run: bool) -> Settings {
        Settings {
            local_node: local.to_string(),
            cluster_nodes: cfg.cluster.nodes.keys().map(|n| n.to_string()).collect(),
            hold_tag: cfg.replication.hold_tag.to_string(),
            send_properties: cfg.replication.send_properties,
            command_timeout: cfg.timeouts.command.get(),
            stall_timeout: cfg.timeouts.stall.get(),
            transfer_timeout: cfg.timeouts.transfer.get(),
            dry_run,
            overwrite_empty: false,
            kept: Some(KeptPlace {
                dir: cfg.paths.state_dir.join("kept"),
                local: local.to_string(),
                read_only: dry_run,
            }),
        }
    }
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
    /// A planned migration's handover ([`guard::Input::handover`]).
    pub handover: bool,
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
    /// A step the executor ran that failed, as [`checked`] would have said.
    fn of_step(side: Side<'_>, f: StepFailure) -> PoolError {
        match f.cause {
            Cause::Run(source) => PoolError::Run {
                side: side.label(),
                source,
            },
            Cause::Failed { code, stderr } => PoolError::Zfs {
                side: side.label(),
                cmd: f.shown,
                stderr: stderr_head(&stderr),
                kind: zfs_kind(side, code, &stderr),
            },
        }
    }

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
        let listing = async {
            if hint.complete {
                let kept = self.settings.kept.as_ref();
                match fast_listing::list_fast(runner, timeout, peer, jobs, hint, kept).await {
                    Ok(v) => return v.into_iter().map(Some).collect(),
                    Err(why) => {
                        debug!(peer = %peer.name, "fast listing not used ({why}): listing in full")
                    }
                }
            }
            list_many(runner, timeout, peer, jobs).await
        };
        let (mut listed, spec, allowed) = tokio::join!(
            listing,
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
        // The holds move and the sizes after the transfers (for the size
        // history and the status) are listed at once: a hold changes no
        // dataset's size, and the datasets listing reads no hold.
        let active: Vec<usize> = (0..works.len()).filter(|i| works[*i].holds).collect();
        let sent: Vec<usize> = if self.settings.dry_run {
            Vec::new()
        } else {
            active
                .iter()
                .copied()
                .filter(|i| works[*i].sent())
                .collect()
        };
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
        let again: Vec<PoolJob> = sent.iter().map(|i| jobs[*i].clone()).collect();
        let from: Vec<Sent<'_>> = sent.iter().map(|i| works[*i].completed()).collect();
        let moved = async {
            if active.is_empty() {
                return Ok(());
            }
            self.update_holds(peer, &lists, &src_want, &dst_want, &spec)
                .await
        };
        let (moved, mut after) =
            tokio::join!(moved, after_many(runner, timeout, peer, &again, from));
        if let Err(e) = moved {
            for i in &active {
                works[*i].fail(&e);
            }
        }
        for (k, i) in sent.iter().enumerate() {
            let listed = after[k].take().expect("one listing per job");
            if !works[*i].holds {
                // Its holds failed: the pool failed, its listings are not kept.
                continue;
            }
            match listed {
                Ok(l) => works[*i].listings = Some(l),
                Err(e) => works[*i].fail(&e),
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
            let full = || {
                list_pair(
                    self.runner,
                    self.settings.command_timeout,
                    (Side::Local, &job.source),
                    (remote, &job.target),
                )
            };
            let (mut src, mut dst, mut quarantine) = match pre.take() {
                Some(listed) => listed?,
                None => full().await?,
            };
            let mut plan = plan::plan(&src, &job.source, &dst, &job.target, &opts);
            if (src.partial || dst.partial)
                && let Some(why) = fast_listing::why_full(&plan)
            {
                debug!(pool = %job.source, "{why}: listing both sides in full");
                (src, dst, quarantine) = full().await?;
                plan = plan::plan(&src, &job.source, &dst, &job.target, &opts);
            }
            w.report.quarantine = quarantine;
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
            w.plan = Some(plan);
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
        let v = guard::verdict(&guard::Input {
            root: &job.source,
            target: &job.target,
            peer: &peer.name,
            source: src,
            receiver: dst,
            last: g.last.as_ref(),
            t: g.thresholds,
            handover: g.handover,
        });
        for w in &v.waived {
            warn!(pool = %job.source, peer = %peer.name, "handover: sent although the size guard would refuse it in a timer run (same dataset, the replica keeps its older snapshots): {w}");
        }
        let why = v.refuse;
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
    /// The plan `listings` were planned into (its last pass).
    plan: Option<plan::Plan>,
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
            plan: None,
            holds: false,
            elapsed: Duration::ZERO,
        }
    }

    fn fail(&mut self, e: &PoolError) {
        self.report.outcome = self.report.outcome.max(e.outcome());
        self.report.error = Some(e.to_string());
        self.holds = false;
    }

    /// What its transfers started from, when the plan tells what they left
    /// behind: every stream of its last pass completed or was not needed.
    fn completed(&self) -> Sent<'_> {
        let (listings, plan) = (self.listings.as_ref()?, self.plan.as_ref()?);
        let mut items = Vec::new();
        for item in &plan.items {
            if !matches!(
                item.action,
                plan::Action::Full { .. } | plan::Action::Incremental { .. }
            ) {
                continue;
            }
            match self.results.get(&item.source).map(|r| &r.result) {
                Some(DatasetResult::Sent { .. }) => items.push(item),
                _ => return None,
            }
        }
        Some((listings, items))
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
        return Err(PoolError::Zfs {
            side: side.label(),
            cmd: side.show(op),
            stderr: stderr_head(&out.stderr),
            kind: zfs_kind(side, out.status.code(), &out.stderr),
        });
    }
    Ok(out.stdout)
}

/// What a failed command's stderr means. 255 from ssh is ssh's own
/// failure, not zfs's: no zfs meaning is read into it.
fn zfs_kind(side: Side<'_>, code: Option<i32>, stderr: &str) -> ZfsErrorKind {
    if matches!(side, Side::Remote(_)) && code == Some(SSH_FAILURE) {
        ZfsErrorKind::Other
    } else {
        zfs::classify(stderr)
    }
}
