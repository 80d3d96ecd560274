//! Carrying a plan out: each item's streams in order, a failed dataset's
//! children skipped, nothing of a stopped transfer left running on the
//! receiver.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Instant;

use tracing::{error, info, warn};

use super::Engine;
use super::noise::discard_op;
use super::steps::describe;
use crate::plan::{Action, Item, Plan};
use crate::report::{DatasetReport, DatasetResult, PoolReport};
use crate::runner::{PipeSpec, RunError, Runner};
use crate::side::Side;
use crate::units::human_bytes;
use crate::zfs::send_progress::SendProgress;
use crate::zfs::{self, Op, ZfsErrorKind};

impl<R: Runner> Engine<'_, R> {
    /// Carry out a plan. Returns whether a resume completed (so a second pass
    /// can send what came after it).
    pub(super) async fn execute(
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
    pub(super) async fn transfer(
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
    pub(super) async fn after_failed_transfer(
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
        if *kind == ZfsErrorKind::LargeBlockMismatch {
            let _ = write!(
                msg,
                "; {} has large blocks (recordsize above 128K) that this copy never had (it was made without -L, or its large blocks were gone before its first snapshot), so no incremental can go this way, with -L or without (OpenZFS #18908): set the receiver's copy aside and let the next run send it in full (README: \"Large blocks\")",
                item.target
            );
        }
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
    pub(super) async fn stop_receives(&mut self, remote: Side<'_>, target: &str) {
        let op = Op::StopReceives {
            roots: vec![target.to_string()],
        };
        if let Err(e) = self.run_op(remote, &op).await {
            warn!(dataset = %target, "could not make sure no receive is left running: {e}");
        }
    }
}
